"""How close a converted model's outputs stay to the original's, on the user's samples.

Runtime parity (``deploykit.agreement``) asks for the last bits; a quantized model never gives them.
Here, per output over every sample: float outputs -> the worst (smallest) cosine similarity between
the original's and the candidate's values (a whole-vector measure that ignores a uniform scale
error no more than the eye does); integer and bool outputs (labels, indices) -> the fraction of
elements equal. A user metric (a callable over the outputs of all samples, higher is better) is
reported beside them and gated by its drop from the original's score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

Outputs = Mapping[str, np.ndarray]
Metric = Callable[[dict[str, np.ndarray]], float]


def figures(reference: Sequence[Outputs], candidate: Sequence[Outputs]) -> dict[str, float]:
    """``{"<output> cosine": worst, "<output> equal": fraction}`` over the samples."""
    out: dict[str, float] = {}
    for name in reference[0]:
        refs = [np.asarray(r[name]) for r in reference]
        gots = [np.asarray(c[name]) for c in candidate]
        if refs[0].dtype.kind in "fc":
            out[f"{name} cosine"] = min(_cosine(r, g) for r, g in zip(refs, gots))
        else:
            equal = sum(int(np.count_nonzero(r == g)) for r, g in zip(refs, gots))
            out[f"{name} equal"] = equal / max(1, sum(r.size for r in refs))
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return 0.0
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return 0.0 if not np.array_equal(x, y, equal_nan=True) else 1.0
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0:
        return 1.0 if nx == ny else 0.0
    return float(np.dot(x, y) / (nx * ny))


def stacked(outputs: Sequence[Outputs]) -> dict[str, np.ndarray]:
    """Every sample's outputs joined along the first axis (what a user metric receives)."""
    return {name: np.concatenate([np.atleast_1d(np.asarray(o[name])) for o in outputs])
            for name in outputs[0]}


def check(figs: Mapping[str, float], threshold: float) -> str | None:
    """None when every figure reaches ``threshold``; else which one did not."""
    worst = min(figs.items(), key=lambda kv: kv[1])
    if worst[1] < threshold:
        return f"{worst[0]} {worst[1]:.4f} < {threshold:g}"
    return None


def score(metric: Metric, outputs: Sequence[Outputs]) -> float:
    value = metric(stacked(outputs))
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"the accuracy metric returned {type(value).__name__}, expected a number")
    return float(value)


__all__ = ["Metric", "check", "figures", "score", "stacked"]
