"""deploykit serve: models behind KServe v2 REST (and, next, TF Serving REST), in layers.

Endpoints speak HTTP only (``kserve``); the data plane (``dataplane``) owns the model repository,
readiness and the one table from ``DeployKitError`` classes to protocol statuses (``status``); the
Engine knows nothing of HTTP. ``app(repo)`` is an ASGI app to mount; ``Server(model, port=0)`` runs
one in-process on a free port. Needs ``pip install "deploykit[serve]"``. Work in progress (issue 13):
see docs/serving.md for what is there and what is not yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .application import app
    from .server import Server

__all__ = ["Server", "app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from .application import app

        return app
    if name == "Server":
        from .server import Server

        return Server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
