"""Batch inference on Ray Data: deploykit (``dk.ray.predict`` with a bundle) against the Ray Data
pipeline a user writes today (``map_batches`` over an onnxruntime session, OpenCV preprocessing)
and against deploykit in-process (the ceiling), on one local Ray.

    python benchmarks/ray_batch.py [--images 8000] [--rounds 5] [--batch-size 64] [--cpus 2]

The data: ``--images`` rendered text lines (``_ocr.text_line``, Pillow), rescaled to a height of
32-48 px and kept when 100-400 px wide, 30% of them turned by 180 degrees (the classifier's other
class); uint8 HWC RGB, in a Ray Dataset built once (``from_items``, an object column of images
and an ``id``, one block per batch) and materialized before any timing. The model: RapidOCR's
text-direction classifier (``tests.zoo``, ``rapidocr_cls``), input [N, 3, 48, 192].

Preprocessing, the same geometry everywhere: scale to fit 48 x 192 keeping the aspect ratio (height
48 unless the line is wider than 4:1), bilinear, (x/255 - 0.5)/0.5, padded around (centred) with
pixel 128 — deploykit's ``letterbox`` op; the OpenCV code below reproduces it (within 1 ulp), so
every variant does the same work and all of them should pick the same class for every image.
(PaddleOCR itself squeezes lines wider than 4:1 and pads on the right; no deploykit op does that.)

(a) "in-process": ``Pipeline.batch`` + ``dk.load(cls, threads=CPUS).run`` over the images in
    batches in this process, ``--cpus`` threads for both: the ceiling;
(b) "deploykit on Ray": ``dk.ray.predict(dataset, bundle)`` — the bundle from ``dk.pack`` with
    the letterbox pipeline — at 1 actor x ``--cpus`` CPUs and 2 actors x ``--cpus``/2 CPUs;
(c) "hand-written Ray": ``dataset.map_batches(Class, ...)`` whose ``__init__`` opens an
    ``onnxruntime.InferenceSession`` (default session options) and whose ``__call__`` preprocesses
    each image with ``cv2.resize`` + numpy, then runs the session; the same actor layouts.
Each round runs every variant once, the order rotated every round. A Ray variant is timed from the
call that maps the dataset (driver-side set-up included) while iterating the result to completion
(``iter_batches``): images/s over the whole job (actor start-up and model loading included, as a
job pays them), the seconds to the first batch, and the steady rate from the first batch to the
last. Before each Ray variant the script waits until the previous job's actors gave their CPUs back.

Before the table: where one batch's time goes in this process (each preprocessing and each
inference set-up alone), and the object-store cost per batch — ``ray.put`` + ``ray.get`` (driver) of 64
preprocessed tensors and of 64 raw images, and an actor call taking that batch as its argument
against one taking nothing.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import logging
import math
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import deploykit as dk  # noqa: E402
from benchmarks import _ocr  # noqa: E402
from deploykit.hostinfo import probe_cpu  # noqa: E402
from tests import zoo  # noqa: E402

H, W = 48, 192
PAD = 128  # deploykit's letterbox pads with a pixel value; (128/255 - 0.5)/0.5 after normalising


# ----------------------------------------------------------------------------- data

def render(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` text lines as uint8 HWC RGB: height 32-48, width 100-400, 30% upside down; and which
    ones are (1: turned by 180 degrees, the classifier's class 1)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    turned: list[int] = []
    while len(out) < n:
        img = _ocr.text_line(rng)[0].convert("RGB")
        h = int(rng.integers(32, 49))
        w = round(img.width * h / img.height)
        if not 100 <= w <= 400:
            continue
        img = img.resize((w, h), Image.BILINEAR)
        turned.append(int(rng.random() < 0.3))
        out.append(np.asarray(img.rotate(180) if turned[-1] else img))
    return out, np.asarray(turned)


# ----------------------------------------------------------------------------- (c) the user's code

def cv2_tensor(img: np.ndarray) -> np.ndarray:
    """One image -> [3, 48, 192] with OpenCV and numpy: what a Ray user writes per image."""
    import cv2
    h, w = img.shape[:2]
    r = min(H / h, W / w)
    nh, nw = min(H, max(1, round(h * r))), min(W, max(1, round(w * r)))
    top, left = (H - nh) // 2, (W - nw) // 2
    x = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    x = (x / 255 - 0.5) / 0.5
    out = np.full((3, H, W), (np.float32(PAD) / 255 - 0.5) / 0.5, np.float32)
    out[:, top:top + nh, left:left + nw] = x.transpose(2, 0, 1)
    return out


class OrtCv2:
    """The hand-written Ray Data worker: an onnxruntime session (default options), OpenCV per image."""

    def __init__(self, path: str) -> None:
        import onnxruntime as ort
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.stack([cv2_tensor(img) for img in batch["image"]])
        (scores,) = self.session.run(None, {self.input: x})
        return {"id": batch["id"], "scores": scores}


# ----------------------------------------------------------------------------- the variants

def pipeline() -> Any:
    return dk.preprocess.Pipeline.letterbox((H, W), swap_rb=False, scale=1 / 255, mean=(0.5, 0.5, 0.5),
                                            std=(0.5, 0.5, 0.5), pad_value=PAD)


def in_process(engine: Any, spec: Any, images: list[np.ndarray], batch: int, threads: int) -> np.ndarray:
    """(a): the scores of every image, batch after batch, in this process."""
    name, out = engine.inputs[0].name, engine.outputs[0].name
    return np.concatenate([engine.run({name: spec.batch(images[i:i + batch], threads=threads)})[out]
                           for i in range(0, len(images), batch)])


def dk_ray(dataset: Any, bundle: Path, batch: int, workers: int, cpus: float) -> Any:
    """(b)"""
    return dk.ray.predict(dataset, bundle, batch_size=batch, concurrency=workers, num_cpus_per_worker=cpus,
                          output_columns={"save_infer_model/scale_0.tmp_1": "scores"})


def hand_ray(dataset: Any, model: Path, batch: int, workers: int, cpus: float) -> Any:
    """(c)"""
    import ray.data
    return dataset.map_batches(OrtCv2, fn_constructor_kwargs={"path": str(model)}, batch_size=batch,
                               compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus,
                               batch_format="numpy")


def drain(job: Callable[[], Any]) -> tuple[np.ndarray, float, float, int]:
    """Make the mapped dataset (``job()``, driver-side set-up included) and iterate it to completion:
    the scores in id order, seconds from the start to the first batch and to the last, and the rows
    of the first batch."""
    t0 = time.perf_counter()
    ids, scores, first, first_rows = [], [], 0.0, 0
    for batch in job().iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
        if not ids:
            first, first_rows = time.perf_counter() - t0, len(batch["id"])
        ids.append(batch["id"])
        scores.append(batch["scores"])
    total = time.perf_counter() - t0
    order = np.argsort(np.concatenate(ids))
    return np.concatenate(scores)[order], first, total, first_rows


def idle(ray: Any, cpus: int, timeout: float = 30.0) -> None:
    """Wait until the previous job's actors have released their CPUs."""
    t0 = time.perf_counter()
    while ray.available_resources().get("CPU", 0) < cpus and time.perf_counter() - t0 < timeout:
        time.sleep(0.1)


