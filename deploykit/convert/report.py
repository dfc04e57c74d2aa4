"""What a conversion step reports: every candidate it tried, measured, kept or refused with why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..reprs import html_table


@dataclass
class CandidateRow:
    """One candidate: its size, speed against the original (``speedup`` > 1: faster), accuracy
    figures, and whether the gates kept it (``reason`` says why not, or what it was kept for)."""

    name: str
    size_bytes: int | None = None
    ms: float | None = None
    speedup: float | None = None
    accuracy: dict[str, float] = field(default_factory=dict)
    kept: bool = False
    reason: str = ""

    def cells(self) -> list[str]:
        acc = ", ".join(f"{k} {v:.4g}" for k, v in self.accuracy.items())
        return [self.name, "-" if self.size_bytes is None else f"{self.size_bytes / 1024:.0f} KiB",
                "-" if self.ms is None else f"{self.ms:.3f}",
                "-" if self.speedup is None else f"{self.speedup:.2f}x", acc or "-",
                "kept" if self.kept else "-" if self.name == ORIGINAL else "refused", self.reason]


#: The original model's row name.
ORIGINAL = "fp32"
HEADER = ("candidate", "size", "ms/run", "speed vs original", "accuracy", "", "why")


@dataclass
class QuantizeReport:
    """What ``dk.quantize`` (or ``dk.prune``) did: ``chosen`` (``"fp32"``, the original, when every
    candidate was refused), ``path`` (the model to deploy: the input when the original is kept),
    every candidate's row, and notes."""

    model: str
    chosen: str
    path: Path
    candidates: list[CandidateRow]
    samples: int
    threads: int
    notes: list[str] = field(default_factory=list)
    #: which step made it: "quantize" or "prune"
    step: str = "quantize"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data

    def _title(self) -> str:
        return f"deploykit {self.step}: {self.model} -> {self.chosen} ({self.path})"

    def _subtitle(self) -> str:
        return (f"accuracy on {self.samples} sample(s); time per run at batch 1, {self.threads} thread(s), "
                "interleaved with the original")

    def __str__(self) -> str:
        rows = [list(HEADER)] + [r.cells() for r in self.candidates]
        widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
        lines = [self._title(), self._subtitle()]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<QuantizeReport chosen={self.chosen!r} path={str(self.path)!r} "
                f"candidates={len(self.candidates)}>")

    def _repr_html_(self) -> str:
        sub = self._subtitle() + ("; " + "; ".join(self.notes) if self.notes else "")
        return html_table(self._title(), [r.cells() for r in self.candidates], HEADER, sub)


__all__ = ["HEADER", "ORIGINAL", "CandidateRow", "QuantizeReport"]
