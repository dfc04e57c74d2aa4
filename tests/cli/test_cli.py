"""The deploykit command: demo, info, run, backends; bad arguments -> one line, exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from deploykit.cli import main
from deploykit.demo import MODEL_PATH
from tests import models

pytest.importorskip("onnxruntime", reason="the CLI runs models on onnxruntime")


def test_info_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(MODEL_PATH)]) == 0
    text = capsys.readouterr().out
    assert "format      onnx" in text and "input       images: float32[N,1,8,8]" in text
    assert "opsets      ai.onnx 17" in text
    assert main(["info", "--json", str(MODEL_PATH)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"] == [{"name": "images", "dtype": "float32", "shape": ["N", 1, 8, 8]}]
    assert data["outputs"][1] == {"name": "label", "dtype": "int64", "shape": ["N"]}
    assert len(data["sha256"]) == 64 and data["size_bytes"] == MODEL_PATH.stat().st_size


def test_run_with_npy_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "add.onnx"
    onnx.save(models.dynamic_add(), model)
    np.save(tmp_path / "x.npy", np.ones((2, 3), np.float32))
    np.save(tmp_path / "y.npy", np.full((2, 3), 4, np.float32))
    out = tmp_path / "out.npz"
    code = main(["run", str(model), "--input", f"x={tmp_path / 'x.npy'}",
                 "-i", f"y={tmp_path / 'y.npy'}", "--backend", "onnxruntime", "-o", str(out)])
    assert code == 0
    assert "z: float32[2, 3] min=5 max=5 mean=5" in capsys.readouterr().out
    with np.load(out) as result:
        np.testing.assert_array_equal(result["z"], np.full((2, 3), 5, np.float32))


def test_run_single_input_and_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = np.zeros((3, 1, 8, 8), np.float32)
    np.save(tmp_path / "digits.npy", images)
    assert main(["run", str(MODEL_PATH), "-i", str(tmp_path / "digits.npy")]) == 0
    assert "label: int64[3]" in capsys.readouterr().out
    np.savez(tmp_path / "feeds.npz", images=images)
    assert main(["run", str(MODEL_PATH), "-i", str(tmp_path / "feeds.npz")]) == 0


@pytest.mark.parametrize("argv, pattern", [
    (["run", "missing.onnx"], "model file not found: missing.onnx"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["run", "MODEL", "--input", "images=nothere.npy"], "no such file 'nothere.npy'"),
    (["run", "MODEL", "--backend", "warp"], "unknown backend 'warp'"),
    (["run", "MODEL", "--threads", "many"], "invalid int value: 'many'"),
    (["info"], "the following arguments are required: model"),
    (["demo", "--seconds", "0"], "--seconds must be > 0"),
])
def test_bad_arguments_one_line_exit_2(argv: list[str], pattern: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(MODEL_PATH) if a == "MODEL" else a for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = int(e.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert re.match(r"deploykit( \w+)?: error: ", err)
    assert pattern in err


def test_bad_input_shape_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "bad.npy", np.zeros((3, 8, 8), np.float32))
    assert main(["run", str(MODEL_PATH), "-i", str(tmp_path / "bad.npy")]) == 2
    assert "input 'images': got 3-d array" in capsys.readouterr().err


def test_backends_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    assert "onnxruntime" in capsys.readouterr().out


def test_module_and_version_via_subprocess() -> None:
    proc = subprocess.run([sys.executable, "-m", "deploykit", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("deploykit ")
    proc = subprocess.run([sys.executable, "-m", "deploykit", "run", "nope.onnx"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
