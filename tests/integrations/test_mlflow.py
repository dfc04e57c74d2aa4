"""deploykit models as an MLflow flavor, on a real MLflow file store: log -> load -> predict through
pyfunc (equal to Engine.run), a bundle logged as it is (verified when it loads), the signature from
the TensorSpecs, and ``mlflow models serve --env-manager local`` queried over HTTP on the loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import deploykit as dk
from deploykit.demo import MODEL_PATH, load_test_data

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) is not installed")
from deploykit.integrations import mlflow as dkm  # noqa: E402


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store in maintenance
    monkeypatch.setenv("DEPLOYKIT_CACHE_DIR", str(tmp_path / "cache"))
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    yield tmp_path
    mlflow.set_tracking_uri(None)


def test_log_load_predict_equals_the_engine(store: Path) -> None:
    images = load_test_data()[0][:16]
    with mlflow.start_run():
        info = dkm.log_model(MODEL_PATH, name="digits", labels=[str(d) for d in range(10)])
    model = mlflow.pyfunc.load_model(info.model_uri)
    want = dk.load(MODEL_PATH).run({"images": images})
    got = model.predict({"images": images})
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    np.testing.assert_array_equal(model.predict(images)["label"], want["label"])  # one array, one input
    engine = dkm.load_model(info.model_uri)
    assert isinstance(engine, dk.Engine) and engine.labels == [str(d) for d in range(10)]
    signature = model.metadata.signature
    assert signature.inputs.input_names() == ["images"]
    assert signature.inputs.inputs[0].shape == (-1, 1, 8, 8)
    assert signature.outputs.input_names() == ["probabilities", "label"]


def test_a_bundle_is_logged_as_it_is_and_verified_when_loaded(store: Path) -> None:
    bundle = dk.pack(MODEL_PATH, store / "b.zip", labels=["x"] * 10, metadata={"name": "digits"})
    dkm.save_model(store / "b.zip", store / "saved")
    assert (store / "saved" / "bundle" / "deploykit.json").is_file()
    assert dkm.load_model(str(store / "saved")).bundle.manifest.meta["name"] == "digits"
    (store / "saved" / "bundle" / "labels.txt").write_text("changed\n")
    with pytest.raises(dk.IntegrityError, match=r"labels\.txt"):
        mlflow.pyfunc.load_model(str(store / "saved"))
    assert bundle.manifest.artifacts == ["model/digits.onnx"]


def test_bad_calls_are_refused(store: Path) -> None:
    (store / "full").mkdir()
    (store / "full" / "x").write_text("")
    with pytest.raises(dk.InvalidArgument, match="exists and is not empty"):
        dkm.save_model(MODEL_PATH, store / "full")
    dk.pack(MODEL_PATH, store / "b")
    with pytest.raises(dk.InvalidArgument, match="belong in the bundle"):
        dkm.save_model(store / "b", store / "saved", labels=["a"])
    (store / "other").mkdir()
    (store / "other" / "MLmodel").write_text("flavors: {}\n")
    with pytest.raises(dk.InvalidArgument, match="no deploykit bundle"):
        dkm.load_model(str(store / "other"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mlflow_models_serve_answers_over_http(store: Path) -> None:
    dkm.save_model(MODEL_PATH, store / "saved")
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "mlflow").is_file() or not (bin_dir / "uvicorn").is_file():
        pytest.skip(f"the mlflow and uvicorn commands are not in {bin_dir}")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    log_path = store / "serve.log"  # a file, not a pipe nobody reads (a full pipe blocks the server)
    with log_path.open("wb") as log:
        server = subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", str(store / "saved"),
                                   "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    images = load_test_data()[0][:3]
    body = json.dumps({"inputs": {"images": images.tolist()}}).encode()
    try:
        deadline, answer = time.monotonic() + 120, None
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                                 headers={"Content-Type": "application/json"})
                answer = json.loads(urllib.request.urlopen(request, timeout=5).read())
            except OSError:
                time.sleep(0.5)
        assert answer is not None, f"no answer in 120 s; the server's log: {log_path.read_text()[-2000:]}"
    finally:
        server.terminate()
        server.wait(timeout=30)
    want = dk.load(MODEL_PATH).run({"images": images})
    assert answer["predictions"]["label"] == want["label"].tolist()
    np.testing.assert_allclose(answer["predictions"]["probabilities"], want["probabilities"], rtol=1e-6)
