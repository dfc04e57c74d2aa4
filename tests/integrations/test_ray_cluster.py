"""Placement across nodes: a Ray cluster of two simulated nodes of 1 CPU each
(``ray.cluster_utils.Cluster``: two raylets on this machine). Batch inference with two 1-CPU actors
and Ray Serve with two 1-CPU replicas must each use both nodes (Ray's state API says where each ran),
and every answer equals ``Engine.run``. ~60 s (two nodes' start-up)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import deploykit as dk
from deploykit.demo import MODEL_PATH, load_test_data
from tests._support.serving import call

ray = pytest.importorskip("ray", reason="the ray extra (ray[data,serve]) is not installed")
serve = pytest.importorskip("ray.serve", reason="the ray extra (ray[data,serve]) is not installed")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    # the head runs the state API (the dashboard's), which says on which node each actor ran
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True,
                                                            "dashboard_port": 0})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def nodes_of(class_name: str) -> set[str]:
    """The nodes actors of ``class_name`` ran on (alive or finished)."""
    from ray.util.state import list_actors

    return {a.node_id for a in list_actors(detail=True, limit=10_000) if class_name in a.class_name}


def test_batch_inference_runs_on_both_nodes(two_nodes: Any) -> None:
    assert len(ray.nodes()) == 2
    images = load_test_data()[0]
    dataset = ray.data.from_items([{"image": image, "id": k} for k, image in enumerate(images)])
    rows = sorted(dk.ray.predict(dataset, MODEL_PATH, batch_size=32, concurrency=2).take_all(),
                  key=lambda r: r["id"])
    want = dk.load(MODEL_PATH).run({"images": images})
    assert len(rows) == len(images)
    np.testing.assert_array_equal([r["label"] for r in rows], want["label"])
    np.testing.assert_array_equal(np.stack([r["probabilities"] for r in rows]), want["probabilities"])
    assert len(nodes_of("MapBatches(Predictor)")) == 2


def test_serve_replicas_run_on_both_nodes(two_nodes: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(dk.ray.deployment(MODEL_PATH, num_replicas=2), name="digits", route_prefix="/")
        images = load_test_data()[0][:8]
        want = dk.load(MODEL_PATH).run({"images": images})["label"]
        for k in range(8):  # Ray's router spreads them; each answer is its own row's
            body = {"inputs": [{"name": "images", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                "data": images[k].ravel().tolist()}]}
            status, _, raw = call(f"http://127.0.0.1:{port}/v2/models/digits/infer",
                                  json.dumps(body).encode(), {"Content-Type": "application/json"})
            assert status == 200 and json.loads(raw)["outputs"][1]["data"] == [want[k]], raw
        assert len(nodes_of("ServeReplica:digits")) == 2
    finally:
        serve.shutdown()
