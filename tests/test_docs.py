"""Every Python snippet of README.md and docs/*.md runs as written, on real models (issue 12).

Each page's ```python blocks run in page order in one namespace (a page is a tour), in a fresh
working directory where the docs' placeholder file names are links to real models (FILES below),
with the names the snippets use without defining them given real values (NAMES, PAGE_NAMES). A
failure names the page and the line of the block, and its traceback points into the .md file; a
DeployKitWarning from a snippet is a failure too (a doc that warns misleads).

Not every block runs, and none is passed over silently: a Python block in NOT_RUN shows as a
skipped test with its reason, as does every shell block (out of scope here); a block that writes a
signature or quotes the source is checked against the code instead (SIGNATURES, EXCERPTS); CLAIMS
check what a block states once it has run; KNOWN_FAILURES lists blocks, on pages owned elsewhere,
that fail now (an expected failure until the page is fixed). An unlabelled fence holding Python
fails: label it.
"""

from __future__ import annotations

import inspect
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deploykit
from deploykit import backends
from deploykit.benchmark import OverrunWarning
from deploykit.cachedir import cache_dir
from tests import zoo
from tests._support.docs_snippets import (
    Block,
    blocks,
    compile_block,
    documented_signature,
    free_names,
    same_parameters,
)

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_BACKENDS = dict(backends.REGISTRY)  # read at collection, before a test registers its own

# -- the placeholders ------------------------------------------------------------------------------

#: a file name the docs use -> the real model it stands for: a zoo key (tests/zoo.py) or a path in
#: the repository. Each is linked under its doc name into the page's working directory.
FILES: dict[str, str] = {
    "model.onnx": "deploykit/demo/digits.onnx",               # images (N, 1, 8, 8) -> probabilities, label
    "model.tflite": "oww_melspectrogram_tflite",              # any .tflite
    "embed.onnx": "oww_embedding",                            # one network in two formats
    "embed.tflite": "oww_embedding_tflite",
    "embedding_model.onnx": "oww_embedding",
    "embedding_model.tflite": "oww_embedding_tflite",
    "detector.tflite": "mp_face_detection_short",
    "face_detection_short_range.tflite": "mp_face_detection_short",
}

#: files the docs read that are not models: name -> content, written into the working directory
WRITTEN: dict[str, str] = {
    "embedding.json": json.dumps({"artifacts": ["embedding_model.onnx", "embedding_model.tflite"]}),
}


def _photo() -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return np.asarray(load_sample_image("china.jpg"))  # 427x640 RGB uint8


def _flower() -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return np.asarray(load_sample_image("flower.jpg"))


def _digits(n: int = 8) -> np.ndarray:
    from deploykit.demo import load_test_data

    return load_test_data()[0][:n]  # (n, 1, 8, 8) float32


def _embedding_input() -> np.ndarray:
    return zoo.sample_feeds("oww_embedding")["input_1"]  # (2, 76, 32, 1) float32


#: a name the snippets use without defining it -> a real value of what it stands for
NAMES: dict[str, Callable[[], Any]] = {
    "dk": lambda: deploykit,                        # each page assumes README's `import deploykit as dk`
    "batch": _digits,                               # (8, 1, 8, 8) for model.onnx's 'images'
    "feeds": lambda: {"input_1": _embedding_input()},                 # for embed.onnx / embed.tflite
    "frame": _photo,                                # a real photo (427x640 RGB)
    "frame_bgr": lambda: np.ascontiguousarray(_photo()[..., ::-1]),  # ... as OpenCV reads it
    "photo": _photo,
    "images": lambda: [_photo(), _flower()],        # two real photos
    "boxes_in_tensor": lambda: np.array([[120.0, 200.0, 360.0, 420.0]], np.float32),  # x1 y1 x2 y2
    "my_report": lambda: deploykit.probe(),         # a HardwareReport
}

#: where a page means something else by a name: page -> {name: value}
PAGE_NAMES: dict[str, dict[str, Callable[[], Any]]] = {
    "docs/compare.md": {"batch": _embedding_input},                     # {"input_1": batch}
    "docs/engine.md": {"engine": lambda: deploykit.load(ROOT / FILES["model.onnx"]),   # digits
                       "feeds": lambda: {"images": _digits()},
                       "images": _digits},                              # {"images": images}
}

#: the clock: every dk.bench row is timed for at most this many seconds (the docs ask for the default
#: 1 s, or 2 s); the snippets' other arguments stand as written
BENCH_SECONDS = 0.05


def _capped_bench(bench: Callable[..., Any]) -> Callable[..., Any]:
    def capped(*args: Any, **kwargs: Any) -> Any:
        kwargs["duration"] = min(kwargs.get("duration") or 1.0, BENCH_SECONDS)
        return bench(*args, **kwargs)

    return capped


# -- blocks not run, or checked rather than run ----------------------------------------------------

