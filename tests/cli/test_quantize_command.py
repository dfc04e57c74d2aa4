"""``deploykit quantize`` and ``deploykit prune``: the report printed, the kept model and the JSON
written; bad arguments refused in one line with exit code 2 before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime.quantization", reason="onnxruntime (its quantizer) is not installed")

import deploykit as dk
from deploykit.cli import main
from deploykit.demo import MODEL_PATH, load_test_data


def test_quantize_writes_the_kept_model_and_the_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    np.save(tmp_path / "cal.npy", load_test_data()[0][:32])
    out, report = tmp_path / "q.onnx", tmp_path / "q.json"
    code = main(["quantize", str(MODEL_PATH), "-i", str(tmp_path / "cal.npy"), "-o", str(out),
                 "--min-speedup", "0", "--accuracy", "0.9", "--candidates", "int8-dynamic",
                 "--json", str(report)])
    printed = capsys.readouterr().out
    assert code == 0 and "int8-dynamic" in printed and "kept" in printed
    data = json.loads(report.read_text())
    assert data["chosen"] == "int8-dynamic" and Path(data["path"]) == out and out.is_file()
    assert dk.load(out).run({"images": load_test_data()[0][:4]})["label"].shape == (4,)


@pytest.mark.parametrize("argv, message", [
    (["-o", "/no/such/folder/q.onnx"], "--output /no/such/folder/q.onnx: folder"),
    (["-o", "{tmp}/q.onnx", "--candidates", "int4"], "choose among"),
    (["-o", "{tmp}/q.onnx", "--accuracy", "1.5"], "0..1"),
    (["-o", "{tmp}/q.onnx", "-i", "{tmp}/missing.npy"], "missing.npy"),
])
def test_bad_arguments_end_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                       message: str) -> None:
    code = main(["quantize", str(MODEL_PATH), *(a.replace("{tmp}", str(tmp_path)) for a in argv)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("deploykit quantize: error:") and message in err, err
    assert not (tmp_path / "q.onnx").exists()


def test_prune_writes_the_kept_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    np.save(tmp_path / "s.npy", load_test_data()[0][:32])
    out = tmp_path / "p.onnx"
    code = main(["prune", str(MODEL_PATH), "-i", str(tmp_path / "s.npy"), "-o", str(out),
                 "--min-speedup", "0", "--accuracy", "0", "--fractions", "0.25"])
    printed = capsys.readouterr().out
    assert code == 0 and "deploykit prune" in printed and "units-25%" in printed and out.is_file()
    assert main(["prune", str(MODEL_PATH), "-o", str(out), "--fractions", "half"]) == 2
    assert "--fractions: 'half' is not a number" in capsys.readouterr().err
