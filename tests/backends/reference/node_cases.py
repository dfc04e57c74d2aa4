"""ONNX backend node cases for a few operators, without generating the whole suite.

Importing an ``onnx.backend.test.case.node`` generator module appends its cases to
``_NodeTestCases``; importing only the ones an op family needs yields the same cases
``load_model_tests(kind="node")`` would, in a fraction of its ~10 s.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

import deploykit as dk


def node_cases(modules: tuple[str, ...], prefixes: tuple[str, ...]) -> dict[str, Any]:
    """name -> case for the cases of these generator modules whose names start with a prefix."""
    for name in modules:
        importlib.import_module(f"onnx.backend.test.case.node.{name}")
    from onnx.backend.test.case.node import _NodeTestCases

    return {c.name: c for c in _NodeTestCases if c.name.startswith(prefixes)}


def assert_native_and_conformant(case: Any) -> None:
    """Run ``case`` on the NumPy backend: its operator must not be delegated, and every data
    set must match with the case's own tolerances (the ONNX suite's comparison)."""
    engine = dk.load(case.model, backend="numpy")
    op = case.model.graph.node[0].op_type
    assert not [d for d in engine.info["delegated_ops"] if f"::{op}-" in d], engine.info
    for inputs, expected in case.data_sets:
        feeds = {v.name: a for v, a in zip(case.model.graph.input, inputs)}
        got = list(engine.run(feeds).values())
        assert len(got) == len(expected)
        for g, w in zip(got, expected):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=case.rtol, atol=case.atol)
