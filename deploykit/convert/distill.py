"""``dk.distill``: a smaller PyTorch student trained on a teacher's outputs (soft targets), exported
with ``dk.export`` and gated against the teacher like every other candidate.

The teacher is any ONNX model deploykit loads (so a model from any framework that exported to ONNX
can teach); ``target`` names the teacher output the student learns (default: its first float output).
When that output holds probabilities (non-negative, rows summing to 1) the student's outputs are
logits trained with the soft-target cross-entropy at ``temperature``; otherwise they are regressed
on the teacher's values (mean squared error). ``data`` is split: ``holdout`` of it never trains and
is what the gates check on. The student's ONNX file has the teacher's input name and the target
output's name, so it replaces the teacher without changing the caller. Needs ``deploykit[torch]``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..arguments import check_number
from ..errors import InvalidArgument, require
from .export import export
from .gates import Gates, engine_for, judge, model_path, output_path, samples_for
from .report import QuantizeReport
from .torch_export import is_torch_module


def distill(teacher: str | Path, student: Any, data: Any, *, output: str | Path, target: str | None = None,
            epochs: int = 30, batch_size: int = 64, learning_rate: float = 3e-3, temperature: float = 2.0,
            holdout: float = 0.2, accuracy: float = 0.0,
            metric: Callable[[dict[str, np.ndarray]], float] | None = None, max_drop: float = 0.02,
            min_speedup: float = 1.0, threads: int = 1, seed: int = 0) -> QuantizeReport:
    """Train ``student`` on ``teacher``'s ``target`` output over ``data`` (an array of inputs for a
    one-input teacher), export it, and keep it only within the gates (checked on the held-out part;
    ``metric`` receives the student's / teacher's outputs there, dict name -> array; for a
    probabilities target it defaults to the share of samples where the student's top class is the
    teacher's, which may fall at most ``max_drop`` below 1)."""
    source = model_path(teacher)
    destination = output_path(output, source)
    gates = Gates(accuracy, metric, max_drop, min_speedup, threads)
    if not is_torch_module(student):
        raise InvalidArgument(f"student must be a torch.nn.Module, got {type(student).__name__}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        check_number(value, name, minimum=1, integer=True)
    check_number(learning_rate, "learning_rate", above=0)
    check_number(temperature, "temperature", above=0)
    check_number(holdout, "holdout", above=0)
    if holdout >= 1:
        raise InvalidArgument(f"holdout is the share of data kept for checking, below 1; got {holdout!r}")
    # a torch student implies torch: this names the need if it is not one
    torch = require("torch", "distill needs torch: pip install 'deploykit[torch]'")
    engine = engine_for(source, threads, "the teacher")
    if len(engine.inputs) != 1:
        raise InvalidArgument(f"distill takes a one-input teacher; this one has {len(engine.inputs)} inputs")
    input_name = engine.inputs[0].name
    if not isinstance(data, np.ndarray) or data.ndim < 2 or len(data) < 2:
        raise InvalidArgument("data must be an array of the teacher's inputs, the first axis counting them "
                              f"(at least 2), got {type(data).__name__}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    cut = max(1, round(len(data) * holdout))
    checking, training = data[order[:cut]], data[order[cut:]]
    if not len(training):
        raise InvalidArgument(f"data: {len(data)} samples leave none to train on with holdout={holdout:g}")
    outputs = engine.run({input_name: training})
    floats = [name for name, value in outputs.items() if value.dtype.kind == "f"]
    target = target if target is not None else (floats[0] if floats else None)
    if target not in floats:
        raise InvalidArgument(f"target: the teacher has no float output {target!r}; its float outputs: "
                              f"{', '.join(floats) or '(none)'}")
    soft = outputs[target].astype(np.float32)
    probabilities = bool(soft.ndim >= 2 and (soft >= 0).all() and np.allclose(soft.sum(-1), 1, atol=1e-3))
    samples = samples_for(engine, {input_name: checking}, "data", "distill")
    if metric is None and probabilities:  # a classifier: the student must pick what the teacher picks
        picks = engine.run({input_name: checking})[target].argmax(-1)
        metric = lambda out: float((out[target].argmax(-1) == picks).mean())  # noqa: E731
        gates = Gates(accuracy, metric, max_drop, min_speedup, threads)
    _train(torch, student, training.astype(np.float32), soft, probabilities, epochs, batch_size,
           learning_rate, temperature, seed)
    notes = [f"trained on {len(training)} samples, {epochs} epochs, "
             + (f"soft targets of {target!r} at temperature {temperature:g}" if probabilities
                else f"mean squared error on {target!r}"),
             f"checked on {len(checking)} held-out samples"
             + (" (metric: the teacher's top class picked too)" if probabilities else "")]
    work = Path(tempfile.mkdtemp(prefix="deploykit-distill-"))
    try:
        student_path = work / "student.onnx"
        head = _probabilities(torch, student) if probabilities else student
        export(head, checking[: min(len(checking), 8)].astype(np.float32), student_path,
               input_names=[input_name])
        _rename_output(student_path, target)
        teacher_view = _only_output(source, target, work)
        compared = engine_for(teacher_view, threads, "the teacher")
        try:
            rows, chosen, path = judge(teacher_view, compared, {"student": student_path}, samples, gates,
                                       destination)
        finally:
            compared.close()
    finally:
        engine.close()
        shutil.rmtree(work, ignore_errors=True)
    if path != destination:
        path = source
    return QuantizeReport(str(source), chosen.name, path, rows, len(samples), threads, notes, step="distill")


def _train(torch: Any, student: Any, inputs: np.ndarray, soft: np.ndarray, probabilities: bool,
           epochs: int, batch_size: int, learning_rate: float, temperature: float, seed: int) -> None:
    torch.manual_seed(seed)
    student.train()
    optimizer = torch.optim.Adam(student.parameters(), lr=learning_rate)
    x, y = torch.from_numpy(inputs), torch.from_numpy(soft)
    if probabilities:  # the teacher's probabilities softened: p^(1/T), renormalised
        y = torch.softmax(torch.log(y.clamp_min(1e-12)) / temperature, dim=-1)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            optimizer.zero_grad()
            out = student(x[batch])
            if probabilities:
                loss = -(y[batch] * torch.log_softmax(out / temperature, dim=-1)).sum(-1).mean()
            else:
                loss = torch.nn.functional.mse_loss(out, y[batch])
            loss.backward()
            optimizer.step()
    student.eval()


def _probabilities(torch: Any, student: Any) -> Any:
    """The student followed by a softmax: its file gives probabilities, as the teacher's output does."""

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.student = student

        def forward(self, x: Any) -> Any:
            return torch.softmax(self.student(x), dim=-1)

    return Head()


def _rename_output(path: Path, name: str) -> None:
    import onnx

    model = onnx.load(str(path))
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
    model.graph.output[0].name = name
    onnx.save(model, str(path))


def _only_output(source: Path, name: str, work: Path) -> Path:
    """The teacher with only the ``target`` output (so that both sides are compared on it alone)."""
    import onnx

    model = onnx.load(str(source))
    keep = [o for o in model.graph.output if o.name == name]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    path = work / "teacher.onnx"
    onnx.save(model, str(path))
    return path


__all__ = ["distill"]
