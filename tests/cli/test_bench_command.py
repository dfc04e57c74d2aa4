"""`deploykit bench`: the command line over dk.bench — flags, progress, outputs, errors up front."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from deploykit.cli import main
from deploykit.demo import MODEL_PATH, load_test_data
from deploykit.hostinfo import usable_cpus
from tests import models

pytest.importorskip("onnxruntime", reason="dk.bench is checked on onnxruntime and the numpy backend")


def test_cli_bench(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", str(MODEL_PATH), "--backend", "onnxruntime,numpy", "--batch", "1,4",
                 "-c", "1,2", "--duration", "0.02", "--min-samples", "5", "--warmup", "1",
                 "--json", str(tmp_path / "o.json"), "--csv", str(tmp_path / "o.csv")])
    out, err = capsys.readouterr()
    assert code == 0
    assert "p50 ms" in out and out.count("\nnumpy ") == 4 and "wrote " in out
    assert "bench 1/8: onnxruntime batch=1 concurrency=1" in err  # progress (not a terminal here)
    assert len(json.loads((tmp_path / "o.json").read_text())["rows"]) == 8
    assert (tmp_path / "o.csv").read_text().splitlines()[0].startswith("backend,batch,concurrency")


def test_cli_bench_inputs_shapes_and_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, _ = load_test_data()
    np.save(tmp_path / "d.npy", images[:2])
    assert main(["bench", str(MODEL_PATH), "-i", str(tmp_path / "d.npy"), "-n", "5",
                 "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "images: float32[2,1,8,8] (given)" in out and err == ""
    assert main(["bench", str(MODEL_PATH), "--shape", "images=3x1x8x8", "-n", "5", "--no-progress",
                 "--range", "images=0:16"]) == 0
    assert "images: float32[3,1,8,8] (made up)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, pattern", [
    (["--duration", "0"], "deploykit bench: error: --duration must be a number > 0"),
    (["--batch", "1,x"], "--batch '1,x': expected integers separated by ','"),
    (["--backend", "warp"], "unknown backend 'warp'"),
    (["--shape", "images"], "--shape 'images': expected NAME=1x3x224x224"),
    (["--shape", "images=1x1x9x8"], "deploykit bench: error: --shape images=1x1x9x8 does not fit input "
                                    "'images' float32[N,1,8,8]: dimension 2 must be 8"),
    (["--shape", "images=0x1x8x8"], "error: --shape images=0x1x8x8: every size must be an int >= 1\n"),
    (["--dim", "N=0"], "error: --dim N=0: the size must be an int >= 1\n"),
    (["--dim", "N=4"], "error: --dim N: 'N' is the batch (first) dimension of input 'images', set by the "
                       "batch size (--batch); do not give it with --dim\n"),
    (["--batch", "1,99999999999"], "error: made-up inputs of 23841.9 GiB (images: [99999999999, 1, 8, 8]) "
                                   "are more than deploykit makes up (4 GiB); give smaller --shape, --dim "
                                   "or batch sizes, or real inputs (--input NAME=FILE.npy)\n"),
    (["-c", "1,100000"], "error: --concurrency=100000: each level starts that many threads; give at most "
                         "256\n"),
    (["--duration", "1e308"], "error: --duration=1e+308 s per row is more than a day (86400 s)"),
    (["--range", "images=1:0"], "error: --range images=1:0 is empty; give LOW:HIGH with HIGH > LOW (high "
                                "exclusive), or one number\n"),
    (["--range", "images=inf:2"], "error: --range images=inf:2: LOW and HIGH must be finite numbers\n"),
    (["--range", "images=nan"], "error: --range images=nan: the value must be a finite number\n"),
    (["--range", "nope=1"], "error: --range names 'nope', which the model has no input of; its inputs: "
                            "images\n"),
    (["-n", "0"], "error: --iterations must be an int >= 1 (or leave --iterations out), got 0\n"),
    (["--threads", "0"], "error: --threads must be an int >= 1 (or leave --threads out: the CPUs this "
                         "process may use), got 0\n"),
    (["--bogus"], "deploykit bench: error: unrecognized arguments: --bogus (see deploykit bench --help)"),
    (["--range", "images=a:b"], "--range: 'a' is not a number"),
    (["-c", "0"], "--concurrency must be an int >= 1"),
    (["--dim", "nope=4"], "--dim names 'nope', which no input shape of the model has"),
    (["--shape", "nope=1x2"], "--shape names 'nope', which the model has no input of"),
    (["--dim", "N=2", "--dim", "N=3"], "--dim 'N=3': 'N' is given twice"),
    (["--json", "/no/such/folder/r.json"], "--json /no/such/folder/r.json: folder '/no/such/folder' "
                                           "does not exist"),
    (["--csv", "."], "--csv .: is a folder"),
    (["--duration", "1", "-n", "5"], "give --duration or --iterations, not both (got --duration=1.0, "
                                     "--iterations=5)"),
])
def test_cli_bench_bad_arguments(argv: list[str], pattern: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["bench", str(MODEL_PATH), "--no-progress", *argv])
    except SystemExit as e:  # argparse's own errors
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and pattern in err


def test_output_paths_are_checked_before_measuring(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A --json path that cannot be written fails at once, not after the whole run."""
    assert main(["bench", str(MODEL_PATH), "-b", "onnxruntime,numpy", "--json",
                 str(tmp_path / "missing" / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "bench 1/" not in err  # no row was started


def test_hints_name_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The library's hint says shapes=/inputs=; the command line's says --shape/--input."""
    onnx.save(models.reshape_to(), tmp_path / "reshape.onnx")
    assert main(["bench", str(tmp_path / "reshape.onnx"), "-b", "onnxruntime", "--range", "shape=5:6",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deploykit bench: error: onnxruntime rejects the inputs at batch 1")
    assert "(--shape, --dim, --range) or real inputs (--input)" in err
    assert "shapes=" not in err and "inputs=" not in err


def test_warnings_show_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    threads = usable_cpus() + 1  # more than this process may use: a warning, not an error
    assert main(["bench", str(MODEL_PATH), "-b", "onnxruntime", "-n", "5", "--threads", str(threads),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"deploykit bench: warning: --threads={threads} is more than the {usable_cpus()} CPUs" in err
    assert "Warning:" not in err  # not Python's file:line: Category: form
