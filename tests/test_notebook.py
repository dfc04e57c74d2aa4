"""examples/tour.ipynb, executed as a user would run it: every cell runs, shows itself well, and is quiet.

The notebook is executed in a fresh Jupyter kernel (nbclient + ipykernel) running this Python, from
the repository root. Cells are found by their tags (cell metadata), so reordering the tour does not
break the checks. What a user sees is checked on the outputs a front end renders:

* the result objects (Engine, plan, compare, tune, bench) come with ``text/html`` — a table, not a
  raw dataclass dump in ``text/plain``;
* ``result.plot()`` comes as ``image/png``, not only the text ``<Figure size ...>``;
* nothing is written to stderr, which Jupyter shows as a red box: the ones seen so far are a
  runtime's own log line (LiteRT's ``INFO: Created TensorFlow Lite XNNPACK delegate``), tqdm's
  text bar and its ``TqdmWarning: IProgress not found`` when ipywidgets is missing, and Python
  warnings.

The stored notebook has no outputs (small diffs, no machine's numbers in git): a test checks that too.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "examples" / "tour.ipynb"

#: cells whose result must render as HTML, by tag
HTML_CELLS = ("engine", "plan", "probe", "compare", "tune", "bench")
#: cells whose result must be an image, by tag
IMAGE_CELLS = ("plot", "photo", "letterboxed")
#: seconds a cell may take before the run is called stuck (the whole tour takes ~15 s on 2 cores)
CELL_TIMEOUT = 180

KERNEL_NAME = "deploykit-tour-test"
#: ``Name(field=...`` — what a dataclass without its own __repr__ prints
RAW_DATACLASS = re.compile(r"^\w+\(\w+=")


def _read_stored() -> Any:
    nbformat = pytest.importorskip("nbformat", reason="reading the notebook needs nbformat")
    return nbformat.read(TOUR, as_version=4)


def test_stored_without_outputs() -> None:
    nb = _read_stored()
    with_outputs = [i for i, c in enumerate(nb.cells)
                    if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not with_outputs, (f"{TOUR.name}: cells {with_outputs} are stored with outputs; clear them "
                              f"(jupyter nbconvert --clear-output --inplace {TOUR.relative_to(ROOT)})")


def test_every_checked_tag_is_in_the_notebook() -> None:
    nb = _read_stored()
    tags = {t for c in nb.cells for t in c.get("metadata", {}).get("tags", [])}
    missing = sorted(set(HTML_CELLS + IMAGE_CELLS) - tags)
    assert not missing, f"{TOUR.name}: no cell is tagged {missing}"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, float]:
    """The tour executed once in a kernel running this Python; (notebook, seconds taken)."""
    pytest.importorskip("nbclient", reason="executing the notebook needs nbclient (pip install nbclient)")
    pytest.importorskip("ipykernel", reason="executing the notebook needs ipykernel (pip install ipykernel)")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    # a kernel spec naming this interpreter, so the kernel is not whichever "python3" a user has
    kernels = tmp_path_factory.mktemp("kernels")
    spec_dir = kernels / KERNEL_NAME
    spec_dir.mkdir()
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "deploykit tour test", "language": "python",
    }))
    manager = KernelManager(kernel_name=KERNEL_NAME,
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    nb = _read_stored()
    client = NotebookClient(nb, km=manager, timeout=CELL_TIMEOUT, allow_errors=True,
                            resources={"metadata": {"path": str(ROOT)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def _code_cells(nb: Any) -> list[tuple[int, Any]]:
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def _cell(nb: Any, tag: str) -> Any:
    found = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"{TOUR.name}: {len(found)} cells tagged {tag!r}, expected one"
    return found[0]


def _describe(cell: Any) -> str:
    first = cell.source.splitlines()[0] if cell.source else ""
    return f"cell [{cell.get('execution_count')}] {first!r}"


def _rendered(cell: Any) -> dict[str, Any]:
    """MIME type -> data of the cell's display outputs (execute_result and display_data)."""
    data: dict[str, Any] = {}
    for out in cell.outputs:
        if out.output_type in ("execute_result", "display_data"):
            data.update(out.get("data", {}))
    return data


def test_no_cell_raised(executed: tuple[Any, float]) -> None:
    nb, _ = executed
    errors = [f"{_describe(c)}: {o.ename}: {o.evalue}" for _, c in _code_cells(nb)
              for o in c.outputs if o.output_type == "error"]
    assert not errors, "cells raised:\n" + "\n".join(errors)


def test_every_code_cell_ran(executed: tuple[Any, float]) -> None:
    nb, _ = executed
    not_run = [i for i, c in _code_cells(nb) if c.execution_count is None]
    assert not not_run, f"cells {not_run} did not run"


@pytest.mark.parametrize("tag", HTML_CELLS)
def test_result_renders_as_html(executed: tuple[Any, float], tag: str) -> None:
    cell = _cell(executed[0], tag)
    data = _rendered(cell)
    assert "text/html" in data, (f"{_describe(cell)} shows only {sorted(data) or 'nothing'}: "
                                 f"{str(data.get('text/plain', ''))[:200]!r}")
    html = data["text/html"]
    assert "<table" in html, f"{_describe(cell)}: its HTML has no table: {html[:200]!r}"
    plain = str(data.get("text/plain", ""))
    assert not RAW_DATACLASS.match(plain), (
        f"{_describe(cell)}: its text form is a raw dataclass repr: {plain[:200]!r}")


@pytest.mark.parametrize("tag", IMAGE_CELLS)
def test_result_renders_as_an_image(executed: tuple[Any, float], tag: str) -> None:
    cell = _cell(executed[0], tag)
    data = _rendered(cell)
    assert "image/png" in data, (f"{_describe(cell)} shows no image, only {sorted(data) or 'nothing'}: "
                                 f"{str(data.get('text/plain', ''))[:200]!r}")
    assert not str(data.get("text/plain", "")).startswith("<Figure"), (
        f"{_describe(cell)}: the text form is matplotlib's bare Figure repr")


def test_no_cell_wrote_to_stderr(executed: tuple[Any, float]) -> None:
    """Jupyter shows stderr as a red box: a runtime's log line (LiteRT's 'INFO: Created TensorFlow
    Lite XNNPACK delegate'), tqdm's text bar or its 'IProgress not found' warning, a Python warning."""
    nb, _ = executed
    written = []
    for _, cell in _code_cells(nb):
        text = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr")
        lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
        if lines:
            more = f"\n    ... {len(lines) - 3} more lines" if len(lines) > 3 else ""
            written.append(f"{_describe(cell)}:\n    " + "\n    ".join(lines[:3]) + more)
    assert not written, "cells wrote to stderr (a red box in Jupyter):\n" + "\n".join(written)


def test_progress_shows_in_the_notebook(executed: tuple[Any, float]) -> None:
    """tune and bench show progress by default in a notebook (a widget or an HTML bar, not stderr)."""
    nb, _ = executed
    for tag in ("tune", "bench"):
        cell = _cell(nb, tag)
        shown = [o for o in cell.outputs if o.output_type == "display_data"
                 or (o.output_type == "stream" and o.name == "stderr")]
        assert shown, f"{_describe(cell)}: no progress shown (no display_data, nothing on stderr)"


def test_tour_runs_in_under_a_minute(executed: tuple[Any, float]) -> None:
    _, seconds = executed
    assert seconds < 60, f"the tour took {seconds:.0f} s; keep its budgets short (< 60 s on 2 cores)"
