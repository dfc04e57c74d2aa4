"""The deploykit command: demo, info, run, backends; bad arguments -> one line, exit 2."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from deploykit.cli import COMMANDS, main
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
    (["run", "missing.onnx"], "deploykit run: error: model file not found: missing.onnx"),
    (["info", "missing.onnx"], "deploykit info: error: model file not found: missing.onnx"),
    (["frobnicate"], "deploykit: error: argument COMMAND: invalid choice: 'frobnicate'"),
    (["run", "MODEL", "--backend", "tvm"], "deploykit run: error: unknown backend 'tvm'"),
    (["run", "MODEL", "-o", "/no/such/folder/out.npz"], "--output /no/such/folder/out.npz: folder "
                                                        "'/no/such/folder' does not exist"),
    (["run", "MODEL", "-o", "."], "--output .: is a folder"),
    (["run", "MODEL", "--input", "images=a.npy", "--input", "b.npy"], "a bare FILE.npy works alone"),
    (["run", "MODEL", "--input", "=a.npy"], "expected NAME=FILE.npy or FILE.npz"),
    (["run", "MODEL", "--input", "images=nothere.npy"], "no such file 'nothere.npy'"),
    (["run", "MODEL", "--backend", "warp"], "unknown backend 'warp'"),
    (["run", "MODEL", "--threads", "many"], "invalid int value: 'many'"),
    (["info"], "the following arguments are required: model"),
    (["demo", "--seconds", "0"], "deploykit demo: error: --seconds must be a number > 0, got 0.0"),
    (["demo", "--seconds", "inf"], "deploykit demo: error: --seconds must be a number > 0, got inf"),
    (["run", "MODEL", "--bogus", "3"], "deploykit run: error: unrecognized arguments: --bogus 3 (see "
                                       "deploykit run --help)"),
    (["tune", "MODEL", "--no-such-flag"], "deploykit tune: error: unrecognized arguments: --no-such-flag"),
    (["run", "MODEL", "--threads", "0"], "deploykit run: error: --threads must be an int >= 1 (or leave "
                                         "--threads out: the CPUs this process may use), got 0"),
    (["tune", "MODEL", "--dim", "nope=3"], "deploykit tune: error: --dim names 'nope', which no input "
                                           "shape of the model has; its named dimensions: 'N' (images)"),
    (["tune", "MODEL", "--shape", "nope=1x2"], "--shape names 'nope', which the model has no input of"),
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


def test_the_table_of_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """One table lists the commands; the parser, the help and the dispatch all read it."""
    assert [c.name for c in COMMANDS] == ["demo", "info", "run", "bench", "backends", "probe", "tune",
                                           "export", "convert", "quantize", "prune", "pack", "inspect",
                                           "sign", "build", "serve"]
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = " ".join(capsys.readouterr().out.split())
    for command in COMMANDS:
        assert f"{command.name} {' '.join(command.help.split())[:25]}" in listed


def test_an_input_given_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "a.npy", np.zeros((1, 1, 8, 8), np.float32))
    np.savez(tmp_path / "f.npz", images=np.zeros((1, 1, 8, 8), np.float32))
    for argv in (["-i", f"images={tmp_path / 'a.npy'}", "-i", f"images={tmp_path / 'a.npy'}"],
                 ["-i", str(tmp_path / "f.npz"), "-i", f"images={tmp_path / 'a.npy'}"]):
        assert main(["run", str(MODEL_PATH), *argv]) == 2
        err = capsys.readouterr().err
        assert "deploykit run: error: --input images=" in err and "input 'images' is already given by" in err


@pytest.mark.parametrize("content, said", [
    (b"not an array\n", "is not a .npy/.npz file: it looks like text ('not an array'...); save arrays "
                        "with numpy.save or numpy.savez"),
    (b"\x80\x04\x95junk", "is not a .npy/.npz file: it looks like a Python pickle"),
    (MODEL_PATH.read_bytes(), "is not a .npy/.npz file: it looks like an ONNX model"),
    (b"", "is empty (0 bytes)"),
    (b"\x93NUMPYjunk", "is a damaged .npy/.npz file ("),
    (b"PK\x03\x04junk", "is a damaged .npy/.npz file (File is not a zip file)"),
])
def test_an_unreadable_input_file_is_named(content: bytes, said: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The flag, the file and what the file is: never numpy's own words about pickles."""
    (tmp_path / "x.npy").write_bytes(content)
    for item in (f"images={tmp_path / 'x.npy'}", str(tmp_path / "x.npy")):
        assert main(["run", str(MODEL_PATH), "-i", item]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "allow_pickle" not in err
        assert f"deploykit run: error: --input {item}: {str(tmp_path / 'x.npy')!r} {said}" in err


def test_an_unreadable_array_in_an_npz_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "f.npz", images=np.array([{"a": 1}], dtype=object))
    np.save(tmp_path / "one.npy", np.zeros((1, 1, 8, 8), np.float32))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    assert main(["run", str(MODEL_PATH), "-i", str(tmp_path / "f.npz")]) == 2
    assert f"array 'images' of {str(tmp_path / 'f.npz')!r} cannot be read" in capsys.readouterr().err
    assert main(["run", str(MODEL_PATH), "-i", str(tmp_path / "one.npz")]) == 2
    assert "is a single .npy array; give it as NAME=FILE.npy" in capsys.readouterr().err


