"""deploykit.progress: when a bar shows (terminal, notebook, asked), what it draws, bad values."""

from __future__ import annotations

import io
import sys
import types

import pytest

import deploykit as dk
from deploykit.progress import TextBar, in_notebook, progress_fn


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def fake_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a Jupyter kernel looks like from inside: ipykernel loaded, get_ipython() with a kernel."""
    shell = types.SimpleNamespace(kernel=object(), config={})
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)


def test_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    def mine(done: int, total: int, label: str) -> None:
        pass

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal, not a notebook
    assert not in_notebook()
    assert progress_fn(None, "bench") is None and progress_fn(False, "bench") is None
    assert isinstance(progress_fn(True, "bench"), TextBar)
    assert progress_fn(mine, "bench") is mine
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert isinstance(progress_fn(None, "bench"), TextBar)
    assert progress_fn(False, "bench") is None


@pytest.mark.parametrize("bad", ["yes", 1, 0.5, [True]])
def test_bad_progress_values(bad: object) -> None:
    with pytest.raises(dk.InvalidArgument, match=r"progress must be None, True, False or a callable"):
        progress_fn(bad, "bench")  # type: ignore[arg-type]


def test_in_a_notebook_a_bar_shows_by_default(fake_kernel: None, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm", reason="the notebook bar is tqdm.auto's")
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert in_notebook()
    bar = progress_fn(None, "bench")
    assert bar is not None and not isinstance(bar, TextBar)  # tqdm.auto (a widget when ipywidgets is there)
    bar(0, 2, "numpy batch=1 concurrency=1")
    bar(1, 2, "numpy batch=8 concurrency=1")
    bar(2, 2, "done")
    assert progress_fn(False, "bench") is None


def test_no_notebook_without_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: None  # type: ignore[attr-defined]  # a plain IPython console
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    assert not in_notebook()


def test_text_bar_on_a_terminal() -> None:
    out = _Tty()
    bar = TextBar("bench", stream=out)
    bar(0, 4, "onnxruntime batch=1 concurrency=1")
    bar(2, 4, "numpy batch=1 concurrency=1")
    bar(4, 4, "done")
    text = out.getvalue()
    assert text.startswith("\r[" + "." * 30 + "] 0/4 onnxruntime batch=1 concurrency=1")
    assert "\r[" + "#" * 15 + "." * 15 + "] 2/4 numpy" in text
    assert text.endswith("] 4/4 done" + " " * 40 + "\n") and text.count("\n") == 1


def test_text_bar_in_a_log_prints_each_step_once() -> None:
    out = io.StringIO()
    bar = TextBar("bench", stream=out)
    bar(0, 2, "numpy batch=1")
    bar(0, 2, "numpy batch=1 (news about the same step)")
    bar(1, 2, "numpy batch=8")
    bar(2, 2, "done")
    assert out.getvalue() == "bench 1/2: numpy batch=1\nbench 2/2: numpy batch=8\n"
