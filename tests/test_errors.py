"""The error model: one root, each class also the built-in a caller would catch."""

from __future__ import annotations

import sys

import pytest

import deploykit as dk
from deploykit import errors


@pytest.mark.parametrize("cls, builtin", [
    (dk.InputMismatch, ValueError),
    (dk.ModelLoadError, ValueError),
    (dk.ModelNotFound, FileNotFoundError),
    (dk.BackendUnavailable, ImportError),
    (dk.UnknownBackend, ValueError),
    (dk.BackendError, RuntimeError),
    (dk.EngineClosed, RuntimeError),
    (dk.InvalidArgument, ValueError),
])
def test_hierarchy(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, dk.DeployKitError) and issubclass(cls, builtin)
    with pytest.raises(dk.DeployKitError, match="boom"):
        raise cls("boom")


def test_every_error_lives_in_errors_module() -> None:
    for name in errors.__all__:
        assert getattr(dk, name) is getattr(errors, name)
        assert getattr(errors, name).__module__ == "deploykit.errors"


def test_require_imports_a_module_or_names_who_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from deploykit.errors import BackendUnavailable, require

    assert require("json", "unused") is json
    monkeypatch.setitem(sys.modules, "deploykit_absent_module", None)  # as if it were not installed
    with pytest.raises(BackendUnavailable,
                       match=r"^X needs it: pip install 'deploykit\[x\]' \(.*deploykit_absent"):
        require("deploykit_absent_module", "X needs it: pip install 'deploykit[x]'")
