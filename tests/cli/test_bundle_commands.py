"""``deploykit pack | inspect | sign``: a bundle made, shown (verified) and signed from the command line;
bad arguments and tampered bundles end in one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import deploykit as dk
from deploykit.cli import main
from deploykit.demo import MODEL_PATH


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYKIT_CACHE_DIR", str(tmp_path / "cache"))


def test_pack_then_inspect(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "labels.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    dk.preprocess.Pipeline.resize_to((8, 8)).save(tmp_path / "pipeline.json")
    assert main(["pack", str(MODEL_PATH), "-o", str(tmp_path / "b.zip"),
                 "--labels", str(tmp_path / "labels.txt"), "--pipeline", str(tmp_path / "pipeline.json"),
                 "--meta", "name=digits", "--meta", "team=ml"]) == 0
    assert "deploykit bundle" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "b.zip")]) == 0
    shown = capsys.readouterr().out
    assert "model/digits.onnx" in shown and "digests verified" in shown and "metadata.team" in shown
    assert main(["inspect", str(tmp_path / "b.zip"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "digits" and data["metadata"] == {"team": "ml"}
    assert data["pipeline"] == "pipeline.json"


def test_sign_then_inspect_with_verify(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("model_signing", reason="the sign extra (model-signing) is not installed")
    from tests.bundle.test_signing import _keys
    private, public = _keys(tmp_path, "k")
    assert main(["pack", str(MODEL_PATH), "-o", str(tmp_path / "b")]) == 0
    assert main(["sign", str(tmp_path / "b"), "--key", str(private)]) == 0
    assert "deploykit.sig" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "b"), "--verify", str(public)]) == 0
    assert "verified" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["pack", str(MODEL_PATH), "-o", "{tmp}/b", "--meta", "novalue"], "--meta 'novalue': expected KEY=VALUE"),
    (["pack", "{tmp}/missing.onnx", "-o", "{tmp}/b"], "not found"),
    (["inspect", "{tmp}/nothing"], "bundle not found"),
    (["sign", "{tmp}", "--key", "{tmp}/k.pem"], "no deploykit.json"),
])
def test_bad_arguments_end_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                       message: str) -> None:
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and message in err, err


def test_inspect_names_the_tampered_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["pack", str(MODEL_PATH), "-o", str(tmp_path / "b"), "--labels", str(MODEL_PATH)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err  # a binary file given as labels
    dk.pack(MODEL_PATH, tmp_path / "c", labels=["a", "b"])
    (tmp_path / "c" / "labels.txt").write_text("b\na\n")
    assert main(["inspect", str(tmp_path / "c")]) == 2
    assert "labels.txt has changed" in capsys.readouterr().err
