"""Online serving on Ray Serve: deploykit (``dk.ray.deployment``, its own dynamic batching in each
replica) against the deployment a Ray user writes today (FastAPI ingress, ``@serve.batch``, an
onnxruntime session), and against ``deploykit serve`` without Ray (the reference), on one local Ray.

    python benchmarks/ray_serve.py [--rounds 3] [--digits 400] [--cls 200] [--quick]

The models: the bundled digits model (``deploykit.demo.MODEL_PATH``, input "images" [N, 1, 8, 8],
~10 us a row: per-request overhead is everything) and RapidOCR's text-direction classifier
(``tests.zoo``, ``rapidocr_cls``, input "x" [N, 3, 48, 192], ms a row), in one repository
(``repo/<model>/1/model.onnx``) with ``{"batching": {"max_batch_size": 32, "max_queue_delay_ms": 2}}``
in each model's ``config.json``. The rows: digits' test images; rendered text lines
(``ray_batch.render``, 30% turned by 180 degrees) through deploykit's letterbox, as ``ray_batch.py``
makes them. Every request is one row of KServe v2 JSON (``"data"``: the flat float list, as
``tolist()`` writes it; ~0.5 MB for a cls row), encoded before any timing.

(a) "deploykit serve": ``deploykit.serve.Server(repo)`` in a subprocess of its own (in this process
    the 16 client threads would share its GIL), the engines' threads = the usable CPUs, as the CLI runs;
(b) "deploykit on Ray": ``dk.ray.deployment(repo, num_replicas=R, num_cpus=1)`` (batching by each
    model's config.json; ``max_ongoing_requests`` at its default, 64 when RESULTS.md was measured
    and 128 since — at 16 clients neither bound is reached);
(c) "hand-written @serve.batch": a FastAPI ingress whose ``/v2/models/{name}/infer`` parses the body
    (``await request.json()``, the "data" list -> numpy), awaits a ``@serve.batch(max_batch_size=32,
    batch_wait_timeout_s=0.002)`` method that runs an ``onnxruntime.InferenceSession`` (default
    session options) on the concatenated rows, and returns the v2 JSON dict; R replicas,
    ``ray_actor_options={"num_cpus": 1}``, ``max_ongoing_requests=64`` (Ray's default, 5, would cap
    every batch at 5 rows; Ray's batching guide says to raise it).
R = 1 and 2 on ``ray.init(num_cpus=2)``; Ray and Serve start once (proxy on a free loopback port),
each Ray variant is deployed (``serve.run``, ready when it returns), measured and deleted in turn, the
order rotated every round; (a) starts and stops each round too.

Per variant and model: ``--digits`` / ``--cls`` requests from C = 1 and C = 16 client threads (each
its own keep-alive ``http.client`` connection, connected before the clock starts), after a warm-up;
requests/s over the cell, p50 and p99 latency (send to the last byte read); and "lone": the median of
``--lone`` requests each sent after 50 ms of silence (nothing else in flight anywhere). Every
answer's output is checked against the in-process result of its row (``dk.load``, batch 1): a
different top class is a mismatch, printed; non-200 answers are counted and printed too. Medians
over rounds; ratios deploykit / hand-written at the same R.
"""

import argparse
import datetime
import http.client
import itertools
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from ray import serve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import deploykit as dk  # noqa: E402
from benchmarks.ray_batch import machine, median_ms, pipeline, render  # noqa: E402
from deploykit.demo import MODEL_PATH, load_test_data  # noqa: E402
from deploykit.serve.v2codec import decode_request  # noqa: E402
from tests import zoo  # noqa: E402

BATCHING = {"batching": {"max_batch_size": 32, "max_queue_delay_ms": 2}}
INPUTS = {"digits": "images", "cls": "x"}
CLIENTS = (1, 16)
LONE_GAP_S = 0.05
JSON = {"Content-Type": "application/json"}
DK, HAND, REF = "deploykit on Ray", "hand-written @serve.batch", "deploykit serve (no Ray)"
SERVER = """
import sys
from deploykit.serve import Server
with Server(sys.argv[1]) as s:
    print(s.url, flush=True)
    sys.stdin.read()
"""


