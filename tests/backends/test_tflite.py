"""The LiteRT adapter: parity with the interpreter on the real zoo, signatures, dynamic shapes,
quantized I/O, custom ops, threads and XNNPACK, concurrency, a missing runtime explained, and the
runtime's start-up chatter on stderr silenced (in subprocesses, so that fd 2 is really observed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import deploykit as dk
from deploykit.hardware import usable_cpus
from tests import models, zoo
from tests.backends import tflite_models as tm
from tests.concurrency import run_in_threads

litert = pytest.importorskip("ai_edge_litert.interpreter",
                             reason="tflite extra (ai-edge-litert) not installed")

#: needs a custom op no runtime has; tested on its own below
_CUSTOM = "mp_face_landmark_attention"
RUNNABLE = [k for k in zoo.TFLITE_MODELS if k != _CUSTOM]


def _direct(path: str, feeds: dict[str, np.ndarray], threads: int) -> list[np.ndarray]:
    """The model run the way LiteRT's own docs show: by signature when it has one, else by
    tensor index; resized first when an input is dynamic."""
    interp = litert.Interpreter(model_path=path, num_threads=threads)
    if interp.get_signature_list():
        runner = interp.get_signature_runner()
        out = runner(**feeds)
        return [out[name] for name in runner.get_output_details()]
    details = interp.get_input_details()
    for d, a in zip(details, feeds.values()):
        if tuple(d["shape"]) != a.shape:
            interp.resize_tensor_input(d["index"], a.shape)
    interp.allocate_tensors()
    for d, a in zip(details, feeds.values()):
        interp.set_tensor(d["index"], a)
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


@pytest.mark.parametrize("key", RUNNABLE)
def test_zoo_model_matches_the_interpreter(key: str, zoo_path, photo: np.ndarray) -> None:
    """Same runtime, same threads, same inputs: outputs must be bit-identical."""
    path = zoo_path(key)
    feeds = zoo.sample_feeds(key, photo)
    expected = _direct(str(path), feeds, threads=1)
    with dk.load(path, threads=1) as engine:
        assert engine.backend == "tflite"
        assert [s.name for s in engine.inputs] == list(feeds)
        got = engine.run(feeds)
    assert len(got) == len(expected)
    for spec, value, ref in zip(engine.outputs, got.values(), expected):
        assert value.dtype == ref.dtype == spec.dtype and value.shape == ref.shape
        np.testing.assert_array_equal(value, ref)


def test_custom_op_fails_at_load_naming_it(zoo_path) -> None:
    with pytest.raises(dk.ModelLoadError, match=r"custom op.*Landmarks2TransformMatrix"):
        dk.load(zoo_path(_CUSTOM), backend="tflite")


@pytest.mark.parametrize("dynamic", [False, True])
def test_custom_op_of_a_built_model(dynamic: bool) -> None:
    with pytest.raises(dk.ModelLoadError, match=f"uses custom op\\(s\\) {tm.MISSING_OP} that "
                                                "ai-edge-litert"):
        dk.load(tm.custom_op(dynamic=dynamic), backend="tflite")


def test_signature_names_drive_the_model() -> None:
    engine = dk.load(tm.dynamic_add(signature=True))
    assert [s.name for s in engine.inputs] == ["a", "b"]
    assert [s.name for s in engine.outputs] == ["sum"]
    assert engine.info["signature"] == "serving_default"
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(engine.run({"a": x, "b": x})["sum"], 2 * x)


def test_without_signature_the_stored_tensor_names_are_used() -> None:
    engine = dk.load(tm.dynamic_add())
    assert engine.inputs == [dk.TensorSpec("x", (None, 3), np.dtype("float32")),
                             dk.TensorSpec("y", (None, 3), np.dtype("float32"))]
    assert engine.outputs == [dk.TensorSpec("z", (None, 3), np.dtype("float32"))]
    assert engine.info["signature"] is None and engine.info["signatures"] == []


def test_several_signatures() -> None:
    engine = dk.load(tm.two_signatures())
    assert engine.info["signatures"] == ["add", "mul"]
    assert engine.info["signature"] == "add"  # the first listed, as no serving_default exists
    assert [str(s) for s in engine.inputs] == ["x: float32[2]", "y: float32[2]"]
    out = engine.run({"x": np.array([1, 2], np.float32), "y": np.array([10, 20], np.float32)})
    np.testing.assert_array_equal(out["total"], [11, 22])

    mul = dk.load(tm.two_signatures(), signature="mul")
    assert [str(s) for s in mul.outputs] == ["product: int32[?]"]
    a = np.arange(5, dtype=np.int32)
    np.testing.assert_array_equal(mul.run({"a": a, "b": a + 1})["product"], a * (a + 1))
    with pytest.raises(dk.ModelLoadError, match="no signature 'div'; its signatures: 'add', 'mul'"):
        dk.load(tm.two_signatures(), signature="div")


def _count_allocations(engine: dk.Engine) -> list[int]:
    """Wrap the real AllocateTensors of the engine's one interpreter to count its calls."""
    backend = engine._backend
    slot = backend._idle.get()
    calls: list[int] = []
    real = slot.allocate

    def counting(index: int) -> object:
        calls.append(index)
        return real(index)

    slot.allocate = counting
    backend._idle.put(slot)
    return calls


