"""The NumPy backend's table of native operators: what an op factory sees (:class:`Node`) and the
``@register`` decorator that fills the table. The operator modules (``ops/``) import this module
only; ``registry`` imports them (all, at its top) and answers lookups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Kernel = Callable[..., Any]


@dataclass
class Node:
    """What an op factory sees of one graph node, decoded once at load time."""

    op_type: str
    domain: str
    since: int  # schema since_version selected by the model's opset
    opset: int  # the model's opset version for this domain
    name: str
    attrs: dict[str, Any]
    n_inputs: int
    n_outputs: int
    consts: tuple[np.ndarray | None, ...]  # constant value of each input when known at load time
    proto: Any = field(repr=False, default=None)
    #: compiles a subgraph attribute into a runnable ``CompiledGraph`` (set by the graph compiler)
    compile_subgraph: Callable[[Any], Any] | None = field(repr=False, default=None)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def const(self, index: int) -> np.ndarray | None:
        return self.consts[index] if index < len(self.consts) else None


Factory = Callable[[Node], Kernel]

#: (domain, op_type, since_version) -> factory, filled by ``@register`` as ``ops/`` is imported.
NATIVE: dict[tuple[str, str, int], Factory] = {}


def register(op_type: str, *since: int, domain: str = "") -> Callable[[Factory], Factory]:
    """Register ``factory`` for ``op_type`` at each schema ``since`` version listed."""
    if not since:
        raise ValueError(f"register({op_type!r}) needs at least one since_version")

    def deco(factory: Factory) -> Factory:
        for version in since:
            key = (domain, op_type, version)
            if key in NATIVE:
                raise ValueError(f"{key} registered twice")
            NATIVE[key] = factory
        return factory

    return deco


__all__ = ["NATIVE", "Factory", "Kernel", "Node", "register"]
