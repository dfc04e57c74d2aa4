"""deploykit serve against a plain Starlette + onnxruntime handler and MLServer (REST and gRPC), on loopback.

Each server runs in its own subprocess (so its CPU time can be read from /proc); this process is
the one load generator: asyncio, persistent HTTP/1.1 connections (or gRPC channels), KServe v2
batch 1, concurrency 1 / 8 / 32, a fixed time per cell after a short warm-up, the servers taken in
turn within each round and the order rotated every round. Per cell: infer/s, p50, p99 and server
CPU per request (utime+stime of the server's process tree, before and after the cell); per server:
time from spawn to ``/v2/health/ready`` and resident memory while idle.

    python benchmarks/serve.py [--duration 3] [--rounds 2] [--no-mlserver]

(a) "deploykit": ``deploykit serve REPO`` as shipped (the CLI: access log at INFO to a file,
metrics, input checks, dynamic batching on: max_batch_size 32); "deploykit-nobatch", the same
without batching, for the batching comparison;
(b) "plain": a Starlette + uvicorn handler calling onnxruntime (no batching, metrics or checks);
(c) "mlserver": MLServer 1.7.1 with a tiny onnxruntime runtime, KServe v2 JSON over REST, installed
on first use into its own venv (``--mlserver-venv``; its pins conflict with ours); skipped, with the
reason, when that fails; and "mlserver-grpc", the same process driven over its KServe v2 gRPC port
with tritonclient's asyncio gRPC client (skipped, with the reason, when ``tritonclient.grpc`` does
not import).
Every server runs onnxruntime with the same intra-op thread count (the usable CPUs). Before the
table: the cost of one event loop -> worker thread -> event loop hop under uvloop, which any server
that keeps inference off its event loop pays per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploykit.hardware import usable_cpus  # noqa: E402
from tests import zoo  # noqa: E402

PY = sys.executable
CLOCK = os.sysconf("SC_CLK_TCK")
BATCHING = {"batching": {"max_batch_size": 32}}

PLAIN_APP = '''
import json, sys
import numpy as np, onnxruntime as ort, uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

port, threads, models = int(sys.argv[1]), int(sys.argv[2]), dict(a.split("=", 1) for a in sys.argv[3:])
so = ort.SessionOptions()
so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
sessions = {n: ort.InferenceSession(p, so, providers=["CPUExecutionProvider"]) for n, p in models.items()}
names = {n: [o.name for o in s.get_outputs()] for n, s in sessions.items()}
DT = {"float32": "FP32", "int64": "INT64"}

async def infer(request):
    name = request.path_params["name"]
    body = await request.body()
    size = request.headers.get("inference-header-content-length")
    head = json.loads(body[:int(size)] if size else body)
    (inp,) = head["inputs"]
    if size:
        x = np.frombuffer(body[int(size):], np.float32).reshape(inp["shape"])
    else:
        x = np.asarray(inp["data"], np.float32).reshape(inp["shape"])
    results = sessions[name].run(None, {inp["name"]: x})
    if not size:
        return JSONResponse({"model_name": name, "outputs": [
            {"name": o, "shape": list(r.shape), "datatype": DT[str(r.dtype)], "data": r.ravel().tolist()}
            for o, r in zip(names[name], results)]})
    blobs = [r.tobytes() for r in results]
    header = json.dumps({"model_name": name, "outputs": [
        {"name": o, "shape": list(r.shape), "datatype": DT[str(r.dtype)],
         "parameters": {"binary_data_size": len(b)}}
        for o, r, b in zip(names[name], results, blobs)]}).encode()
    return Response(header + b"".join(blobs), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})

async def ready(request):
    return Response(b"")

app = Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"]),
                        Route("/v2/health/ready", ready)])
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
'''

MLSERVER_RUNTIME = '''
import os
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OrtRuntime(MLModel):
    async def load(self) -> bool:
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(os.environ.get("BENCH_THREADS", "1"))
        so.inter_op_num_threads = 1
        self._session = ort.InferenceSession(self.settings.parameters.uri, so,
                                             providers=["CPUExecutionProvider"])
        self._names = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        results = self._session.run(None, feeds)
        return InferenceResponse(model_name=self.name, outputs=[
            NumpyCodec.encode_output(n, r) for n, r in zip(self._names, results)])
'''


# ----------------------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (MLServer infers in worker processes)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK


def rss_mb(pid: int) -> float:
    """Resident memory of the process tree (shared pages of forked workers counted in each)."""
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    log: Path | None = None
    binary: bool = True  # speaks the binary tensor extension
    grpc_port: int | None = None  # KServe v2 gRPC, where the server has it
    proc: subprocess.Popen | None = None
    ready_s: float = float("nan")
    idle_mb: float = float("nan")

    def start(self, timeout: float = 120.0) -> None:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.cwd,
                                     env={**os.environ, **self.env}, start_new_session=True)
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} (log: {self.log})")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        self.ready_s = time.perf_counter() - t0
                        break
            except OSError:
                pass
            time.sleep(0.01)
        else:
            self.stop()
            raise RuntimeError(f"{self.name} not ready within {timeout:g} s (log: {self.log})")
        time.sleep(1.0)
        self.idle_mb = rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(5)


# ----------------------------------------------------------------------------- requests

@dataclass(frozen=True)
class Case:
    model: str
    encoding: str  # json | binary
    clients: int


def request_bytes(model: str, x: np.ndarray, encoding: str) -> bytes:
    inp = {"name": input_name(model), "shape": list(x.shape), "datatype": "FP32"}
    extra = b""
    if encoding == "json":
        body = json.dumps({"inputs": [{**inp, "data": x.ravel().tolist()}]}).encode()
    else:
        blob = x.astype(np.float32).tobytes()
        header = json.dumps({"inputs": [{**inp, "parameters": {"binary_data_size": len(blob)}}],
                             "parameters": {"binary_data_output": True}}).encode()
        body = header + blob
        extra = f"Inference-Header-Content-Length: {len(header)}\r\n".encode()
    return (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: {'application/json' if encoding == 'json' else 'application/octet-stream'}\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + extra + b"\r\n" + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    req: bytes) -> tuple[int, bytes]:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("a response without Content-Length")
    return status, await reader.readexactly(length)


async def _drive(calls: list[Callable[[], Awaitable[bool]]], warmup: float, duration: float,
                 pid: int) -> dict[str, float]:
    """Each ``call`` (one per simulated client: one request, True when it succeeded) repeated until
    ``warmup + duration`` seconds; the requests ending inside the measured window give infer/s, p50,
    p99 and errors, and the server's CPU time over the window (utime+stime of ``pid``'s tree)."""
    loop = asyncio.get_running_loop()
    t_start = loop.time()
    t0, t1 = t_start + warmup, t_start + warmup + duration
    latencies: list[float] = []
    errors = [0]
    cpu: dict[str, float] = {}

    async def worker(call: Callable[[], Awaitable[bool]]) -> None:
        while True:
            s = loop.time()
            if s >= t1:
                return
            ok = await call()
            e = loop.time()
            if t0 <= e < t1:
                if ok:
                    latencies.append(e - s)
                else:
                    errors[0] += 1

    async def meter() -> None:
        await asyncio.sleep(max(0.0, t0 - loop.time()))
        cpu["a"] = cpu_seconds(pid)
        await asyncio.sleep(max(0.0, t1 - loop.time()))
        cpu["b"] = cpu_seconds(pid)

    await asyncio.gather(meter(), *(worker(c) for c in calls))
    n = len(latencies)
    lat = np.asarray(latencies) * 1e3 if n else np.asarray([np.nan])
    return {"rate": n / duration, "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "cpu_ms": (cpu["b"] - cpu["a"]) * 1e3 / n if n else float("nan"), "errors": errors[0]}


async def _load(port: int, req: bytes, clients: int, warmup: float, duration: float,
                pid: int) -> dict[str, float]:
    """``_drive`` over HTTP/1.1: one persistent connection per client, ``req`` sent as it is."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]

    def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Callable[[], Awaitable[bool]]:
        async def call() -> bool:
            status, _ = await _exchange(reader, writer, req)
            return status == 200
        return call

    try:
        return await _drive([client(r, w) for r, w in conns], warmup, duration, pid)
    finally:
        for _, w in conns:
            w.close()


