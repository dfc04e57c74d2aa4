"""A served version that is a bundle: verified when it loads (a tampered one stays out, saying which
file), its own preprocessing used when the model config names none, labels and version intact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("prometheus_client", reason="the serve extra (prometheus-client) is not installed")
pytest.importorskip("httptools", reason="the serve extra (httptools) is not installed")

import deploykit as dk
from deploykit.serve import Server
from tests import models
from tests._support.serving import call

JSON = {"Content-Type": "application/json"}


def _repository(root: Path) -> tuple[Path, dk.preprocess.Pipeline]:
    onnx.save(models.image_identity(), str(root / "identity.onnx"))
    pipeline = dk.preprocess.Pipeline.letterbox((16, 24), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    (root / "repo" / "img").mkdir(parents=True)
    (root / "repo" / "img" / "config.json").write_text("{}")
    dk.pack(root / "identity.onnx", root / "repo" / "img" / "1", pipeline=pipeline, labels=["a", "b"])
    return root / "repo", pipeline


def test_a_bundle_version_is_served_with_its_own_preprocessing(tmp_path: Path) -> None:
    repo, pipeline = _repository(tmp_path)
    image = np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    body = json.dumps({"inputs": [{"name": "x", "shape": list(image.shape), "datatype": "UINT8",
                                   "data": image.ravel().tolist()}]}).encode()
    with Server(repo, port=0) as server:
        status, _, raw = call(f"{server.url}/v2/models/img/infer", body, JSON)
        assert status == 200, raw
        out = json.loads(raw)["outputs"][0]
        got = np.asarray(out["data"], np.float32).reshape(out["shape"])
        np.testing.assert_array_equal(got, pipeline(image))


def test_a_tampered_bundle_version_stays_out_naming_the_file(tmp_path: Path) -> None:
    repo, _ = _repository(tmp_path)
    (repo / "img" / "1" / "labels.txt").write_text("b\na\n")
    with Server(repo, port=0, repository_api=True) as server:
        status, _, raw = call(f"{server.url}/v2/models/img/ready")
        assert status != 200
        status, _, raw = call(f"{server.url}/v2/repository/index", b"{}", JSON)
        assert status == 200 and b"labels.txt has changed" in raw, raw