# ----------------------------------------------------------------------------- object-store cost

def transfer_costs(ray: Any, tensors: np.ndarray, raw: list[np.ndarray],
                   repeats: int = 30) -> dict[str, float]:
    """Median ms: ray.put + ray.get in the driver of one batch of tensors / raw images, and an actor
    call with that batch as its argument (put included) against an actor call taking nothing."""

    @ray.remote(num_cpus=1)
    class Sink:
        def take(self, batch: Any = None) -> int:
            return 0 if batch is None else len(batch)

    sink = Sink.remote()
    ray.get(sink.take.remote())

    costs = {
        "put+get, 64 tensors": median_ms(lambda: ray.get(ray.put(tensors)), repeats),
        "put+get, 64 raw images": median_ms(lambda: ray.get(ray.put(raw)), repeats),
        "actor call, no argument": median_ms(lambda: ray.get(sink.take.remote()), repeats),
        "actor call, 64 tensors": median_ms(lambda: ray.get(sink.take.remote(ray.put(tensors))), repeats),
        "actor call, 64 raw images": median_ms(lambda: ray.get(sink.take.remote(ray.put(raw))), repeats),
    }
    ray.kill(sink)
    return costs


# ----------------------------------------------------------------------------- where a batch's time goes

def components(model: Path, spec: Any, images: list[np.ndarray], repeats: int = 15) -> dict[str, float]:
    """Median ms per batch of 64, in this process before Ray starts: each preprocessing and each
    inference set-up alone."""
    import onnxruntime as ort
    batch = images[:64]
    x = spec.batch(batch)
    engines = {t: dk.load(str(model), threads=t) for t in (1, 2)}
    default = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = default.get_inputs()[0].name
    parts: dict[str, Callable[[], Any]] = {
        "deploykit Pipeline.batch, 1 thread": lambda: spec.batch(batch, threads=1),
        "deploykit Pipeline.batch, 2 threads": lambda: spec.batch(batch, threads=2),
        "OpenCV + numpy per image (1 thread)": lambda: np.stack([cv2_tensor(i) for i in batch]),
        "deploykit Engine.run, 1 thread": lambda: engines[1].run({name: x}),
        "deploykit Engine.run, 2 threads": lambda: engines[2].run({name: x}),
        "InferenceSession.run, default options": lambda: default.run(None, {name: x}),
    }
    out = {label: median_ms(fn, repeats) for label, fn in parts.items()}
    for engine in engines.values():
        engine.close()
    return out


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median milliseconds of ``fn`` over ``repeats`` calls, after one unmeasured call."""
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


# ----------------------------------------------------------------------------- report

def machine() -> str:
    cpu = probe_cpu()
    return f"{cpu.model}, {cpu.logical_cores} CPUs, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--cpus", type=int, default=2, help="ray.init(num_cpus=...) and the in-process threads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import onnxruntime as ort
    import ray
    import ray.data

    model = zoo.path("rapidocr_cls")
    print(f"machine: {machine()}; {datetime.date.today()}")
    print(f"stack: ray {ray.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}, "
          f"opencv {__import__('cv2').__version__}, deploykit {dk.__version__}")
    t0 = time.perf_counter()
    images, turned = render(args.images, args.seed)
    hs, ws = [i.shape[0] for i in images], [i.shape[1] for i in images]
    print(f"data: {len(images)} text lines, height {min(hs)}-{max(hs)}, width {min(ws)}-{max(ws)} "
          f"(median {statistics.median(ws):.0f}), {sum(i.nbytes for i in images) / 2**20:.0f} MiB raw, "
          f"rendered in {time.perf_counter() - t0:.1f} s")

    spec = pipeline()
    reference_check = np.abs(spec.batch(images[:256]) - np.stack([cv2_tensor(i) for i in images[:256]])).max()
    print(f"deploykit letterbox vs the OpenCV code on 256 images: max |difference| {reference_check:.2g}")
    work = Path(tempfile.mkdtemp(prefix="dk-ray-bench-"))
    bundle = work / "cls-bundle"
    dk.pack(model, bundle, pipeline=spec)
    engine = dk.load(str(model), threads=args.cpus)

    print("\none batch of 64 in this process (median ms, before Ray starts):")
    for label, ms in components(model, spec, images).items():
        print(f"  {label}: {ms:.1f} ms")

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    for logger in ("ray", "ray.data"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="ray")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    blocks = math.ceil(len(images) / args.batch_size)
    dataset = ray.data.from_items([{"image": img, "id": k} for k, img in enumerate(images)],
                                  override_num_blocks=blocks).materialize()

    tensors = spec.batch(images[:64])
    costs = transfer_costs(ray, tensors, images[:64])
    print(f"\nobject-store cost per batch (median ms; 64 tensors = {tensors.nbytes / 2**20:.1f} MiB, "
          f"64 raw images = {sum(i.nbytes for i in images[:64]) / 2**20:.2f} MiB):")
    for name, ms in costs.items():
        print(f"  {name}: {ms:.2f} ms")

    half = args.cpus / 2 if args.cpus > 1 else args.cpus
    layouts = [(1, float(args.cpus)), (2, half)]
    variants: list[tuple[str, int, float]] = [("in-process", 1, float(args.cpus))]
    variants += [(name, w, c) for name in ("deploykit on Ray", "hand-written Ray") for w, c in layouts]
    rates: dict[tuple[str, int], list[float]] = {}  # images / s, start to the last batch
    steady: dict[tuple[str, int], list[float]] = {}  # images / s, first batch to the last
    starts: dict[tuple[str, int], list[float]] = {}  # s to the first batch
    scores: dict[tuple[str, int], np.ndarray] = {}

    def mapped(name: str, w: int, c: float) -> Any:
        return dk_ray(dataset, bundle, args.batch_size, w, c) if name == "deploykit on Ray" else \
            hand_ray(dataset, model, args.batch_size, w, c)

    in_process(engine, spec, images[:256], args.batch_size, args.cpus)  # warm-up
    t_begin = time.perf_counter()
    for r in range(args.rounds):
        k = r % len(variants)
        for name, w, c in variants[k:] + variants[:k]:
            key = (name, w)
            if name == "in-process":
                t0 = time.perf_counter()
                got = in_process(engine, spec, images, args.batch_size, args.cpus)
                total = time.perf_counter() - t0
                steady.setdefault(key, []).append(len(images) / total)
            else:
                idle(ray, args.cpus)
                got, first, total, first_rows = drain(functools.partial(mapped, name, w, c))
                steady.setdefault(key, []).append((len(images) - first_rows) / (total - first))
                starts.setdefault(key, []).append(first)
            rates.setdefault(key, []).append(len(images) / total)
            scores.setdefault(key, got)
        print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - t_begin:.0f} s)", flush=True)
    ray.shutdown()

    ceiling_scores = scores[("in-process", 1)]
    ceiling = ceiling_scores.argmax(1)
    print(f"\ntop class in-process: {np.bincount(ceiling, minlength=2).tolist()} (0 / 180 degrees); the "
          f"rendered orientation: {np.bincount(turned, minlength=2).tolist()}, "
          f"{int((ceiling == turned).sum())}/{len(turned)} classified as rendered")
    for key, s in scores.items():
        if key[0] != "in-process":
            print(f"agreement with in-process, {key[0]} x{key[1]}: {int((s.argmax(1) == ceiling).sum())}/"
                  f"{len(ceiling)} same top class, max |score difference| "
                  f"{np.abs(s - ceiling_scores).max():.2g}")

    med = {key: statistics.median(v) for key, v in rates.items()}
    med_steady = {key: statistics.median(v) for key, v in steady.items()}
    print(f"\n{len(images)} images, batch {args.batch_size}, ray.init(num_cpus={args.cpus}); medians of "
          f"{args.rounds} rounds. images/s: start of the job to its last batch (Ray: actor start-up and "
          f"model loading included); steady: first batch to last; x hand-written: over the hand-written "
          f"Ray pipeline with the same actors (in-process: over the faster hand-written row); "
          f"x in-process: over (a). Ratios from the images/s column, steady ratios in brackets.")
    print("| variant | workers x CPUs | images/s | range | steady images/s | s to 1st batch | "
          "x hand-written | x in-process |")
    print("|---|---|---|---|---|---|---|---|")
    for name, w, c in variants:
        key = (name, w)
        hand = ("hand-written Ray", w) if name != "in-process" else \
            max((("hand-written Ray", lw) for lw, _ in layouts), key=med.__getitem__)
        first = f"{statistics.median(starts[key]):.2f}" if key in starts else ""
        ceil = ("in-process", 1)
        print(f"| {name} | {w} x {c:g} | {med[key]:,.0f} | {min(rates[key]):,.0f}-{max(rates[key]):,.0f} | "
              f"{med_steady[key]:,.0f} | {first} | {med[key] / med[hand]:.2f} "
              f"({med_steady[key] / med_steady[hand]:.2f}) | {med[key] / med[ceil]:.2f} "
              f"({med_steady[key] / med_steady[ceil]:.2f}) |")
    for name in ("deploykit on Ray", "hand-written Ray"):
        print(f"scaling 1 -> 2 workers, {name}: {med[(name, 2)] / med[(name, 1)]:.2f}x "
              f"(steady {med_steady[(name, 2)] / med_steady[(name, 1)]:.2f}x)")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
