"""Names moved or renamed by the architecture work keep working, each with a DeprecationWarning
that says where the name went."""

from __future__ import annotations

import importlib

import pytest

import deploykit as dk

MOVED = [
    ("deploykit.engine", "load", "deploykit.loading", "load"),
    ("deploykit.engine", "check_threads", "deploykit.arguments", "check_threads"),
    ("deploykit.engine", "check_strict", "deploykit.opening", "check_strict"),
    ("deploykit.comparison", "Candidate", "deploykit.comparison", "Side"),
    ("deploykit.tuning", "Settings", "deploykit.tuning", "TuneSettings"),
    ("deploykit.backends.reference.graph", "Plan", "deploykit.backends.reference.graph", "CompiledGraph"),
]


@pytest.mark.parametrize(("module", "old", "new_module", "new"), MOVED,
                         ids=[f"{m}.{o}" for m, o, *_ in MOVED])
def test_old_names_warn_and_work(module: str, old: str, new_module: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=new):
        value = getattr(importlib.import_module(module), old)
    assert value is getattr(importlib.import_module(new_module), new)


def test_old_engine_load_still_loads() -> None:
    from deploykit.demo import MODEL_PATH

    with pytest.warns(DeprecationWarning, match="deploykit.loading.load"):
        from deploykit.engine import load  # type: ignore[attr-defined]
    assert load(MODEL_PATH, backend="numpy").backend == "numpy"


def test_hardware_report_old_spellings() -> None:
    report = dk.probe()
    with pytest.warns(DeprecationWarning, match="backend_probe_seconds"):
        assert report.providers_seconds == report.backend_probe_seconds
    from deploykit import backends, hardware

    assert tuple(backends.auto_order()) == backends.AUTO_ORDER
    assert hardware.runtime_distributions() == hardware.RUNTIME_DISTRIBUTIONS