def check(server: Server, model: str, x: np.ndarray, encoding: str, expected: np.ndarray) -> None:
    """One request, its first output compared with onnxruntime in this process."""
    req = request_bytes(model, x, encoding)

    async def once() -> tuple[int, bytes]:
        r, w = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            return await _exchange(r, w, req)
        finally:
            w.close()

    status, body = asyncio.run(once())
    if status != 200:
        raise RuntimeError(f"{server.name} {model} {encoding}: HTTP {status}: {body[:300]!r}")
    if encoding == "json":
        out = json.loads(body)["outputs"]
        first = next(o for o in out if o["shape"] == list(expected.shape))
        got = np.asarray(first["data"], np.float32).reshape(expected.shape)
    else:  # the JSON header, then each output's bytes in order
        header, end = json.JSONDecoder().raw_decode(body.decode("latin-1"))
        first = header["outputs"][0]
        if "binary_data_size" not in first.get("parameters", {}):
            raise RuntimeError(f"{server.name} {model}: no binary output")
        got = np.frombuffer(body[end:end + first["parameters"]["binary_data_size"]], np.float32)
        got = got.reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def input_name(model: str) -> str:
    return "images" if model == "digits" else "x"


def grpc_import_error() -> str | None:
    """Why tritonclient's asyncio gRPC client cannot be used here, or None when it can."""
    try:
        import tritonclient.grpc.aio  # noqa: F401
    except ImportError as e:
        return f"tritonclient.grpc does not import ({e}); pip install 'tritonclient[grpc]'"
    return None


