"""dk.bench with backends=None measures what "auto" picked as it picked it: a backend's own
candidate options (``Backend.candidate_options``) reach every row's load, a plugin's included."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest

import deploykit as dk
from deploykit import backends
from deploykit.demo import MODEL_PATH
from deploykit.model import ModelSource
from deploykit.plan import Candidate
from tests._support.evaluator_backend import EvaluatorBackend

NAME = "recording-evaluator"


class RecordingBackend(EvaluatorBackend):
    """onnx's evaluator, first in auto's order, whose candidates carry a tier (in ``providers``, the
    Candidate's field for it) that the backend turns into an option of its own, ``tier``."""

    name = NAME
    priority = 0
    option_names = ("verbose", "tier")
    loads: ClassVar[list[dict[str, Any]]] = []

    @classmethod
    def candidates(cls, source: ModelSource, machine: Any, options: Mapping[str, Any]) -> list[Candidate]:
        return [Candidate(cls.name, "cpu", ("fast",), rank=cls.priority)]

    @classmethod
    def candidate_options(cls, candidate: Candidate) -> dict[str, Any]:
        return {"tier": candidate.providers[0]} if candidate.providers else {}

    def __init__(self, source: ModelSource, *, threads: int | None = None, verbose: int = 0,
                 tier: str = "default") -> None:
        RecordingBackend.loads.append({"tier": tier})
        super().__init__(source, threads=threads, verbose=verbose)


@pytest.fixture
def recording() -> Iterator[type[RecordingBackend]]:
    backends.register(NAME, f"{__name__}:RecordingBackend")
    RecordingBackend.loads.clear()
    try:
        yield RecordingBackend
    finally:
        backends.unregister(NAME)


def test_rows_load_with_the_candidates_own_options(recording: type[RecordingBackend]) -> None:
    assert dk.load(MODEL_PATH).backend == NAME  # auto picks it
    recording.loads.clear()
    result = dk.bench(MODEL_PATH, iterations=2, warmup=0, progress=False)
    assert [r.backend for r in result.rows] == [NAME]
    # auto's own load, then the row's: both with the candidate's tier, not the default
    assert recording.loads and all(load == {"tier": "fast"} for load in recording.loads)
