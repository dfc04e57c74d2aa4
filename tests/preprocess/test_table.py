"""The op table (``preprocess.OPS``) is what the functions, ``batch`` and ``Pipeline`` read: every
op in it works through all three, alike, and each entry agrees with its function."""

from __future__ import annotations

import inspect
from dataclasses import fields

import numpy as np
import pytest

from deploykit import preprocess as pp
from deploykit.preprocess import OPS, Pipeline
from deploykit.preprocess.ops import COMMON_SETTINGS

RNG = np.random.default_rng(8)
IMAGES = [RNG.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in [(40, 60), (33, 21)]]
# settings that work for each op (a test fails here first when an op is added without them)
SETTINGS = {"letterbox": {"size": (24, 32), "pad_value": 7}, "resize": {"size": (20, 16)},
            "resize_crop": {"resize": 24, "crop": (16, 20)}}


def test_the_table_lists_the_public_functions() -> None:
    assert set(OPS) == set(SETTINGS)
    for name, op in OPS.items():
        assert op.name == name and getattr(pp, name) is op.function and op.description


@pytest.mark.parametrize("name", OPS)
def test_each_entry_agrees_with_its_function(name: str) -> None:
    op = OPS[name]
    params = inspect.signature(op.function).parameters
    assert set(op.settings) == set(params) - {"image", "out"}
    assert set(COMMON_SETTINGS) <= set(params)
    assert params["mode"].default == op.mode
    assert op.required == tuple(p for p in op.params if params[p].default is inspect.Parameter.empty)
    assert set(op.params) <= {f.name for f in fields(Pipeline)}, "every op setting is a Pipeline field"


@pytest.mark.parametrize("name", OPS)
def test_function_batch_and_pipeline_agree(name: str) -> None:
    op, settings = OPS[name], SETTINGS[name]
    singles = [op.function(img, **settings) for img in IMAGES]
    tensors = [s[0] if isinstance(s, tuple) else s for s in singles]
    by_name = pp.batch(IMAGES, name, **settings)
    np.testing.assert_array_equal(by_name, np.concatenate(tensors))
    np.testing.assert_array_equal(pp.batch(IMAGES, op.function, threads=2, **settings), by_name)
    spec = Pipeline.from_json(Pipeline(op=name, mode=op.mode, **settings).to_json())
    np.testing.assert_array_equal(spec.batch(IMAGES), by_name)
    for img, single in zip(IMAGES, singles):
        tensor, extra = spec.apply(img)
        np.testing.assert_array_equal(tensor, single[0] if isinstance(single, tuple) else single)
        assert extra == (single[1] if isinstance(single, tuple) else None)