def _grpc_inputs(model: str, x: np.ndarray) -> list:
    from tritonclient.grpc.aio import InferInput

    inp = InferInput(input_name(model), list(x.shape), "FP32")
    inp.set_data_from_numpy(x.astype(np.float32))
    return [inp]


async def _load_grpc(port: int, model: str, x: np.ndarray, clients: int, warmup: float, duration: float,
                     pid: int) -> dict[str, float]:
    """``_drive`` over KServe v2 gRPC: one InferenceServerClient (so one HTTP/2 channel) per client."""
    from tritonclient.grpc.aio import InferenceServerClient
    from tritonclient.utils import InferenceServerException

    conns = [InferenceServerClient(f"127.0.0.1:{port}") for _ in range(clients)]
    inputs = _grpc_inputs(model, x)  # read-only once built: shared by the workers

    def client(grpc: InferenceServerClient) -> Callable[[], Awaitable[bool]]:
        async def call() -> bool:
            try:
                await grpc.infer(model, inputs)
            except InferenceServerException:
                return False
            return True
        return call

    try:
        return await _drive([client(c) for c in conns], warmup, duration, pid)
    finally:
        for c in conns:
            await c.close()


def check_grpc(server: Server, model: str, x: np.ndarray, expected: np.ndarray) -> None:
    """One gRPC request, its first output compared with onnxruntime in this process."""
    from tritonclient.grpc.aio import InferenceServerClient

    async def once() -> np.ndarray:
        client = InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            result = await client.infer(model, _grpc_inputs(model, x))
        finally:
            await client.close()
        response = result.get_response()
        first = response.outputs[0]
        if response.raw_output_contents:  # tritonclient reads raw outputs only; MLServer may send typed
            return np.frombuffer(response.raw_output_contents[0], np.float32)
        return np.asarray(first.contents.fp32_contents, np.float32)

    got = asyncio.run(once())
    if got.size != expected.size:
        raise RuntimeError(f"{server.name} {model} gRPC: {got.size} values, expected {expected.size}")
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)


def hop_us(calls: int = 3000) -> float:
    """Wall µs of one event loop -> worker thread -> event loop round trip, in a fresh uvloop loop."""
    import concurrent.futures

    import uvloop

    def f() -> None:
        return None

    async def run() -> float:
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            for _ in range(300):
                await loop.run_in_executor(pool, f)
            t0 = time.perf_counter()
            for _ in range(calls):
                await loop.run_in_executor(pool, f)
            return (time.perf_counter() - t0) / calls * 1e6

    loop = uvloop.new_event_loop()  # asyncio.Runner(loop_factory=...) is 3.11+
    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()