# ----------------------------------------------------------------------------- (c) the user's code

hand_api = FastAPI()
V2_TYPES = {"float32": "FP32", "int64": "INT64"}


@serve.ingress(hand_api)
class HandWritten:
    """What a Ray user writes: FastAPI, one onnxruntime session per model (default options), Ray
    Serve's batching (one batched method per model: a batch is one model's rows)."""

    def __init__(self, models: dict[str, str]) -> None:
        import onnxruntime as ort
        self.sessions = {name: ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                         for name, path in models.items()}
        self.batched = {"digits": self.run_digits, "cls": self.run_cls}

    @hand_api.post("/v2/models/{name}/infer")
    async def infer(self, name: str, request: Request) -> dict[str, Any]:
        body = await request.json()
        (inp,) = body["inputs"]
        x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
        outputs = await self.batched[name](x)
        return {"model_name": name, "outputs": [
            {"name": out_name, "shape": list(y.shape), "datatype": V2_TYPES[str(y.dtype)],
             "data": y.ravel().tolist()} for out_name, y in outputs.items()]}

    def run(self, name: str, xs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        session = self.sessions[name]
        ys = session.run(None, {session.get_inputs()[0].name: np.concatenate(xs)})
        names = [o.name for o in session.get_outputs()]
        ends = np.cumsum([len(x) for x in xs])
        return [{n: y[end - len(x):end] for n, y in zip(names, ys)} for x, end in zip(xs, ends)]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def run_digits(self, xs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return self.run("digits", xs)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def run_cls(self, xs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return self.run("cls", xs)


# ----------------------------------------------------------------------------- the load

def v2_body(name: str, row: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": [1, *row.shape], "datatype": "FP32",
                                   "data": row.ravel().tolist()}]}).encode()


def drive(url: str, model: str, bodies: list[bytes], n: int, clients: int,
          ) -> tuple[float, np.ndarray, list[tuple[int, int, bytes]]]:
    """``n`` requests (request k sends ``bodies[k % len]``) from ``clients`` threads, each with its own
    keep-alive connection: seconds from the start to the last answer, each request's latency (s), and
    each answer as (row, status, body)."""
    host, port = url.removeprefix("http://").split(":")
    path = f"/v2/models/{model}/infer"
    counter = itertools.count()
    latency = np.zeros(n)
    answers: list[tuple[int, int, bytes]] = [(0, 0, b"")] * n
    start = threading.Barrier(clients + 1)

    def worker() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start.wait()
        while (k := next(counter)) < n:
            t0 = time.perf_counter()
            conn.request("POST", path, bodies[k % len(bodies)], JSON)
            response = conn.getresponse()
            data = response.read()
            latency[k] = time.perf_counter() - t0
            answers[k] = (k % len(bodies), response.status, data)
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latency, answers


