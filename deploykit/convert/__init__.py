"""From a trained model to a deployable one (issue 14, in progress): ``quantize`` today; export,
TFLite conversion, pruning and distillation next. Each step measures its candidates on this machine,
checks them on the user's samples and keeps one only inside its gates (docs/convert.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .quantize import quantize
    from .report import QuantizeReport

__all__ = ["QuantizeReport", "quantize"]


def __getattr__(name: str) -> Any:
    if name == "quantize":
        from .quantize import quantize

        return quantize
    if name == "QuantizeReport":
        from .report import QuantizeReport

        return QuantizeReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