def test_only_user_errors_are_one_line(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A DeployKitError or OSError is the user's (exit 2); a raw ValueError/TypeError is a bug in
    deploykit and keeps its traceback."""
    from deploykit.cli import info

    def broken(source: object) -> dict:
        raise ValueError("an internal bug")

    monkeypatch.setattr(info, "_onnx_facts", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["info", str(MODEL_PATH)])
    monkeypatch.setattr(info, "_onnx_facts", lambda source: (_ for _ in ()).throw(PermissionError(13, "no")))
    assert main(["info", str(MODEL_PATH)]) == 2
    assert capsys.readouterr().err == "deploykit info: error: [Errno 13] no\n"
    proc = subprocess.run([sys.executable, "-c", "import sys, deploykit.cli.info as i; "
                           "i._onnx_facts = lambda s: 1 / 0; from deploykit.cli import main; "
                           f"sys.exit(main(['info', {str(MODEL_PATH)!r}]))"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    """`deploykit ... | head`: the reader is gone before we write; no traceback, no Errno 32."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "deploykit", "info", str(MODEL_PATH)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 1 and proc.stderr == ""


def test_broken_pipe_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Gone())
    assert main(["info", str(MODEL_PATH)]) == 1
    assert capsys.readouterr().err == ""


def test_info_says_what_the_content_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "x.tflite"
    text.write_text("hello world\n")  # 12 bytes of text
    assert main(["info", str(text)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deploykit info: error: ") and "not a TFLite model" in err and "text" in err
    renamed = tmp_path / "digits.tflite"
    renamed.write_bytes(MODEL_PATH.read_bytes())  # an ONNX file named .tflite
    assert main(["info", str(renamed)]) == 0
    out = capsys.readouterr().out
    assert "format      onnx" in out and "named .tflite, but the content is a onnx model" in out
    assert "input       images: float32[N,1,8,8]" in out


def test_info_of_a_tflite_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ai_edge_litert.interpreter", reason="reading a .tflite's signature needs LiteRT")
    from tests.backends import tflite_models

    data = tflite_models.dynamic_add()
    (tmp_path / "add.tflite").write_bytes(data)
    assert main(["info", str(tmp_path / "add.tflite")]) == 0
    out = capsys.readouterr().out
    assert "format      tflite" in out
    assert "input       x: float32[?,3]" in out and "output      z: float32[?,3]" in out
    assert main(["info", "--json", str(tmp_path / "add.tflite")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["inputs"][1] == {"name": "y", "dtype": "float32", "shape": [None, 3]}
    assert info["read_by"] == "tflite"  # the first usable backend that reads the format
    (tmp_path / "cut.tflite").write_bytes(data[: len(data) // 2])  # a truncated file
    assert main(["info", str(tmp_path / "cut.tflite")]) == 2
    assert capsys.readouterr().err.startswith("deploykit info: error: ")


def test_info_without_a_usable_backend_for_the_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The backends asked are those the registry lists for the format (no name written in info)."""
    from deploykit.backends import Availability
    from deploykit.cli import info

    asked: list[str] = []
    monkeypatch.setattr(info, "auto_candidates", lambda fmt: asked.append(fmt) or ["tflite", "plugin"])
    monkeypatch.setattr(info, "availability",
                        lambda name: Availability(False, f"{name} is not installed", None, ("tflite",)))
    (tmp_path / "m.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))
    assert main(["info", str(tmp_path / "m.tflite")]) == 0
    out = capsys.readouterr().out
    assert asked == ["tflite"] and "format      tflite" in out
    assert ("signature   unknown: no backend that reads tflite models is usable here (tflite: tflite is "
            "not installed; plugin: plugin is not installed)") in out


def test_tune_json_names_the_chosen_candidate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", str(MODEL_PATH), "--no-cache", "--seconds", "0.05", "--json", "--no-progress"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["chosen"] is not None and plan["chosen"] == plan["candidates"][0]


def test_a_bare_file_for_a_two_input_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx.save(models.dynamic_add(), tmp_path / "add.onnx")
    np.save(tmp_path / "x.npy", np.ones((2, 3), np.float32))
    assert main(["run", str(tmp_path / "add.onnx"), "-i", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert err == ("deploykit run: error: a bare FILE.npy was given but the model has 2 inputs (x, y); "
                   "give each as --input NAME=FILE.npy\n")


@pytest.mark.parametrize("argv", ["info model.onnx", ["info", 3]])
def test_main_takes_a_list_of_strings(argv: object) -> None:
    import deploykit as dk

    with pytest.raises(dk.InvalidArgument, match="argv must be a list of strings"):
        main(argv)  # type: ignore[arg-type]


def test_tune_takes_threads_and_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    """The same option groups as bench: --threads, and --range beside --shape/--dim."""
    argv = ["tune", str(MODEL_PATH), "--no-cache", "--seconds", "0.05", "--json", "--no-progress"]
    assert main([*argv, "--threads", "1", "--range", "images=0:16", "--shape", "images=2x1x8x8"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["chosen"] is not None
    assert main([*argv, "--range", "nope=0:1"]) == 2
    assert capsys.readouterr().err.startswith("deploykit tune: error: --range names 'nope', which the "
                                              "model has no input of; its inputs: images")
    assert main([*argv, "--range", "images=1:0"]) == 2
    assert "deploykit tune: error: --range images=1:0 is empty" in capsys.readouterr().err