def lone(url: str, model: str, bodies: list[bytes], n: int,
         ) -> tuple[np.ndarray, list[tuple[int, int, bytes]]]:
    """``n`` requests on one keep-alive connection, one at a time, each after ``LONE_GAP_S`` of silence:
    each one's latency (s) and answer as (row, status, body)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    latency, answers = np.zeros(n), []
    for k in range(n):
        time.sleep(LONE_GAP_S)
        t0 = time.perf_counter()
        conn.request("POST", f"/v2/models/{model}/infer", bodies[k % len(bodies)], JSON)
        response = conn.getresponse()
        data = response.read()
        latency[k] = time.perf_counter() - t0
        answers.append((k % len(bodies), response.status, data))
    conn.close()
    return latency, answers


# ----------------------------------------------------------------------------- checking the answers

class Checker:
    """Counts, per variant, answers that are not 200 and answers whose top class differs from the
    in-process result of their row; keeps the largest |difference| of the scores."""

    def __init__(self, want: dict[str, np.ndarray], output: dict[str, str]) -> None:
        self.want, self.output = want, output
        self.checked: dict[str, int] = {}
        self.errors: dict[str, list[str]] = {}
        self.mismatches: dict[str, list[str]] = {}
        self.max_diff: dict[str, float] = {}

    def check(self, variant: str, model: str, answers: list[tuple[int, int, bytes]]) -> None:
        key = f"{variant} | {model}"
        for row, status, data in answers:
            self.checked[key] = self.checked.get(key, 0) + 1
            if status != 200:
                self.errors.setdefault(key, []).append(f"row {row}: HTTP {status} {data[:200]!r}")
                continue
            outs = {o["name"]: o for o in json.loads(data)["outputs"]}
            got = np.asarray(outs[self.output[model]]["data"], np.float32)
            want = self.want[model][row]
            self.max_diff[key] = max(self.max_diff.get(key, 0.0), float(np.abs(got - want).max()))
            if got.argmax() != want.argmax():
                self.mismatches.setdefault(key, []).append(
                    f"row {row}: top class {got.argmax()} (scores {got.tolist()}), in-process "
                    f"{want.argmax()} ({want.tolist()})")

    def report(self) -> None:
        print("\nanswers checked against in-process (dk.load, batch 1): top class and max |score difference|")
        for key, count in self.checked.items():
            errors, wrong = self.errors.get(key, []), self.mismatches.get(key, [])
            print(f"  {key}: {count} answers, {len(errors)} not 200, {len(wrong)} other top class, "
                  f"max |difference| {self.max_diff.get(key, float('nan')):.2g}")
            for line in (errors + wrong)[:10]:
                print(f"    {line}")


# ----------------------------------------------------------------------------- set-up

def repository(root: Path, cls_model: Path) -> Path:
    for name, path in (("digits", Path(MODEL_PATH)), ("cls", cls_model)):
        (root / name / "1").mkdir(parents=True)
        shutil.copy(path, root / name / "1" / "model.onnx")
        (root / name / "config.json").write_text(json.dumps(BATCHING))
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def idle(ray: Any, cpus: int, timeout: float = 60.0) -> None:
    """Wait until the previous deployment's replicas have released their CPUs."""
    t0 = time.perf_counter()
    while ray.available_resources().get("CPU", 0) < cpus and time.perf_counter() - t0 < timeout:
        time.sleep(0.1)


class Deployed:
    """One variant, up for one round: a Ray Serve application, or (a) in its subprocess."""

    def __init__(self, variant: str, replicas: int, repo: Path, models: dict[str, str], proxy: str) -> None:
        self.variant, self.process = variant, None
        t0 = time.perf_counter()
        if variant == REF:
            self.process = subprocess.Popen([sys.executable, "-c", SERVER, str(repo)], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
            assert self.process.stdout is not None
            self.url = self.process.stdout.readline().strip()
            if not self.url.startswith("http://"):
                raise RuntimeError(f"deploykit serve did not start (exit {self.process.poll()})")
        else:
            if variant == DK:
                app = dk.ray.deployment(repo, name="bench", num_replicas=replicas, num_cpus=1)
            else:
                app = serve.deployment(HandWritten, name="bench", num_replicas=replicas,
                                       max_ongoing_requests=64,
                                       ray_actor_options={"num_cpus": 1}).bind(models)
            serve.run(app, name="bench", route_prefix="/")
            self.url = proxy
        self.start_s = time.perf_counter() - t0

    def close(self, ray: Any, cpus: int) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=60)
        else:
            serve.delete("bench")
            idle(ray, cpus)


# ----------------------------------------------------------------------------- report

