"""Shared fixtures: the real-model zoo, real images, and the small edge-case models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests import zoo


@pytest.fixture(scope="session")
def zoo_path() -> Callable[[str], Path]:
    """Return a function key -> local path of a zoo model; skips (with the reason) if unfetchable."""

    def get(key: str) -> Path:
        try:
            return zoo.path(key)
        except zoo.ZooUnavailable as e:
            pytest.skip(f"zoo model {key} unavailable: {e}")

    return get


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photograph (427x640 RGB uint8) shipped inside the scikit-learn wheel."""
    from sklearn.datasets import load_sample_image

    return np.asarray(load_sample_image("china.jpg"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
