"""``deploykit serve --ray``: the CLI starts a local Ray, serves the model through Ray Serve's proxy on
the port asked, answers KServe v2 over the loopback, and stops cleanly on Ctrl-C; Ray's options
without --ray, and options Ray cannot take, are refused before Ray starts. ~40 s."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import deploykit as dk
from deploykit.cli import main
from deploykit.demo import MODEL_PATH, load_test_data
from tests._support.serving import call

pytest.importorskip("ray.serve", reason="the ray extra (ray[serve]) is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_ray_answers_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray, not one around
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen([sys.executable, "-m", "deploykit", "serve", str(MODEL_PATH), "--ray",
                                "--port", str(port), "--replicas", "2"], stdout=log, stderr=subprocess.STDOUT,
                               env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while "deploykit serve --ray: http://" not in (text := (tmp_path / "serve.log").read_text()):
            assert process.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.5)
        images = load_test_data()[0][:3]
        body = {"inputs": [{"name": "images", "shape": [3, 1, 8, 8], "datatype": "FP32",
                            "data": images.ravel().tolist()}]}
        status, _, raw = call(f"http://127.0.0.1:{port}/v2/models/digits/infer", json.dumps(body).encode(),
                              {"Content-Type": "application/json"})
        assert status == 200, raw
        want = dk.load(MODEL_PATH).run({"images": images})["label"]
        np.testing.assert_array_equal(json.loads(raw)["outputs"][1]["data"], want)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    assert code == 0, (tmp_path / "serve.log").read_text()


@pytest.mark.slow
def test_a_port_in_use_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(MODEL_PATH), "--ray", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"Ray Serve's HTTP proxy did not start on --host 127.0.0.1 --port {port}" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--replicas", "2"], "--replicas: only with --ray"),
    (["--num-cpus", "2"], "--num-cpus: only with --ray"),
    (["--ray", "--port", "0"], "--port 0 does not work with --ray"),
    (["--ray", "--replicas", "two"], "--replicas must be a number or 'auto'"),
    (["--ray", "--replicas", "0"], "num_replicas (or 'auto') must be an int >= 1"),
    (["--ray", "--num-cpus", "0"], "--num-cpus must be a number > 0"),
    (["--ray", "--replicas", "auto", "--min-replicas", "3", "--max-replicas", "1"],
     "max_replicas (1) must be greater than or equal to min_replicas (3)"),
    (["--ray", "--repository-api"], "a load or an unload would reach one replica of many"),
    (["--ray", "--replicas", "3", "--min-replicas", "2"],
     "--min-replicas/--max-replicas: only with --replicas auto"),
    (["--ray", "--num-cpus", "nan"], "--num-cpus must be a number > 0"),
    (["--ray", "--replicas", "\u00b2"], "--replicas must be a number or 'auto'"),
])
def test_ray_options_are_checked_before_anything_starts(argv: list[str], message: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(MODEL_PATH), *argv]) == 2
    assert message in capsys.readouterr().err