def test_dynamic_dims_are_resized_and_reallocated_only_on_change() -> None:
    engine = dk.load(tm.dynamic_add(), pool=1)
    calls = _count_allocations(engine)
    for rows in (4, 4, 4, 2, 2, 7, 4):
        x = np.full((rows, 3), rows, np.float32)
        out = engine.run({"x": x, "y": x})["z"]
        assert out.shape == (rows, 3)
        np.testing.assert_array_equal(out, 2 * x)
    assert len(calls) == 4  # 4, 2, 7, 4: one allocation per change of shape


def test_melspectrogram_takes_any_length(zoo_path) -> None:
    path = zoo_path("oww_melspectrogram_tflite")
    engine = dk.load(path, threads=1)
    assert str(engine.inputs[0]) == "input: float32[?,?]"
    audio = zoo.sample_feeds("oww_melspectrogram_tflite")["input"]
    for n in (16000, 1280, 16000, 4000):
        got = engine.run(audio[:, :n])["output"]
        np.testing.assert_array_equal(got, _direct(str(path), {"input": audio[:, :n]}, 1)[0])
    assert engine.info["xnnpack"] is True


def test_quantized_io_is_raw_integers_by_default() -> None:
    engine = dk.load(tm.quantized_double())
    (q_in,) = engine.inputs
    q_out, doubled = engine.outputs
    assert q_in.dtype == np.int8 and q_in.quantization == dk.Quantization((0.5,), (-3,))
    assert q_out.dtype == np.int8 and q_out.quantization == dk.Quantization((0.25,), (5,))
    assert doubled.quantization is None
    assert str(q_in) == "q_in: int8[1,8] (quantized: scale=0.5 zero_point=-3)"
    q = np.array([[-128, -4, -3, 0, 1, 50, 100, 127]], np.int8)
    out = engine.run(q)
    # oracle: real = 0.5 * (q + 3); doubled; requantized with scale 0.25, zero point 5, clipped
    real = 2 * 0.5 * (q.astype(np.float64) + 3)
    np.testing.assert_array_equal(out["doubled"], real.astype(np.float32))
    expected = np.clip(np.round(real / 0.25) + 5, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(out["q_out"], expected)
    with pytest.raises(dk.InputMismatch, match="converting would drop fractions"):
        engine.run(q.astype(np.float32))


def test_dequantize_option_converts_floats_in_and_out() -> None:
    raw = dk.load(tm.quantized_double())
    engine = dk.load(tm.quantized_double(), dequantize=True)
    assert [s.dtype for s in engine.inputs + engine.outputs] == [np.float32] * 3
    assert engine.inputs[0].quantization == raw.inputs[0].quantization
    x = np.array([[-60.0, -0.5, 0.0, 0.26, 1.5, 2.0, 60.0, 1000.0]], np.float32)
    out = engine.run(x)
    # the documented conversion: round(x / scale) + zero point, half away from zero, clipped
    q = np.clip(np.sign(x / 0.5) * np.floor(np.abs(x / 0.5) + 0.5) - 3, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(q, [[-123, -4, -3, -2, 0, 1, 117, 127]])
    ref = raw.run(q)
    np.testing.assert_array_equal(out["doubled"], ref["doubled"])
    np.testing.assert_array_equal(out["q_out"], (ref["q_out"].astype(np.float32) - 5) * 0.25)
    # values on the input grid come back exactly doubled
    grid = (np.arange(-4, 4, dtype=np.float32) * 0.5)[None]
    np.testing.assert_array_equal(engine.run(grid)["q_out"], 2 * grid)


def test_errors_are_the_same_as_on_onnx_backends() -> None:
    """The engine, not the adapter, checks inputs: same exceptions and messages as ONNX Runtime
    on the same model (up to how the batch dimension is written: ``N`` in ONNX, ``?`` here)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime extra not installed")
    tfl = dk.load(tm.dynamic_add())
    ort = dk.load(models.dynamic_add(), backend="onnxruntime")
    x = np.ones((2, 3), np.float32)
    cases = [  # feeds, outputs, what both must do
        ({"x": x}, None, "InputMismatch"),                               # missing input
        ({"x": x, "y": x, "w": x}, None, "InputMismatch"),               # unknown input
        ({"x": x, "y": np.ones((2, 4), np.float32)}, None, "InputMismatch"),  # fixed dimension
        ({"x": x, "y": np.ones(3, np.float32)}, None, "InputMismatch"),  # rank
        ({"x": x, "y": np.array([["a"] * 3] * 2)}, None, "InputMismatch"),  # strings
        ({"x": x, "y": np.ones((2, 3), np.complex64)}, None, "InputMismatch"),  # complex
        ({"x": x, "y": np.ones((2, 3), np.int64)}, None, "ok"),          # int -> float32
        ({"x": x, "y": x}, "nope", "InputMismatch"),                     # unknown output
        (x, None, "InputMismatch"),                                      # bare array, 2 inputs
        ({"x": x, "y": x.astype(np.float64) + 0.5}, "z", "ok"),          # float64 -> float32
        ({"x": x, "y": [[1, 2, 3], [4, 5, 6]]}, None, "ok"),             # list -> float32
    ]
    for feeds, outputs, expected in cases:
        seen = []
        for engine in (tfl, ort):
            try:
                out = engine.run(feeds, outputs)
                seen.append(("ok", {k: v.tolist() for k, v in out.items()}))
            except dk.DeployKitError as e:
                seen.append((type(e).__name__, str(e).replace("[N,", "[?,")))
        assert seen[0][0] == expected, (feeds, seen[0])
        assert seen[0] == seen[1], feeds
    tfl.close()
    with pytest.raises(dk.EngineClosed, match="is closed"):
        tfl.run({"x": x, "y": x})


def test_threads_follow_usable_cpus_and_xnnpack_is_reported(zoo_path, photo: np.ndarray) -> None:
    path = zoo_path("mp_face_detection_short")
    feeds = zoo.sample_feeds("mp_face_detection_short", photo)
    engine = dk.load(path)
    info = engine.info
    assert info["threads"] == usable_cpus() and info["xnnpack"] is True
    assert info["runtime"] == "ai-edge-litert" and info["version"] == dk.available_backends()[
        "tflite"].version
    assert info["pool"] == max(1, usable_cpus() // info["threads"])
    plain = dk.load(path, threads=1, xnnpack=False)
    assert plain.info["xnnpack"] is False and plain.info["threads"] == 1
    assert plain.info["pool"] == usable_cpus()
    # the builtin kernels and XNNPACK sum in different orders; they agree to float32 rounding
    for a, b in zip(engine.run(feeds).values(), plain.run(feeds).values()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"threads must be an int >= 1 .*got 0"):
        dk.load(path, threads=0)
    with pytest.raises(dk.InvalidArgument, match=r"pool must be an int >= 1 \(or None: usable CPUs // "
                                                 r"threads\), got 0"):
        dk.load(path, pool=0)
    with pytest.raises(TypeError, match="backend 'tflite' takes no option\\(s\\) turbo"):
        dk.load(path, backend="tflite", turbo=True)


@pytest.mark.parametrize("pool", [1, 3])
def test_eight_threads_get_identical_results(pool: int, zoo_path) -> None:
    """Eight threads share one engine, each with its own batch size (so interpreters are
    resized under contention); every result equals the single-threaded one."""
    engine = dk.load(zoo_path("oww_embedding_tflite"), threads=1, pool=pool)
    rng = np.random.default_rng(7)
    batches = [rng.uniform(-2, 2, (1 + i % 3, 76, 32, 1)).astype(np.float32) for i in range(8)]
    expected = [engine.run(b)["conv2d_19"] for b in batches]
    results = run_in_threads(lambda i: engine.run(batches[i])["conv2d_19"], threads=8, calls=15)
    for i, per_thread in enumerate(results):
        assert len(per_thread) == 15
        for got in per_thread:
            np.testing.assert_array_equal(got, expected[i])
    assert 1 <= engine.info["interpreters"] <= pool


def test_embedded_probe_model_is_what_the_builder_writes() -> None:
    from deploykit.backends import tflite

    interp = litert.Interpreter(model_content=tflite._PROBE)
    (d,) = interp.get_input_details()
    assert (d["name"], d["shape"].tolist(), d["dtype"]) == ("x", [1], np.float32)
    built = litert.Interpreter(model_content=tm.probe())
    assert [(x["name"], x["shape"].tolist()) for x in built.get_tensor_details()] == \
        [(x["name"], x["shape"].tolist()) for x in interp.get_tensor_details()]


def test_missing_runtime_is_explained() -> None:
    """A fresh interpreter in which no TFLite runtime can be imported."""
    code = (
        "import sys\n"
        "for m in ('ai_edge_litert', 'tflite_runtime', 'tensorflow'): sys.modules[m] = None\n"
        "import deploykit as dk\n"
        "s = dk.available_backends()['tflite']\n"
        "print(s.available)\n"
        "print(s.reason)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    available, reason = proc.stdout.strip().splitlines()
    assert available == "False"
    assert reason.startswith("no TFLite runtime works here (ai-edge-litert: not installed")
    assert "tflite-runtime: not installed" in reason and "tensorflow: not installed" in reason
    assert reason.endswith("install it with: pip install 'deploykit[tflite]'")


def test_tflite_runtime_built_for_numpy1_is_explained() -> None:
    """tflite-runtime 2.14 (the last release) is built against NumPy 1.x: under NumPy 2 it
    imports, then fails creating an interpreter; deploykit must say so instead of crashing."""
    pytest.importorskip("tflite_runtime.interpreter",
                        reason="tflite-runtime not installed (it is not part of any extra)")
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip("NumPy 1.x is installed: tflite-runtime works here")
    from deploykit.backends import tflite

    with pytest.raises(Exception) as info:
        __import__("tflite_runtime.interpreter").interpreter.Interpreter(
            model_content=tflite._PROBE)
    assert "built against NumPy 1.x" in tflite._explain_import_error(info.value)


@pytest.mark.parametrize("build", [lambda: tm.dynamic_add(signature=True), tm.quantized_double,
                                   tm.two_signatures], ids=["dynamic_add", "quantized", "signatures"])
def test_mutated_models_never_crash(build) -> None:
    """Hostile .tflite bytes (flipped bytes, truncation, spliced garbage): each load and run ends in
    a result or a DeployKitError, never a crash or another exception. (About 3000 mutations of these
    and of two zoo models were tried by hand the same way: none crashed; one escaped as a
    UnicodeDecodeError from the runtime's binding, now a ModelLoadError.)"""
    import random

    data = build()
    rng = random.Random(len(data))
    outcomes: dict[str, int] = {}
    for _ in range(150):
        b = bytearray(data)
        kind = rng.choice(["flip", "truncate", "splice"])
        if kind == "flip":
            for _ in range(rng.randint(1, 20)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif kind == "truncate":
            b = b[:rng.randrange(8, len(b))]
        else:
            at = rng.randrange(len(b))
            b[at:at + 64] = rng.randbytes(64)
        try:
            engine = dk.load(bytes(b), backend="tflite")
            engine.run({s.name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in s.shape],
                                         s.dtype) for s in engine.inputs})
            outcome = "ran"
        except dk.DeployKitError as e:
            outcome = type(e).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert sum(outcomes.values()) == 150 and outcomes.get("ModelLoadError", 0) > 0


# -- the runtime's own stderr ---------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
XNNPACK_LINE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def _python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (LiteRT prints its line once per process) with its own
    temporary folder; stdout and stderr are pipes, so what reaches fd 2 is what comes back."""
    environ = {k: v for k, v in os.environ.items() if k != "DEPLOYKIT_LOG_RUNTIME"}
    environ.update(env, TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=240, cwd=ROOT, env=environ)


_LOAD = """
    import logging, sys
    import numpy as np
    import deploykit as dk
    from tests.backends import tflite_models as tm
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(name)s %(message)s")
    logging.getLogger("deploykit.backends.tflite").setLevel(logging.DEBUG)
    engine = dk.load(tm.dynamic_add(), backend="tflite")
    x = np.ones((2, 3), np.float32)
    print("sum", engine.run({"x": x, "y": x})["z"].sum(), "xnnpack", engine.info["xnnpack"])
"""


def test_a_load_prints_nothing_on_stderr_by_default(tmp_path: Path) -> None:
    proc = _python(_LOAD, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "sum 12.0 xnnpack True" in proc.stdout  # XNNPACK was created: its line was due
    # not lost: it went to deploykit's logger at DEBUG
    assert f"deploykit.backends.tflite runtime: {XNNPACK_LINE}" in proc.stdout.splitlines()
    assert not list(tmp_path.iterdir())  # the capture file is removed at exit


@pytest.mark.parametrize("value", ["1", "true"])
def test_log_runtime_setting_gives_the_runtime_its_stderr_back(value: str, tmp_path: Path) -> None:
    proc = _python(_LOAD, tmp_path, DEPLOYKIT_LOG_RUNTIME=value)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [XNNPACK_LINE]
    assert "runtime:" not in proc.stdout  # nothing captured, nothing to log
    assert not list(tmp_path.iterdir())


def test_a_runtime_error_during_creation_is_still_reported(tmp_path: Path) -> None:
    """A missing custom op fails inside the silenced window: its ModelLoadError names the op, the
    process's fd 2 is back afterwards, and the next (good) load is silent again."""
    proc = _python("""
        import os
        import deploykit as dk
        from tests.backends import tflite_models as tm
        for dynamic in (False, True):
            try:
                dk.load(tm.custom_op(dynamic=dynamic), backend="tflite")
            except dk.ModelLoadError as e:
                print(type(e).__name__, e)
        os.write(2, b"fd 2 is back\\n")
        dk.load(tm.quantized_double(), backend="tflite")
        os.write(2, b"end\\n")
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and all(f"uses custom op(s) {tm.MISSING_OP}" in x for x in lines)
    assert all(x.startswith("ModelLoadError") for x in lines)
    assert proc.stderr == "fd 2 is back\nend\n"


def test_what_else_reaches_fd2_in_the_window_is_written_back(tmp_path: Path) -> None:
    """Inside the window: a runtime-style ERROR line, Python's own sys.stderr, a line without its
    newline; only the INFO/VERBOSE lines are held back (and logged). A nested window joins the
    outer one, and an exception leaves through both with fd 2 restored."""
    proc = _python("""
        import logging, os, sys
        from deploykit.backends import runtime_chatter
        logging.basicConfig(stream=sys.stdout, level=logging.DEBUG, format="%(message)s")
        log = logging.getLogger("t")
        print("before", file=sys.stderr)
        try:
            with runtime_chatter.silenced(log):
                os.write(2, b"INFO: chatter\\nERROR: a real error\\n")
                with runtime_chatter.silenced(log):
                    print("python's stderr", file=sys.stderr)
                    os.write(2, b"VERBOSE: more chatter\\n")
                os.write(2, b"no newline")
                raise KeyError("boom")
        except KeyError as e:
            print("raised", e)
        os.write(2, b"|after\\n")
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "before\nERROR: a real error\npython's stderr\nno newline|after\n"
    assert proc.stdout.splitlines() == ["runtime: INFO: chatter", "runtime: VERBOSE: more chatter",
                                        "raised 'boom'"]  # logged on the way out, raise or not


def test_a_crash_inside_the_window_leaves_its_output_in_a_file(tmp_path: Path) -> None:
    proc = _python("""
        import logging, os
        from deploykit.backends import runtime_chatter
        with runtime_chatter.silenced(logging.getLogger("t")):
            os.write(2, b"ERROR: last words\\n")
            os.abort()
    """, tmp_path)
    assert proc.returncode != 0 and proc.stderr == ""
    (left,) = tmp_path.glob("deploykit-runtime-stderr-*.txt")
    assert left.read_text() == "ERROR: last words\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_child_forked_during_a_window_has_its_stderr(tmp_path: Path) -> None:
    """Another thread is inside a window (a load) when the process forks: the child's fd 2 is the
    real one again, and its own loads neither deadlock on the parent's lock nor chatter."""
    proc = _python("""
        import logging, os, signal, sys, threading, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, Python >= 3.12
        from deploykit.backends import runtime_chatter
        inside, release = threading.Event(), threading.Event()

        def hold():
            with runtime_chatter.silenced(logging.getLogger("t")):
                inside.set()
                release.wait()
                os.write(2, b"ERROR: parent, in the window\\n")

        t = threading.Thread(target=hold)
        t.start()
        inside.wait()
        pid = os.fork()
        if pid == 0:
            signal.alarm(60)  # a deadlocked child ends itself (and the test fails) rather than stays
            os.write(2, b"child: fd 2 is the real one\\n")
            import deploykit as dk
            from tests.backends import tflite_models as tm
            dk.load(tm.dynamic_add(), backend="tflite")
            os.write(2, b"child: loaded\\n")
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        release.set()
        t.join()
        print("child exit", status)
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "child exit 0\n"
    assert proc.stderr == ("child: fd 2 is the real one\nchild: loaded\n"
                           "ERROR: parent, in the window\n")


def test_concurrent_loads_lose_no_other_output(tmp_path: Path) -> None:
    """Eight threads load engines (creating and allocating interpreters) and run them and a shared
    engine, while another thread writes numbered lines to fd 2, directly and through sys.stderr:
    the results are right, no chatter shows, and every line comes out once — on stderr, or, when it
    was written into the middle of the runtime's own line (the runtime writes its line in pieces),
    in the DEBUG log with that line. (The rounds go on until some of the writer's lines were caught
    inside a window, so the case is really exercised.)"""
    proc = _python("""
        import logging, os, sys, threading, time
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("LOG %(message)s"))
        logging.getLogger("deploykit").addHandler(handler)
        logging.getLogger("deploykit").setLevel(logging.DEBUG)
        import numpy as np
        import deploykit as dk
        from tests.backends import tflite_models as tm
        from deploykit.backends import runtime_chatter
        from tests.concurrency import run_in_threads

        caught = []  # bytes of the writer's lines held in a window and written back
        restore = runtime_chatter._restore

        def counting(saved, fd, chatter):
            size = os.fstat(fd).st_size
            said = restore(saved, fd, chatter)
            caught.append(size - sum(map(len, said)))
            return said

        runtime_chatter._restore = counting
        model = tm.dynamic_add()
        shared = dk.load(model, backend="tflite", threads=1, pool=8)
        stop = threading.Event()
        written = []

        def writer():
            n = 0
            while not stop.is_set():
                if n % 2:
                    os.write(2, f"line {n}\\n".encode())
                else:
                    print(f"line {n}", file=sys.stderr)
                n += 1
                time.sleep(0.0002)
            written.append(n)

        def work(i):
            own = dk.load(model, backend="tflite", threads=1, xnnpack=bool(i % 2))
            x = np.full((i + 1, 3), i, np.float32)
            a = own.run({"x": x, "y": x})["z"]
            b = shared.run({"x": x, "y": x})["z"]
            own.close()
            return bool((a == 2 * x).all() and (b == 2 * x).all())

        w = threading.Thread(target=writer)
        w.start()
        ok = True
        for _ in range(30):
            results = run_in_threads(work, threads=8, calls=6)
            ok = ok and all(all(r) for r in results)
            if sum(caught):
                break
        stop.set()
        w.join()
        print("ok", ok, "caught", sum(caught) > 0)
        print("written", written[0])
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    logged = "\n".join(line for line in out if line.startswith("LOG runtime:"))
    ok, written = [line for line in out if not line.startswith("LOG ")]
    assert ok == "ok True caught True"
    n = int(written.split()[1])
    assert "XNNPACK delegate" not in proc.stderr
    seen = sorted(int(k) for k in re.findall(r"line (\d+)", proc.stderr + "\n" + logged))
    assert seen == list(range(n))  # each once, none lost
    assert not list(tmp_path.iterdir())
