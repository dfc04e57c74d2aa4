"""The backend conformance suite: ``check_backend(name)`` drives one registered backend through the
contract every backend shares, so a new backend — built in or registered by a third party — is
tested the same way as the others, for free.

    from deploykit.conformance import check_backend
    check_backend("onnxruntime")                       # a small ONNX model built here
    check_backend("tflite", model=tflite_bytes, expect=lambda f: {"z": f["x"] + f["y"]})

What it checks (each failure is an ``AssertionError`` naming the check): the class declarations
(name, formats, options against ``__init__``'s signature, priority, device kind, distributions);
loading through ``dk.load``; the specs; a run against the expected outputs; every input error
(missing/unknown names, a bare array for several inputs, rank, a fixed dimension, a lossy dtype,
``None``) as ``InputMismatch``; output selection; 8 threads at once; a plan naming it; close (then
``EngineClosed``, and a second close is harmless); repr and HTML repr. A backend whose runtime is
not installed raises ``BackendUnavailable`` (a test skips on it, with the reason).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np

from . import backends as registry
from .engine import Engine
from .errors import EngineClosed, InputMismatch, InvalidArgument
from .loading import load
from .model import ModelLike, open_model
from .selection import make_plan

#: ``expect(feeds) -> {output name: expected array}``
Expect = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


def add_mul_model() -> bytes:
    """The suite's default model: ``sum = x + y`` and ``prod = x * y`` on float32 ``[N, 3]``."""
    from onnx import TensorProto, helper

    def value(name: str) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3])

    graph = helper.make_graph([helper.make_node("Add", ["x", "y"], ["sum"]),
                               helper.make_node("Mul", ["x", "y"], ["prod"])], "add_mul",
                              [value("x"), value("y")], [value("sum"), value("prod")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="deploykit.conformance")
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _add_mul(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"sum": feeds["x"] + feeds["y"], "prod": feeds["x"] * feeds["y"]}


def check_backend(name: str, model: ModelLike | None = None, expect: Expect | None = None, *,
                  rtol: float = 1e-5, atol: float = 1e-6, **options: Any) -> list[str]:
    """Run the suite on backend ``name`` (options go to every load); return the checks passed.

    ``model`` defaults to :func:`add_mul_model` (for a backend that loads ONNX); give one of its
    format otherwise, with ``expect`` computing the right outputs from the feeds (without it, the
    outputs are checked for shape, dtype and agreement between threads only). The model's inputs
    must be float32 with a dynamic first dimension and its other dimensions fixed."""
    cls = registry.backend_class(name)
    passed = [_declarations(cls)]
    if model is None:
        if "onnx" not in cls.formats:
            raise InvalidArgument(f"backend {name!r} loads {'/'.join(cls.formats)}: give check_backend a "
                                  "model of that format (and expect=)")
        model, expect = add_mul_model(), _add_mul
    cls.runtime_version()  # BackendUnavailable: not installed here
    engine = load(model, backend=name, **options)
    try:
        feeds = _feeds(engine, batch=2)
        for check in (_specs, _run, _input_errors, _outputs, _threads, _plan, _descriptions):
            passed.append(check(engine, feeds, expect, rtol, atol, model))
    finally:
        engine.close()
    passed.append(_closed(engine, feeds))
    return passed


# -- the checks -----------------------------------------------------------------------------------
def _declarations(cls: type[registry.Backend]) -> str:
    where = f"{cls.__module__}.{cls.__qualname__}"
    assert registry.canonical_name(cls.name) == cls.name, f"{where}.name is not its registry name"
    assert cls.formats and all(isinstance(f, str) for f in cls.formats), f"{where}.formats is empty"
    assert isinstance(cls.extra, str), f"{where}.extra is not a str"
    assert isinstance(cls.priority, int), f"{where}.priority is not an int"
    assert cls.device_kind in (registry.CPU, registry.NVIDIA_GPU), f"{where}.device_kind is unknown"
    assert all(isinstance(d, str) for d in cls.distributions), f"{where}.distributions are not names"
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    declared = set(cls.option_names)
    named = {k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY} - {"threads"}
    assert "threads" in params or takes_any, f"{where}.__init__ takes no threads="
    assert takes_any or declared <= set(params), \
        f"{where}.option_names {sorted(declared - set(params))} are not parameters of __init__"
    assert named <= declared, f"{where}.__init__ takes {sorted(named - declared)} not in option_names"
    for hook in ("strict_options",):
        extra = set(getattr(cls, hook)()) - declared
        assert not extra, f"{where}.{hook}() gives {sorted(extra)}, not in option_names"
    return "declarations"


def _feeds(engine: Engine, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    feeds = {}
    for spec in engine.inputs:
        assert spec.shape is not None and spec.dtype == np.float32, \
            f"the conformance model's inputs must be float32 with a known rank, got {spec}"
        shape = tuple(batch if i == 0 and not isinstance(d, int) else d for i, d in enumerate(spec.shape))
        assert all(isinstance(d, int) for d in shape), f"only the first dimension may be dynamic: {spec}"
        sizes = [int(d) for d in shape if isinstance(d, int)]
        feeds[spec.name] = rng.standard_normal(sizes).astype(np.float32)
    return feeds


def _specs(engine: Engine, feeds: Any, expect: Expect | None, rtol: float, atol: float, model: Any) -> str:
    assert engine.inputs and engine.outputs, "the engine reports no inputs or no outputs"
    names = [s.name for s in (*engine.inputs, *engine.outputs)]
    assert len(set(names)) == len(names), f"tensor names repeat: {names}"
    return "specs"


def _run(engine: Engine, feeds: dict[str, np.ndarray], expect: Expect | None, rtol: float, atol: float,
         model: Any) -> str:
    out = engine.run(feeds)
    assert list(out) == [s.name for s in engine.outputs], f"outputs {list(out)} not in model order"
    for spec in engine.outputs:
        assert isinstance(out[spec.name], np.ndarray), f"output {spec.name!r} is not an ndarray"
        got = out[spec.name].dtype
        assert got == spec.dtype, f"output {spec.name!r} dtype {got} != {spec}"
    if expect is not None:
        for k, want in expect(feeds).items():
            np.testing.assert_allclose(out[k], want, rtol=rtol, atol=atol, err_msg=f"output {k!r}")
    if len(engine.inputs) == 1:  # a bare array is the one input
        bare = engine.run(next(iter(feeds.values())))
        for k in out:
            np.testing.assert_array_equal(bare[k], out[k])
    return "run"


def _input_errors(engine: Engine, feeds: dict[str, np.ndarray], expect: Expect | None, rtol: float,
                  atol: float, model: Any) -> str:
    first = engine.inputs[0]
    bad: list[tuple[str, Any]] = [
        ("missing input", {k: v for k, v in feeds.items() if k != first.name}),
        ("unknown input", {**feeds, "no such input": feeds[first.name]}),
        ("None", None),
        ("rank", {**feeds, first.name: feeds[first.name][None]}),
        ("lossy dtype (complex for float32)", {**feeds, first.name: feeds[first.name].astype(np.complex64)}),
    ]
    assert first.shape is not None
    fixed = [i for i, d in enumerate(first.shape) if isinstance(d, int)]
    if fixed:
        shape = list(feeds[first.name].shape)
        shape[fixed[0]] += 1
        bad.append(("fixed dimension", {**feeds, first.name: np.zeros(shape, np.float32)}))
    if len(engine.inputs) > 1:
        bad.append(("bare array for several inputs", feeds[first.name]))
    for what, value in bad:
        _refused(partial(engine.run, value), f"input error: {what}")
    return "input errors"


def _outputs(engine: Engine, feeds: dict[str, np.ndarray], expect: Expect | None, rtol: float,
             atol: float, model: Any) -> str:
    every = engine.run(feeds)
    last = engine.outputs[-1].name
    one = engine.run(feeds, outputs=last)
    assert list(one) == [last], f"outputs={last!r} gave {list(one)}"
    np.testing.assert_array_equal(one[last], every[last])
    wanted = [s.name for s in reversed(engine.outputs)]
    some = engine.run(feeds, outputs=wanted)
    assert list(some) == wanted, f"outputs={wanted} gave {list(some)}"
    for bad in (["no such output"], []):
        _refused(partial(engine.run, feeds, outputs=bad), f"outputs={bad!r}")
    return "output selection"


def _refused(call: Callable[[], object], what: str) -> None:
    """``call`` must raise ``InputMismatch``; anything else fails the check naming ``what``."""
    try:
        call()
    except InputMismatch:
        return
    raise AssertionError(f"{what} not refused with InputMismatch")


def _threads(engine: Engine, feeds: dict[str, np.ndarray], expect: Expect | None, rtol: float,
             atol: float, model: Any) -> str:
    n, calls = 8, 10
    inputs = [{k: v + np.float32(i) for k, v in feeds.items()} for i in range(n)]
    alone = [engine.run(f) for f in inputs]
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(calls):
                got = engine.run(inputs[i])
                for k, v in alone[i].items():
                    np.testing.assert_array_equal(got[k], v, err_msg=f"thread {i}, output {k!r}")
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise AssertionError(f"{n} threads calling run at once: {errors[0]}") from errors[0]
    return "thread safety"


def _plan(engine: Engine, feeds: Any, expect: Expect | None, rtol: float, atol: float, model: Any) -> str:
    assert engine.plan is not None and engine.plan.chosen is not None, "the engine carries no plan"
    assert engine.plan.chosen.backend == engine.backend, "the plan's choice is not the backend that runs"
    auto = make_plan(open_model(model, check=False))
    known = {c.backend for c in (*auto.candidates, *auto.rejected)}
    assert engine.backend in known, f"backend {engine.backend!r} is missing from the automatic plan"
    return "plan"


def _descriptions(engine: Engine, feeds: Any, expect: Expect | None, rtol: float, atol: float,
                  model: Any) -> str:
    text = repr(engine)
    assert engine.backend in text, "repr(engine) does not name the backend"
    assert engine.backend in engine._repr_html_(), "the HTML repr does not name the backend"
    info = engine.info
    assert info["backend"] == engine.backend and "fallback" in info, "engine.info lacks backend/fallback"
    assert isinstance(engine.metadata, dict), "engine.metadata is not a dict"
    return "descriptions"


def _closed(engine: Engine, feeds: dict[str, np.ndarray]) -> str:
    assert engine.closed, "the engine is not closed after close()"
    engine.close()  # a second close is harmless
    try:
        engine.run(feeds)
    except EngineClosed:
        return "close"
    raise AssertionError("run after close() did not raise EngineClosed")


__all__ = ["add_mul_model", "check_backend"]
