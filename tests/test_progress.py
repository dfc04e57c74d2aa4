"""deploykit.progress: when a bar shows (terminal, notebook, asked), what it draws, bad values."""

from __future__ import annotations

import io
import sys
import types

import pytest

import deploykit as dk
from deploykit.progress import HtmlBar, TextBar, in_notebook, progress_fn


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
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert in_notebook()
    bar = progress_fn(None, "bench")
    assert bar is not None  # an HtmlBar where IPython.display imports, else the text bar
    bar(0, 2, "numpy batch=1 concurrency=1")
    bar(2, 2, "done")
    assert progress_fn(False, "bench") is None


def test_html_bar_updates_one_output_in_place() -> None:
    """The notebook bar: one display, updated — nothing on stderr, the last state kept."""
    shown: list[str] = []

    class Handle:
        def update(self, obj: str) -> None:
            shown.append(obj)

    def display(obj: str, display_id: bool) -> Handle:
        assert display_id is True
        shown.append(obj)
        return Handle()

    bar = HtmlBar("deploykit tune", display, lambda text: text)
    bar(0, 3, "loading <numpy>")
    bar(1, 3, "timing")
    bar(3, 3, "done")
    assert len(shown) == 3 and "<progress value='0' max='3'" in shown[0] and "&lt;numpy&gt;" in shown[0]
    assert "<progress value='3' max='3'" in shown[-1] and "3/3" in shown[-1] and "done" in shown[-1]


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
