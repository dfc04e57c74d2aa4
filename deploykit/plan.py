"""What a plan is made of: candidates (a backend on a device) and the plan that orders them.

Pure data, below every backend and the Engine, so that a backend can offer its own candidates
(``Backend.candidates``) and an Engine can carry the plan that chose it. The policy that *makes*
plans lives in ``deploykit.selection``. :class:`Machine` is what a backend may ask of the hardware
report while it makes its candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from .errors import InvalidArgument
from .reprs import html_table


class Gpu(Protocol):
    """What a plan needs of one GPU (``deploykit.gpus.GpuInfo`` has it)."""

    @property
    def device(self) -> str: ...


class Machine(Protocol):
    """What a backend may ask of the machine when it offers candidates (``HardwareReport`` has it)."""

    @property
    def gpus(self) -> Sequence[Gpu]: ...

    @property
    def gpu_probe(self) -> str: ...

    def runtime_version(self, runtime: str) -> str | None: ...

    def runtime_distribution(self, runtime: str) -> str | None: ...

    def backend_facts(self, backend: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Candidate:
    """One way to run the model: a backend on a device, with its providers (onnxruntime only).

    ``reason`` is why it cannot run here (None: viable); ``measured_ms`` is for a tuner to fill
    (the median latency it measured); ``artifact`` names the file it loads when a model comes as
    several artifacts (``dk.load([...])``, see ``deploykit.artifacts``), else None.
    """

    backend: str
    device: str = "cpu"
    providers: tuple[str, ...] = ()
    reason: str | None = None
    measured_ms: float | None = None
    artifact: str | None = None
    #: the policy's rank (lower is better), given by the backend (``Backend.priority``, or finer:
    #: onnxruntime ranks its provider tiers); how candidates of several artifacts are merged
    rank: int = field(default=50, compare=False)

    @property
    def key(self) -> tuple[str, str, tuple[str, ...], str | None]:
        return self.backend, self.device, self.providers, self.artifact

    @property
    def label(self) -> str:
        short = [p.removesuffix("ExecutionProvider") for p in self.providers]
        where = "" if self.artifact is None else f" [{_short_name(self.artifact)}]"
        return f"{self.backend}{'[' + ', '.join(short) + ']' if short else ''} on {self.device}{where}"

    def options(self) -> dict[str, Any]:
        """Backend options that make the backend run as this candidate says."""
        return {"providers": list(self.providers)} if self.providers else {}

    def __repr__(self) -> str:
        extra = f", {self.reason}" if self.reason else ""
        return f"<Candidate {self.label}{extra}>"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self) | {"providers": list(self.providers)}
        del data["rank"]
        if self.artifact is None:  # one-artifact plans keep their former shape
            del data["artifact"]
        return data


@dataclass
class Plan:
    """What runs a model and why: the viable candidates in trial order, the rejected ones with reasons.

    After a load, ``chosen`` is what actually runs (device and active providers as the runtime reports
    them) and ``failed`` holds the candidates tried before it that failed to load, with the error.
    ``artifacts`` lists the files of a several-artifact model (empty for one); ``notes`` are a
    tuner's remarks (reference, inputs, cache file).
    """

    model: str
    format: str
    candidates: list[Candidate]
    rejected: list[Candidate] = field(default_factory=list)
    requested: str = "auto"
    decided_by: str = "rule"
    strict: bool = False
    hardware: str | None = None
    failed: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    artifacts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def backend(self) -> str | None:
        c = self.chosen or next(iter(self.candidates), None)
        return None if c is None else c.backend

    @property
    def device(self) -> str | None:
        c = self.chosen or next(iter(self.candidates), None)
        return None if c is None else c.device

    @property
    def providers(self) -> tuple[str, ...]:
        c = self.chosen or next(iter(self.candidates), None)
        return () if c is None else c.providers

    @property
    def fell_back(self) -> bool:
        """True when a better candidate failed to load and a lower one runs instead."""
        return bool(self.failed) and self.chosen is not None

    def reordered(self, ranked: Sequence[Candidate], rejected: Sequence[Candidate] = (),
                  decided_by: str = "measurement") -> Plan:
        """A copy whose viable candidates are ``ranked`` (e.g. by ``measured_ms``); ``rejected`` adds
        candidates dropped by the caller (give each a ``reason``). Each must be one of this plan's."""
        known = {c.key for c in self.candidates}
        unknown = [c.label for c in (*ranked, *rejected) if c.key not in known]
        if unknown:
            raise InvalidArgument(f"not viable candidates of this plan: {', '.join(unknown)}; "
                             f"viable: {', '.join(c.label for c in self.candidates) or '(none)'}")
        dropped = [c for c in rejected if not c.reason]
        if dropped:
            raise InvalidArgument(f"rejected candidates need a reason: {', '.join(c.label for c in dropped)}")
        return replace(self, candidates=list(ranked), rejected=[*self.rejected, *rejected],
                       decided_by=decided_by, failed=[], chosen=None)

    def summary(self) -> str:
        """One line for the log."""
        if self.chosen is not None:
            head = f"runs on {self.chosen.label} (by {self.decided_by})"
        elif self.candidates:
            head = f"will try {', '.join(c.label for c in self.candidates)} (by {self.decided_by})"
        else:
            head = "no viable candidate"
        parts = [head]
        if self.failed:
            parts.append("fell back past " + "; ".join(f"{c.label} ({c.reason})" for c in self.failed))
        if self.rejected:
            parts.append("rejected " + "; ".join(f"{c.label} ({c.reason})" for c in self.rejected))
        return f"{self.model}: " + " — ".join(parts)

    def explain(self) -> str:
        """Several lines: the choice, then every candidate with its fate."""
        lines = [f"plan for {self.model} ({self.format}), backend={self.requested!r}, decided by "
                 f"{self.decided_by}{', strict' if self.strict else ''}"]
        lines += [f"  artifact  {a}" for a in self.artifacts]
        if self.chosen is not None:
            lines.append(f"  chosen    {self.chosen.label}{_ms(self.chosen)}")
        lines += [f"  failed    {c.label}: {c.reason}" for c in self.failed]
        done = {c.key for c in self.failed} | ({self.chosen.key} if self.chosen else set())
        lines += [f"  viable    {c.label}{_ms(c)}" for c in self.candidates if c.key not in done]
        lines += [f"  rejected  {c.label}: {c.reason}" for c in self.rejected]
        lines += [f"  note      {n}" for n in self.notes]
        return "\n".join(lines)

    __str__ = explain

    def __repr__(self) -> str:
        return f"<deploykit Plan {self.explain()}>"

    def rows(self) -> list[tuple[str, str, str]]:
        """(fate, candidate, detail) per candidate, the order of :meth:`explain`."""
        rows = [("artifact", a, "") for a in self.artifacts]
        if self.chosen is not None:
            rows.append(("chosen", self.chosen.label, _ms(self.chosen).strip(" ()")))
        rows += [("failed", c.label, c.reason or "") for c in self.failed]
        done = {c.key for c in self.failed} | ({self.chosen.key} if self.chosen else set())
        rows += [("viable", c.label, _ms(c).strip(" ()")) for c in self.candidates if c.key not in done]
        rows += [("rejected", c.label, c.reason or "") for c in self.rejected]
        rows += [("note", n, "") for n in self.notes]
        return rows

    def _repr_html_(self) -> str:
        return html_table("deploykit Plan", self.rows(), ("", "candidate", "detail"),
                          subtitle=f"{self.model} ({self.format}), backend={self.requested!r}, decided by "
                                   f"{self.decided_by}{', strict' if self.strict else ''}")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "format": self.format, "requested": self.requested,
                "decided_by": self.decided_by, "strict": self.strict, "hardware": self.hardware,
                "chosen": None if self.chosen is None else self.chosen.to_dict(),
                "candidates": [c.to_dict() for c in self.candidates],
                "failed": [c.to_dict() for c in self.failed],
                "rejected": [c.to_dict() for c in self.rejected],
                "artifacts": list(self.artifacts), "notes": list(self.notes)}



def _ms(cand: Candidate) -> str:
    return "" if cand.measured_ms is None else f" ({cand.measured_ms:.3g} ms)"


def _short_name(label: str) -> str:
    return label.replace("\\", "/").rsplit("/", 1)[-1]




__all__ = ["Candidate", "Gpu", "Machine", "Plan"]