def pct(latency: np.ndarray, q: float) -> float:
    return float(np.percentile(latency, q) * 1e3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--digits", type=int, default=400, help="digits requests per cell")
    ap.add_argument("--cls", type=int, default=200, help="cls requests per cell")
    ap.add_argument("--lone", type=int, default=20, help="lone requests per model and variant, each round")
    ap.add_argument("--rows", type=int, default=64, help="distinct rows per model (requests cycle through)")
    ap.add_argument("--cpus", type=int, default=2, help="ray.init(num_cpus=...)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 round, few requests, R = 1 only")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.digits, args.cls, args.lone = 1, 64, 32, 5
    import onnxruntime as ort
    import ray

    print(f"machine: {machine()}; {datetime.date.today()}")
    print(f"stack: ray {ray.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}, "
          f"deploykit {dk.__version__}; load average {os.getloadavg()[0]:.2f}")
    cls_model = zoo.path("rapidocr_cls")
    work = Path(tempfile.mkdtemp(prefix="dk-ray-serve-bench-"))
    repo = repository(work / "repo", cls_model)
    models = {m: str(repo / m / "1" / "model.onnx") for m in ("digits", "cls")}

    images = load_test_data()[0][:args.rows].astype(np.float32)
    spec = pipeline()
    lines, _ = render(args.rows, seed=0)
    rows = {"digits": images, "cls": spec.batch(lines)}
    bodies = {m: [v2_body(INPUTS[m], r) for r in rows[m]] for m in rows}
    output = {"digits": "probabilities", "cls": "save_infer_model/scale_0.tmp_1"}
    want = {}
    for m, path in models.items():
        engine = dk.load(path, backend="onnxruntime", threads=1)
        want[m] = np.stack([engine.run({INPUTS[m]: r[None]})[output[m]][0] for r in rows[m]])
        engine.close()
    checker = Checker(want, output)
    print(f"data: {args.rows} rows a model; one request's JSON body: digits "
          f"{statistics.median(len(b) for b in bodies['digits']) / 1e3:.1f} kB, cls "
          f"{statistics.median(len(b) for b in bodies['cls']) / 1e3:.0f} kB; cls top class in-process "
          f"{np.bincount(want['cls'].argmax(1), minlength=2).tolist()} (0 / 180 degrees)")

    print("\none request's parts in this process (median ms, before Ray starts):")
    for m in models:
        default = ort.InferenceSession(models[m], providers=["CPUExecutionProvider"])
        one = ort.SessionOptions()
        one.intra_op_num_threads = 1
        single = ort.InferenceSession(models[m], one, providers=["CPUExecutionProvider"])
        x1, x16 = rows[m][:1], rows[m][:16]
        name = INPUTS[m]
        parts: dict[str, Callable[[], Any]] = {
            "json.loads + np.asarray of the body (the hand-written replica's parse)": lambda m=m: np.asarray(
                json.loads(bodies[m][0])["inputs"][0]["data"], np.float32),
            "v2codec.decode_request of the body (deploykit's parse, orjson)":
                lambda m=m: decode_request(bodies[m][0], None, max_elements=1 << 30),
            "InferenceSession.run, 1 row, default options":
                lambda s=default, x=x1, n=name: s.run(None, {n: x}),
            "InferenceSession.run, 1 row, 1 thread": lambda s=single, x=x1, n=name: s.run(None, {n: x}),
            "InferenceSession.run, 16 rows, 1 thread": lambda s=single, x=x16, n=name: s.run(None, {n: x}),
        }
        for label, fn in parts.items():
            print(f"  {m}: {label}: {median_ms(fn, 30 if m == 'digits' else 10):.3f} ms")

    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             configure_logging=False)  # a Ray of its own, even where another is running
    for logger in ("ray", "ray.serve"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="ray")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"log_level": "WARNING"})
    proxy = f"http://127.0.0.1:{port}"

    layouts = (1,) if args.quick else (1, 2)
    variants = [(REF, 0)] + [(v, r) for r in layouts for v in (DK, HAND)]
    n = {"digits": args.digits, "cls": args.cls}
    # (variant, R, model, C) -> per-round [requests/s], [p50 ms], [p99 ms]; (variant, R, model) -> lone ms
    rate: dict[tuple[Any, ...], list[float]] = {}
    p50: dict[tuple[Any, ...], list[float]] = {}
    p99: dict[tuple[Any, ...], list[float]] = {}
    lone_ms: dict[tuple[Any, ...], list[float]] = {}
    starts: dict[tuple[str, int], list[float]] = {}
    t_begin = time.perf_counter()
    for r in range(args.rounds):
        k = r % len(variants)
        for variant, replicas in variants[k:] + variants[:k]:
            up = Deployed(variant, replicas, repo, models, proxy)
            starts.setdefault((variant, replicas), []).append(up.start_s)
            label = variant if variant == REF else f"{variant} x{replicas}"
            try:
                for m in models:
                    drive(up.url, m, bodies[m], 32, 16)  # warm-up: connections, every replica, batches
                    lat, answers = lone(up.url, m, bodies[m], args.lone)
                    checker.check(label, m, answers)
                    lone_ms.setdefault((variant, replicas, m), []).append(float(np.median(lat) * 1e3))
                    for c in CLIENTS:
                        seconds, lat, answers = drive(up.url, m, bodies[m], n[m], c)
                        checker.check(label, m, answers)
                        key = (variant, replicas, m, c)
                        rate.setdefault(key, []).append(n[m] / seconds)
                        p50.setdefault(key, []).append(pct(lat, 50))
                        p99.setdefault(key, []).append(pct(lat, 99))
            finally:
                up.close(ray, args.cpus)
        print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - t_begin:.0f} s, load average "
              f"{os.getloadavg()[0]:.2f})", flush=True)
    serve.shutdown()
    ray.shutdown()

    checker.report()
    print("\nstart-up (s, median): " + ", ".join(
        f"{v if v == REF else f'{v} x{rr}'} {statistics.median(s):.1f}" for (v, rr), s in starts.items()))
    med = statistics.median
    print(f"\n{args.digits} digits / {args.cls} cls requests of one row per cell, C client threads; "
          f"ray.init(num_cpus={args.cpus}), each replica num_cpus=1; medians of {args.rounds} rounds "
          f"(req/s range in brackets). lone: median ms of a request sent after {LONE_GAP_S * 1e3:.0f} ms "
          f"of silence. dk / hand: deploykit on Ray over the hand-written deployment with the same R "
          f"(req/s, p50, p99).")
    print("| model | C | variant | R | req/s | p50 ms | p99 ms | lone ms | dk / hand req/s | "
          "dk / hand p50 | dk / hand p99 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m in models:
        for c in CLIENTS:
            for variant, replicas in variants:
                key = (variant, replicas, m, c)
                ratios = " | |"
                if variant == DK:
                    hand = (HAND, replicas, m, c)
                    ratios = (f" {med(rate[key]) / med(rate[hand]):.2f} | "
                              f"{med(p50[key]) / med(p50[hand]):.2f} | {med(p99[key]) / med(p99[hand]):.2f}")
                lone_cell = f"{med(lone_ms[(variant, replicas, m)]):.2f}" if c == 1 else ""
                print(f"| {m} | {c} | {variant} | {replicas or '-'} | {med(rate[key]):,.0f} "
                      f"({min(rate[key]):,.0f}-{max(rate[key]):,.0f}) | {med(p50[key]):.2f} | "
                      f"{med(p99[key]):.2f} | {lone_cell} |{ratios} |")
    print("\nlone ms, dk / hand: " + "; ".join(
        f"{m} R={rr} {med(lone_ms[(DK, rr, m)]) / med(lone_ms[(HAND, rr, m)]):.2f}" for m in models
        for rr in layouts))
    print(f"total {time.perf_counter() - t_begin:.0f} s after Ray's start")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
