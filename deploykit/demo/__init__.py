"""The demo: a digits classifier this project trains and ships, run on every available backend.

``deploykit demo`` prints what :func:`run_demo` returns; the model and its held-out digits lie
next to this file, made by ``build_digits.py`` from scikit-learn's bundled data set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .. import backends
from .._timing import time_calls
from ..arguments import check_number
from ..errors import InvalidArgument
from ..loading import load

HERE = Path(__file__).resolve().parent
MODEL_PATH = HERE / "digits.onnx"
TEST_DATA_PATH = HERE / "digits_test.npz"


@dataclass
class DemoRow:
    backend: str
    device: str
    accuracy: float
    p50_batch1_ms: float
    p50_batch_all_ms: float
    batch_all: int


@dataclass
class DemoResult:
    model: str
    auto_backend: str
    auto_device: str
    auto_info: dict[str, Any]
    n_test: int
    accuracy: float
    rows: list[DemoRow] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)

    def format(self) -> str:
        lines = [
            f"model     {self.model}",
            f"ran on    {self.auto_backend} ({self.auto_device}) chosen by backend='auto'; "
            + ", ".join(f"{k}={v}" for k, v in self.auto_info.items()
                        if k in ("version", "providers", "threads")),
            f"accuracy  {self.accuracy:.4f} on {self.n_test} held-out digits "
            "(scikit-learn's bundled data set)",
            "",
            f"{'backend':<14}{'device':<8}{'accuracy':>9}{'p50 batch=1':>14}"
            f"{'p50 batch=' + str(self.n_test):>16}",
        ]
        for r in self.rows:
            lines.append(f"{r.backend:<14}{r.device:<8}{r.accuracy:>9.4f}"
                         f"{r.p50_batch1_ms:>11.3f} ms{r.p50_batch_all_ms:>13.3f} ms")
        for name, why in self.unavailable.items():
            lines.append(f"{name:<14}not available: {why}")
        return "\n".join(lines)


def load_test_data() -> tuple[np.ndarray, np.ndarray]:
    """Held-out images as float32 (n, 1, 8, 8) in 0..16, and their int64 labels."""
    with np.load(TEST_DATA_PATH) as data:
        images = data["images"].astype(np.float32)[:, None, :, :]
        labels = data["labels"].astype(np.int64)
    return images, labels


def run_demo(min_seconds: float = 0.3) -> DemoResult:
    """Classify the held-out digits with ``backend='auto'``, then time every available backend."""
    check_number(min_seconds, "min_seconds", above=0)
    if min_seconds > 3600:
        raise InvalidArgument(f"min_seconds must be at most 3600 (an hour per measurement), got "
                              f"{min_seconds!r}")

    images, labels = load_test_data()
    with load(MODEL_PATH) as engine:
        predicted = engine.run({"images": images})["label"]
        result = DemoResult(
            model=MODEL_PATH.name, auto_backend=engine.backend, auto_device=engine.device,
            auto_info=engine.info, n_test=len(labels),
            accuracy=float((predicted == labels).mean()),
        )
    for name, status in backends.available_backends().items():
        if "onnx" not in status.formats:
            continue
        if not status.available:
            result.unavailable[name] = status.reason
            continue
        with load(MODEL_PATH, backend=name) as engine:
            acc = float((engine.run({"images": images})["label"] == labels).mean())
            t1 = time_calls(partial(engine.run, {"images": images[:1]}), min_seconds=min_seconds)
            tn = time_calls(partial(engine.run, {"images": images}), min_seconds=min_seconds)
            result.rows.append(DemoRow(name, engine.device, acc, float(np.median(t1)) * 1e3,
                                       float(np.median(tn)) * 1e3, len(images)))
    return result
