"""Progress for long work (``dk.bench``, ``dk.tune``, the CLI): one rule for when a bar shows.

A progress callable is ``fn(done, total, label)``: ``done`` counts finished steps out of ``total``;
it may be called again with the same ``done`` and a new label (news about the step under way), and
``done >= total`` ends the bar. :func:`progress_fn` turns a user's ``progress=`` argument into such
a callable or ``None``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

from .errors import InvalidArgument

#: ``progress(done, total, label)``.
ProgressFn = Callable[[int, int, str], None]


def progress_fn(progress: bool | ProgressFn | None, desc: str) -> ProgressFn | None:
    """The callable to report progress to, or None for silence.

    ``progress``: None shows a bar when stderr is a terminal or the code runs in a Jupyter kernel;
    True always shows one, False never; a callable is used as given. ``desc`` names the work on the
    bar (``"deploykit bench"``, ``"deploykit tune"``). In a notebook the bar is an :class:`HtmlBar` in
    the cell's output; elsewhere it is :class:`TextBar` on stderr.
    """
    if callable(progress):
        return progress
    check_progress(progress)
    if not isinstance(desc, str):
        raise InvalidArgument(f"desc must be a str, got {type(desc).__name__} {desc!r}")
    notebook = in_notebook()
    if progress is False or (progress is None and not (notebook or _stderr_is_tty())):
        return None
    if notebook:
        bar = _notebook_bar(desc)
        if bar is not None:
            return bar
    return TextBar(desc)


def check_progress(progress: object) -> None:
    """Refuse a ``progress=`` that is not None, a bool or a callable (``InvalidArgument``)."""
    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        raise InvalidArgument(f"progress must be None, True, False or a callable(done, total, label), "
                              f"got {type(progress).__name__} {progress!r}")


def in_notebook() -> bool:
    """True inside a Jupyter (IPython) kernel; cheap, and never imports IPython itself."""
    if "ipykernel" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return False
    try:
        shell = get_ipython()
    except Exception:  # an odd or half-torn-down IPython: no notebook as far as we can tell
        return False
    return getattr(shell, "kernel", None) is not None


def _stderr_is_tty() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


class TextBar:
    """Steps done so far on stderr: a redrawn bar on a terminal, one line per step elsewhere (CI logs).

    Off a terminal a line is printed when a new step starts; later labels for the same step are
    not repeated (they would flood a log).
    """

    width = 30

    def __init__(self, desc: str = "", stream: TextIO | None = None) -> None:
        self.stream = stream
        self.tty = _stderr_is_tty() if stream is None else bool(getattr(stream, "isatty", bool)())
        self.desc = desc
        self._last_done = -1

    def __call__(self, done: int, total: int, label: str) -> None:
        out = self.stream if self.stream is not None else sys.stderr
        if not self.tty:
            if done < total and done != self._last_done:
                prefix = f"{self.desc} " if self.desc else ""
                print(f"{prefix}{done + 1}/{total}: {label}", file=out, flush=True)
            self._last_done = done
            return
        filled = self.width * min(done, total) // max(total, 1)
        end = "\n" if done >= total else ""
        out.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {label:<44}{end}")
        out.flush()


class HtmlBar:
    """A progress bar in a notebook cell's output: an HTML ``<progress>`` element updated in place
    (IPython's ``display(..., display_id=True)``), so no widget library is needed, nothing goes to
    stderr (no red box), and the final state stays in a saved notebook or its HTML export."""

    def __init__(self, desc: str, display: Callable[..., Any], html: Callable[[str], Any]) -> None:
        self.desc, self._display, self._html = desc, display, html
        self._handle: Any = None

    def __call__(self, done: int, total: int, label: str) -> None:
        import html as escape

        done = min(done, total)
        state = "done" if done >= total else escape.escape(label[:80])
        text = (f"<div style='font-family:monospace'><b>{escape.escape(self.desc)}</b> "
                f"<progress value='{done}' max='{max(total, 1)}' style='width:220px'></progress> "
                f"{done}/{total} &nbsp;{state}</div>")
        if self._handle is None:
            self._handle = self._display(self._html(text), display_id=True)
        else:
            self._handle.update(self._html(text))


def _notebook_bar(desc: str) -> ProgressFn | None:
    """An :class:`HtmlBar` through IPython's display machinery (loaded, since a kernel runs)."""
    try:
        from IPython.display import HTML, display
    except ImportError:
        return None
    return HtmlBar(desc, display, HTML)


__all__ = ["HtmlBar", "ProgressFn", "TextBar", "check_progress", "in_notebook", "progress_fn"]