# ----------------------------------------------------------------------------- set-up

def repository(root: Path, models: dict[str, Path], config: dict | None) -> Path:
    for name, path in models.items():
        (root / name / "1").mkdir(parents=True)
        shutil.copy(path, root / name / "1" / path.name)
        if config is not None:
            (root / name / "config.json").write_text(json.dumps(config))
    return root


def mlserver_python(venv: Path, timeout: float) -> tuple[Path | None, str]:
    """The venv's python with mlserver 1.7.1 importable, installing it on first use; or the reason not."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c",
             "import mlserver, uvloop, onnxruntime; print(mlserver.__version__, uvloop.__version__)"]
    if python.exists():
        done = subprocess.run(probe, capture_output=True, text=True)
        if done.returncode == 0:
            return python, f"mlserver {done.stdout.strip()} (uvloop second) from {venv}"
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlserver==1.7.1", "uvloop==0.21.*",
                        "onnxruntime"], check=True, timeout=timeout, capture_output=True)
    except subprocess.TimeoutExpired:
        return None, f"installing mlserver took over {timeout:g} s"
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or b"")[-300:].decode(errors="replace") if isinstance(e.stderr, bytes) else ""
        return None, f"installing mlserver failed ({e.returncode}): {tail.strip()}"
    done = subprocess.run(probe, capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"mlserver installed but does not import: {done.stderr.strip()[-300:]}"
    return python, f"mlserver {done.stdout.strip()} (uvloop second), installed into {venv}"


def mlserver_server(work: Path, python: Path, models: dict[str, Path], threads: int, name: str) -> Server:
    root = work / name
    root.mkdir()
    http, grpc, metrics = free_port(), free_port(), free_port()
    (root / "settings.json").write_text(json.dumps({"http_port": http, "grpc_port": grpc,
                                                    "metrics_port": metrics, "host": "127.0.0.1"}))
    (root / "ortruntime.py").write_text(MLSERVER_RUNTIME)
    for model, path in models.items():
        (root / model).mkdir()
        (root / model / "model-settings.json").write_text(json.dumps(
            {"name": model, "implementation": "ortruntime.OrtRuntime", "parameters": {"uri": str(path)}}))
    mlserver = python.parent / "mlserver"
    return Server(name, [str(mlserver), "start", str(root)], http, cwd=str(root), log=work / f"{name}.log",
                  binary=False, grpc_port=grpc, env={"BENCH_THREADS": str(threads), "PYTHONPATH": str(root)})


def deploykit_server(work: Path, models: dict[str, Path], name: str, config: dict | None) -> Server:
    repo = repository(work / f"{name}-repo", models, config)
    port = free_port()
    cli = [PY, "-c", "import sys; from deploykit.cli.app import main; sys.exit(main())"]
    return Server(name, [*cli, "serve", str(repo), "--port", str(port)], port, log=work / f"{name}.log",
                  cwd=str(ROOT))


def plain_server(work: Path, models: dict[str, Path], threads: int) -> Server:
    script = work / "plain_app.py"
    script.write_text(textwrap.dedent(PLAIN_APP))
    port = free_port()
    argv = [PY, str(script), str(port), str(threads), *(f"{n}={p}" for n, p in models.items())]
    return Server("plain", argv,
                  port, log=work / "plain.log")


# ----------------------------------------------------------------------------- main

def uvicorn_stack() -> str:
    have = []
    for mod in ("httptools", "uvloop"):
        try:
            __import__(mod)
            have.append(mod)
        except ImportError:
            pass
    parser = "httptools" if "httptools" in have else "h11"
    loop = "uvloop" if "uvloop" in have else "asyncio"
    state = {m: "present" if m in have else "missing" for m in ("httptools", "uvloop")}
    return f"uvicorn http={parser}, loop={loop} (httptools {state['httptools']}, " \
           f"uvloop {state['uvloop']} in this venv)"


def machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs ({usable_cpus()} usable), Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=3.0, help="measured seconds per cell")
    ap.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds per cell first")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--no-mlserver", action="store_true")
    ap.add_argument("--mlserver-venv", type=Path, default=Path("/tmp/mlsvenv"))
    ap.add_argument("--mlserver-install-timeout", type=float, default=300.0)
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    threads = usable_cpus()
    models = {"digits": ROOT / "deploykit" / "demo" / "digits.onnx", "cls": zoo.path("rapidocr_cls")}
    rng = np.random.default_rng(0)
    inputs = {"digits": rng.random((1, 1, 8, 8), dtype=np.float32) * 16,
              "cls": rng.uniform(-1, 1, (1, 3, 48, 192)).astype(np.float32)}
    import onnxruntime as ort

    expected = {m: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {
        input_name(m): inputs[m]})[0] for m, p in models.items()}
    print(f"machine: {machine()}")
    print(f"stack: deploykit: httptools + deploykit.serve.connection on uvloop; plain: {uvicorn_stack()}; "
          f"onnxruntime {ort.__version__}, {threads} intra-op threads everywhere")

    work = Path(tempfile.mkdtemp(prefix="dk-serve-bench-"))
    servers = [deploykit_server(work, models, "deploykit", BATCHING), plain_server(work, models, threads)]
    nobatch = deploykit_server(work, models, "deploykit-nobatch", None)
    mls_note = "skipped (--no-mlserver)"
    grpc_note = grpc_import_error()
    if not args.no_mlserver:
        python, mls_note = mlserver_python(args.mlserver_venv, args.mlserver_install_timeout)
        if python is not None:
            servers.append(mlserver_server(work, python, models, threads, "mlserver"))
    print(f"MLServer: {mls_note}")
    if grpc_note is not None:
        print(f"MLServer gRPC rows skipped: {grpc_note}")

    # time to ready and idle memory with the digits model alone, one server at a time
    startup: dict[str, tuple[float, float]] = {}
    digits_only = {"digits": models["digits"]}
    solo = [deploykit_server(work, digits_only, "deploykit-solo", BATCHING),
            plain_server(work, digits_only, threads)]
    if any(s.name == "mlserver" for s in servers):
        solo.append(mlserver_server(work, python, digits_only, threads, "mlserver-solo"))  # type: ignore[arg-type]
    for s in solo:
        try:
            s.start()
            startup[s.name.removesuffix("-solo")] = (s.ready_s, s.idle_mb)
        except RuntimeError as e:
            print(f"startup of {s.name} failed: {e}")
        finally:
            s.stop()

    started = []
    for s in [*servers, nobatch]:
        try:
            s.start()
            started.append(s)
        except RuntimeError as e:
            print(f"{s.name} did not start: {e}")
            if s.name == "mlserver":
                mls_note += f"; did not start: {e}"
    servers = [s for s in servers if s in started]
    # the MLServer process also driven over its gRPC port: a row of its own, the same process
    grpc = next((s for s in servers if s.name == "mlserver" and s.grpc_port is not None), None)
    try:
        for s in started:
            for model in models:
                for enc in ("json", "binary") if s.binary else ("json",):
                    check(s, model, inputs[model], enc, expected[model])
        if grpc is not None and grpc_note is None:
            try:
                for model in models:
                    check_grpc(grpc, model, inputs[model], expected[model])
            except Exception as e:  # report it, keep the REST rows
                grpc_note = f"check failed: {type(e).__name__}: {e}"
                print(f"MLServer gRPC rows skipped: {grpc_note}")
        if grpc_note is not None:
            grpc = None
        cases = [Case("digits", "json", c) for c in clients] + [Case("cls", "json", c) for c in clients] + \
                [Case("cls", "binary", c) for c in clients]
        plan: list[tuple[Case, str, Server]] = []  # (cell, row name, server)
        for case in cases:
            plan += [(case, s.name, s) for s in servers if case.encoding == "json" or s.binary]
            if grpc is not None and (case.model, case.encoding) in (("digits", "json"), ("cls", "binary")):
                plan.append((case, "mlserver-grpc", grpc))
            if nobatch in started and ((case.model == "cls" and case.clients == max(clients))
                                       or (case.model == "digits" and case.clients in (1, max(clients)))):
                plan.append((case, nobatch.name, nobatch))
        requests = {(m, e): request_bytes(m, inputs[m], e) for m in models for e in ("json", "binary")}
        results: dict[tuple[Case, str], list[dict[str, float]]] = {}
        t_begin = time.perf_counter()
        for r in range(args.rounds):
            for case in cases:
                cell = [(n, s) for c, n, s in plan if c == case]
                k = r % len(cell)
                for name, s in cell[k:] + cell[:k]:
                    pid = s.proc.pid  # type: ignore[union-attr]
                    if name == "mlserver-grpc":
                        res = asyncio.run(_load_grpc(s.grpc_port, case.model, inputs[case.model],  # type: ignore[arg-type]
                                                     case.clients, args.warmup, args.duration, pid))
                    else:
                        res = asyncio.run(_load(s.port, requests[case.model, case.encoding], case.clients,
                                                args.warmup, args.duration, pid))
                    results.setdefault((case, name), []).append(res)
            print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - t_begin:.0f} s)", flush=True)
        idle_after = {s.name: rss_mb(s.proc.pid) for s in started}  # type: ignore[union-attr]
    finally:
        for s in started:
            s.stop()
    print(f"\nthread hop (loop -> worker -> loop), uvloop: {hop_us():.1f} µs")
    report(cases, results, startup, idle_after, started, args)
    for model, path in models.items():
        rate = in_process(path, input_name(model), inputs[model], threads)
        print(f"in-process onnxruntime, {model}, batch 1, {threads} threads, no HTTP: {rate:,.0f}/s")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def in_process(path: Path, name: str, x: np.ndarray, threads: int, seconds: float = 3.0) -> float:
    """The ceiling: onnxruntime calls per second at batch 1 in this process, no HTTP."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    session.run(None, {name: x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(None, {name: x})
        n += 1
    return n / (time.perf_counter() - t0)


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def report(cases: list[Case], results: dict, startup: dict, idle_after: dict, started: list[Server],
           args: argparse.Namespace) -> None:
    print(f"\nmedians of {args.rounds} rounds, {args.duration:g} s per cell; x plain / x MLServer / "
          "x MLServer gRPC: this row's infer/s over theirs in the same cell; CPU x plain: this row's "
          "CPU ms/req over plain's; mlserver-grpc sends protobuf tensors (raw_input_contents) "
          "whatever enc says")
    print("| model | enc | clients | server | infer/s | p50 ms | p99 ms | CPU ms/req | errors | x plain "
          "| x MLServer | x MLServer gRPC | CPU x plain |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    others = ("plain", "mlserver", "mlserver-grpc")
    for case in cases:
        plain = results.get((case, "plain"))
        for name in ("deploykit", "deploykit-nobatch", *others):
            rows = results.get((case, name))
            if not rows:
                continue
            rate = med(rows, "rate")
            vs = [f"{rate / med(theirs, 'rate'):.2f}" if theirs and name not in others else ""
                  for theirs in (results.get((case, o)) for o in others)]
            cpu = med(rows, "cpu_ms")
            cpu_vs = f"{cpu / med(plain, 'cpu_ms'):.2f}" if plain and name.startswith("deploykit") else ""
            print(f"| {case.model} | {case.encoding} | {case.clients} | {name} | {rate:,.0f} | "
                  f"{med(rows, 'p50'):.2f} | {med(rows, 'p99'):.2f} | {cpu:.3f} | "
                  f"{sum(int(r['errors']) for r in rows)} | {' | '.join(vs)} | {cpu_vs} |")
    print("\n| server | ready s (digits alone) | idle RSS MB (digits alone) | idle RSS MB after the run |")
    print("|---|---|---|---|")
    for s in started:
        ready, mb = startup.get(s.name, (float("nan"), float("nan")))
        print(f"| {s.name} | {ready:.2f} | {mb:.0f} | {idle_after.get(s.name, float('nan')):.0f} |")

if __name__ == "__main__":
    sys.exit(main())