# A row names its block by (page, a piece of its code): pages grow, lines move. Messages give the line.
Key = tuple[str, str]

#: a Python block that is not run -> why
NOT_RUN: dict[Key, str] = {
    ("docs/ray.md", "import ray"): "starts a Ray cluster and reads photos/; tests/integrations/test_ray.py "
                                   "runs dk.ray.predict on a local Ray",
    ("docs/ray.md", "from ray import serve"): "starts Ray Serve on port 8000 and serves models/; "
                                              "tests/integrations/test_rayserve.py deploys a repository "
                                              "on a local Ray Serve",
    ("docs/mlflow.md", "import mlflow"):
        "writes an MLflow database in the working folder; tests/integrations/test_mlflow.py runs the "
        "same calls on a file store",
    ("docs/tensorrt.md", 'engine = dk.load("model.onnx", backend="tensorrt"'):
        "needs TensorRT and an NVIDIA GPU; neither can be installed on this project's machines",
}

#: a block that writes a call as its signature -> the callable it documents (compared by inspect)
SIGNATURES: dict[Key, str] = {
    ("docs/engine.md", "engine = dk.load(model, "): "deploykit.load",
}

#: a block quoting the source -> the file it quotes (the block must appear there verbatim)
EXCERPTS: dict[Key, str] = {
    ("docs/reference-backend.md", '@register("LeakyRelu"'): "deploykit/backends/reference/ops/elementwise.py",
}

#: what a block states, checked after it runs -> (what, check(namespace) -> ok)
CLAIMS: dict[Key, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    ("README.md", 'out = engine.run({"images": batch})'): (
        "engine.run returns {'probabilities': ..., 'label': ...}",
        lambda ns: list(ns["out"]) == ["probabilities", "label"]),
    ("docs/backends.md", "REGISTRY = {"): ("REGISTRY is deploykit.backends.REGISTRY",
                                           lambda ns: ns["REGISTRY"] == BUILTIN_BACKENDS),
}

#: blocks of pages other people own that fail now -> the failure (fix the page, then delete the
#: row; a row whose block passes fails the test)
KNOWN_FAILURES: dict[Key, str] = {}

# --------------------------------------------------------------------------------------------------

PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
BLOCKS = {page: blocks(ROOT, page) for page in PAGES}
PYTHON = {"python", "py", "python3"}


def _python(page: str) -> list[Block]:
    return [b for b in BLOCKS[page] if b.lang in PYTHON]


def _block(key: Key) -> Block | None:
    """The one Python block of the page that holds the key's code (None if none, or several)."""
    page, code = key
    found = [b for b in _python(page) if code in b.code] if page in BLOCKS else []
    return found[0] if len(found) == 1 else None


def _row(table: dict[Key, Any], block: Block) -> Any:
    return next((v for k, v in table.items() if _block(k) == block), None)


def _to_run(page: str) -> list[Block]:
    return [b for b in _python(page)
            if all(_row(t, b) is None for t in (NOT_RUN, SIGNATURES, EXCERPTS))]


def _files(page: str) -> list[str]:
    """The FILES and WRITTEN names the page's run blocks quote (and those the WRITTEN ones name)."""
    text = "".join(b.code for b in _to_run(page))
    text += "".join(content for name, content in WRITTEN.items() if _quotes(text, name))
    return [name for name in (*FILES, *WRITTEN) if _quotes(text, name)]


def _quotes(text: str, name: str) -> bool:
    return re.search(rf"[\"']{re.escape(name)}[\"']", text) is not None


def _zoo_keys(page: str) -> list[str]:
    return [FILES[name] for name in _files(page) if FILES.get(name) in zoo.MODELS]


