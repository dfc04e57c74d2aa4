"""The hostile-file corpus (tests/fuzz/corpus.py: 400+ mutated and hand-made ONNX, TFLite, bundle,
archive and Pipeline files) through deploykit's loaders in a child process: it must not crash or
hang, every file must load or fail with a ``DeployKitError``, and nothing may be written outside
the corpus folder. About 10 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.fuzz import corpus

ROOT = Path(__file__).resolve().parents[2]


def test_every_hostile_file_loads_or_fails_cleanly(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the corpus runs through onnxruntime (and LiteRT)")
    made = corpus.build(tmp_path / "corpus", per_seed=40)
    assert len(made) >= 300, f"only {len(made)} corpus files (zoo seeds unavailable?)"
    listing = tmp_path / "corpus.json"
    listing.write_text(json.dumps([str(p) for p in made]))
    before = set(os.listdir(tmp_path))
    env = {**os.environ, "DEPLOYKIT_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tests.fuzz.runner", str(listing)], capture_output=True,
                          text=True, timeout=600, env=env, cwd=tmp_path / "corpus", check=False)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    started = [ln["start"] for ln in lines if "start" in ln]
    outcomes = {ln["file"]: ln["outcome"] for ln in lines if "outcome" in ln}
    assert done.returncode == 0, (f"the loader process died (exit {done.returncode}) on {started[-1]}:\n"
                                  f"{done.stderr[-2000:]}")
    assert len(outcomes) == len(made)
    raw = {f: o for f, o in outcomes.items() if not (o == "ok" or o.startswith("error:"))}
    assert not raw, f"{len(raw)} file(s) raised something else than a DeployKitError: {raw}"
    kinds = Counter(o for o in outcomes.values())
    assert kinds["ok"] > 0 and kinds["error:IntegrityError"] > 0 and kinds["error:ModelLoadError"] > 0, kinds
    assert set(os.listdir(tmp_path)) - before <= {"cache"}  # nothing landed beside the corpus
    assert not Path("/tmp/deploykit-fuzz-escape.txt").exists() and not (tmp_path / "escape.txt").exists()
