"""A model config's preprocessing pipeline: clients send uint8 pixels, the model gets exactly the tensor
``dk.preprocess.Pipeline`` makes in-process — over KServe v2 (JSON and binary), TF Serving, with
batching, and bad pixels or a pipeline that does not fit the model refused with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

pytest.importorskip("prometheus_client", reason="the serve extra (prometheus-client) is not installed")
pytest.importorskip("httptools", reason="the serve extra (httptools) is not installed")

import deploykit as dk
from deploykit.serve import Server
from deploykit.serve.repository import RepositoryError, scan
from tests import models
from tests._support.serving import call
from tests.concurrency import run_in_threads

PIPELINE = {"op": "letterbox", "size": [16, 24], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
JSON = {"Content-Type": "application/json"}


def repository(root: Path, config: dict[str, Any], model: onnx.ModelProto | None = None) -> Path:
    folder = root / "img" / "1"
    folder.mkdir(parents=True)
    onnx.save(model or models.image_identity(), str(folder / "model.onnx"))
    (root / "img" / "config.json").write_text(json.dumps(config))
    return root


def v2_uint8(images: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "shape": list(images.shape), "datatype": "UINT8",
                                   "data": images.ravel().tolist()}]}).encode()


def pixels(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_pixels_in_tensor_out_exactly_as_in_process(tmp_path: Path) -> None:
    pipeline = dk.preprocess.Pipeline.letterbox((16, 24), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    repo = repository(tmp_path, {"preprocess": {"pipeline": PIPELINE}})
    image = pixels(0, (37, 50, 3))
    two = pixels(1, (2, 20, 30, 3))
    with Server(repo, port=0) as server:
        url = f"{server.url}/v2/models/img"
        status, _, raw = call(url)
        meta = json.loads(raw)
        assert status == 200
        assert meta["inputs"] == [{"name": "x", "datatype": "UINT8", "shape": [-1, -1, -1, -1]}]
        # one image [H, W, C], JSON
        status, _, raw = call(f"{url}/infer", v2_uint8(image), JSON)
        assert status == 200, raw
        out = json.loads(raw)["outputs"][0]
        got = np.asarray(out["data"], np.float32).reshape(out["shape"])
        np.testing.assert_array_equal(got, pipeline(image))
        # two images [N, H, W, C], binary in and out (as tritonclient sends)
        header = json.dumps({"inputs": [{"name": "x", "shape": list(two.shape), "datatype": "UINT8",
                                         "parameters": {"binary_data_size": two.nbytes}}],
                             "parameters": {"binary_data_output": True}}).encode()
        status, headers, raw = call(f"{url}/infer", header + two.tobytes(),
                                    {"Inference-Header-Content-Length": str(len(header))})
        assert status == 200, raw
        size = int(headers["inference-header-content-length"])
        got = np.frombuffer(raw[size:], np.float32).reshape(2, 3, 16, 24)
        np.testing.assert_array_equal(got, pipeline.batch(list(two)))
        # TF Serving's row format: JSON integers (int64) that fit a byte are pixels
        status, _, raw = call(f"{server.url}/v1/models/img:predict",
                              json.dumps({"instances": [image.tolist()]}).encode(), JSON)
        assert status == 200, raw
        np.testing.assert_array_equal(np.asarray(json.loads(raw)["predictions"], np.float32),
                                      pipeline(image))


def test_preprocessed_requests_batch_and_each_gets_its_own_answer(tmp_path: Path) -> None:
    pipeline = dk.preprocess.Pipeline.letterbox((16, 24), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    repo = repository(tmp_path, {"preprocess": {"input": "x", "pipeline": PIPELINE},
                                 "batching": {"max_batch_size": 8, "max_queue_delay_ms": 2}})
    sent = [0] * 8  # per client: images sent so far (only its thread counts)
    with Server(repo, port=0) as server:
        def client(k: int) -> str | None:
            i = sent[k]
            sent[k] += 1
            image = pixels(100 * k + i, (10 + k, 12 + i, 3))  # sizes differ per client and request
            status, _, raw = call(f"{server.url}/v2/models/img/infer", v2_uint8(image), JSON)
            if status != 200:
                return f"{k}/{i}: {status} {raw[:200]!r}"
            out = json.loads(raw)["outputs"][0]
            got = np.asarray(out["data"], np.float32).reshape(out["shape"])
            return None if np.array_equal(got, pipeline(image)) else f"{k}/{i}: a different tensor"

        results = run_in_threads(client, 8, 6)
    problems = [p for per_client in results for p in per_client if p]
    assert not problems, problems[:3]


@pytest.mark.parametrize("images, dtype, why", [
    (np.zeros((4, 4, 3), np.float32), "FP32", "uint8 pixels"),
    (np.zeros((1, 1, 4, 4, 3), np.uint8), "UINT8", "takes images"),
    (np.zeros((4,), np.uint8), "UINT8", "takes images"),
    (np.full((4, 4, 3), 300, np.int32), "INT32", "outside 0..255"),
])
def test_bad_pixels_are_a_400_naming_the_input(tmp_path: Path, images: np.ndarray, dtype: str,
                                               why: str) -> None:
    repo = repository(tmp_path, {"preprocess": {"pipeline": PIPELINE}})
    body = json.dumps({"inputs": [{"name": "x", "shape": list(images.shape), "datatype": dtype,
                                   "data": images.ravel().tolist()}]}).encode()
    with Server(repo, port=0) as server:
        status, _, raw = call(f"{server.url}/v2/models/img/infer", body, JSON)
        assert status == 400 and "'x'" in json.loads(raw)["error"] and why in json.loads(raw)["error"], raw
        ok = v2_uint8(pixels(0, (8, 8, 3)))
        assert call(f"{server.url}/v2/models/img/infer", ok, JSON)[0] == 200  # still serving


def test_a_pipeline_that_does_not_fit_the_model_keeps_that_version_out_saying_why(tmp_path: Path) -> None:
    repo = repository(tmp_path, {"preprocess": {"pipeline": PIPELINE}},
                      model=models.image_identity(32, 32))  # the pipeline makes 16 x 24
    with Server(repo, port=0, repository_api=True) as server:
        status, _, raw = call(f"{server.url}/v2/repository/index", b"{}", JSON, method="POST")
        assert status == 200, raw
        (row,) = json.loads(raw)
        assert row["state"] == "UNAVAILABLE" and "dimension 2 is 16, the input's is 32" in row["reason"], row


@pytest.mark.parametrize("preprocess, why", [
    ({"pipeline": {**PIPELINE, "sharpen": True}}, "unknown preprocessing setting"),
    ({"pipeline": {"op": "blur"}}, "op must be one of"),
    ({}, "preprocess needs pipeline"),
    ({"pipeline": PIPELINE, "inputs": "x"}, "unknown key"),
    ({"pipeline": PIPELINE, "input": 3}, "preprocess.input must be"),
])
def test_a_bad_preprocess_config_is_refused_naming_the_field(tmp_path: Path, preprocess: dict[str, Any],
                                                             why: str) -> None:
    repo = repository(tmp_path, {"preprocess": preprocess})
    with pytest.raises(RepositoryError, match=why):
        scan(repo)