def _page_param(page: str) -> Any:
    marks = [pytest.mark.zoo] if _zoo_keys(page) else []
    return pytest.param(page, id=page, marks=marks)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory, the tune cache inside it, matplotlib off-screen, no operator
    override of backend="auto". The onnx2tf environment (2.6 GB, made once by `make test`) is the
    real cache's: made again per page, it cost ~110 s of convert.md's run."""
    onnx2tf_envs = cache_dir() / "onnx2tf"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEPLOYKIT_CACHE_DIR", str(tmp_path / ".cache"))
    if onnx2tf_envs.is_dir():
        (tmp_path / ".cache").mkdir()
        (tmp_path / ".cache" / "onnx2tf").symlink_to(onnx2tf_envs, target_is_directory=True)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("DEPLOYKIT_BACKEND", raising=False)
    return tmp_path


def _place_files(page: str, where: Path, zoo_path: Callable[[str], Path]) -> None:
    for name in _files(page):
        if name in WRITTEN:
            (where / name).write_text(WRITTEN[name])
        else:
            source = FILES[name]
            (where / name).symlink_to(zoo_path(source) if source in zoo.MODELS else ROOT / source)


@pytest.mark.parametrize("page", [_page_param(p) for p in PAGES if _to_run(p)])
def test_page_runs(page: str, workdir: Path, zoo_path: Callable[[str], Path],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploykit, "bench", _capped_bench(deploykit.bench))
    _place_files(page, workdir, zoo_path)
    run = _to_run(page)
    names = {**NAMES, **PAGE_NAMES.get(page, {})}
    wanted = free_names([b.code for b in run])
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    namespace.update({n: names[n]() for n in sorted(wanted) if n in names})
    registered = set(backends.names())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", deploykit.DeployKitWarning)  # a snippet that warns misleads
            warnings.simplefilter("ignore", OverrunWarning)  # BENCH_SECONDS makes rows overrun, not the doc
            for block in run:
                _run_block(block, namespace)
    finally:
        for value in namespace.values():
            if isinstance(value, deploykit.Engine):
                value.close()
        for name in set(backends.names()) - registered:  # a page may register a backend of its own
            backends.unregister(name)


def _run_block(block: Block, namespace: dict[str, Any]) -> None:
    known = _row(KNOWN_FAILURES, block)
    try:
        exec(compile_block(block), namespace)
    except Exception as e:
        if known is not None:
            pytest.xfail(f"{block.where}: {known} ({type(e).__name__}: {e})")
        raise AssertionError(f"{block.where}: the block fails: {type(e).__name__}: {e}") from e
    if known is not None:
        pytest.fail(f"{block.where} is in KNOWN_FAILURES but runs now: delete its row")
    claim = _row(CLAIMS, block)
    if claim is not None:
        what, check = claim
        assert check(namespace), f"{block.where}: the block says {what}, and it is not so"


def _not_run() -> list[Any]:
    out = []
    for page in PAGES:
        for b in BLOCKS[page]:
            if b.lang in PYTHON and _row(NOT_RUN, b) is not None:
                out.append(pytest.param(f"{b.where}: {_row(NOT_RUN, b)}", id=b.where))
            elif b.lang in {"sh", "bash", "shell", "console"}:
                out.append(pytest.param(f"{b.where}: a shell block (the Python blocks are run)", id=b.where))
    return out


@pytest.mark.parametrize("reason", _not_run())
def test_block_not_run(reason: str) -> None:
    pytest.skip(reason)


@pytest.mark.parametrize(("key", "target"), [pytest.param(k, v, id=k[0]) for k, v in SIGNATURES.items()])
def test_documented_signature(key: Key, target: str) -> None:
    block = _block(key)
    assert block is not None, f"no one ```python block of {key[0]} holds {key[1]!r}: update SIGNATURES"
    module, _, attr = target.rpartition(".")
    real = inspect.signature(getattr(__import__(module, fromlist=[attr]), attr))
    problems = same_parameters(documented_signature(block.code), real)
    assert not problems, f"{block.where} documents {target} as it is not: {'; '.join(problems)}"


@pytest.mark.parametrize(("key", "source"), [pytest.param(k, v, id=k[0]) for k, v in EXCERPTS.items()])
def test_excerpt_is_in_the_source(key: Key, source: str) -> None:
    block = _block(key)
    assert block is not None, f"no one ```python block of {key[0]} holds {key[1]!r}: update EXCERPTS"
    assert block.code.strip() in (ROOT / source).read_text(), f"{block.where} no longer quotes {source}"


def test_tables_name_real_blocks() -> None:
    """Every row of the tables above points at a Python block that exists, and every placeholder
    is still used (pages change)."""
    for table in (NOT_RUN, SIGNATURES, EXCERPTS, CLAIMS, KNOWN_FAILURES):
        stale = [key for key in table if _block(key) is None]
        assert not stale, f"no one ```python block holds each of {stale}: update the table"
    code = {page: "".join(b.code for b in _to_run(page)) for page in PAGES}
    used = {name for page in PAGES for name in _files(page)}
    unused = [name for name in (*FILES, *WRITTEN) if name not in used]
    unused += [name for name in NAMES if not any(name in free_names([b.code for b in _to_run(p)])
                                                 for p in PAGES)]
    unused += [f"{page}: {name}" for page, names in PAGE_NAMES.items() for name in names
               if page not in code or name not in free_names([b.code for b in _to_run(page)])]
    assert not unused, f"no snippet uses {unused} any more: delete the row"


def test_unlabelled_blocks_are_not_python() -> None:
    """A Python snippet in a fence without a language would escape this test: label it."""
    hidden = []
    for page in PAGES:
        for b in BLOCKS[page]:
            if b.lang == "" and ("dk." in b.code or "deploykit" in b.code):
                try:
                    compile(b.code, b.where, "exec")
                except SyntaxError:
                    continue
                hidden.append(b.where)
    assert not hidden, f"Python in unlabelled fences at {hidden}: write ```python"
