"""deploykit's preprocessing core vs OpenCV and Pillow on the same images, one process.

    python benchmarks/preprocess.py [--repeat 30]
A. 1920x1080 BGR -> letterbox 640 (pad 114) -> RGB /255 float32 NCHW   (peer: OpenCV)
B. 1920x1080 -> shorter side 256 -> centre crop 224 -> ImageNet float32 NCHW (peers: PIL+numpy, OpenCV)
C. 32 images 640x480 -> 224x224 (resize, /255) into one (32,3,224,224) tensor (peer: OpenCV loop);
   C' the same in Pillow mode (compute-bound: shows the thread pool's scaling)
Floor: (bytes read + bytes written) / memcpy bandwidth measured here. Medians and minimums (ms).

    python benchmarks/preprocess.py --against OTHER/_core.cpython-*.so [--rounds 400]
compares another build of the C core (e.g. the previous commit's) with this one in one process:
calls alternate between the two in random order on the same inputs, and the outputs must be equal.
On a shared machine this is the fair before/after measure.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploykit import preprocess as pp

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3, float(np.min(ts)) * 1e3


def memcpy_gbps() -> float:
    a = np.ones(64 << 20, np.uint8)
    b = np.empty_like(a)
    med, _ = timed(lambda: np.copyto(b, a), 10)
    return 2 * a.nbytes / (med / 1e3) / 1e9  # read + write


def two_thread_scaling() -> tuple[float, float]:
    """What 2 threads give on this machine right now, without deploykit: copying two 32 MB
    buffers (the ceiling of memory-bound work such as case C, 48 MB through memory per batch) and
    a pure compute loop (numpy sin on a cached array). On a shared VM both move from run to run."""
    import threading

    srcs = [np.ones(32 << 20, np.uint8) for _ in range(2)]
    dsts = [np.empty_like(s) for s in srcs]
    small = [np.random.default_rng(i).random(1 << 16) for i in range(2)]

    def copy(i: int) -> None:
        np.copyto(dsts[i], srcs[i])

    def compute(i: int) -> None:
        for _ in range(30):
            np.sin(small[i])

    def ratio(work: Callable[[int], None]) -> float:
        def parallel() -> None:
            pool = [threading.Thread(target=work, args=(i,)) for i in range(2)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()

        return timed(lambda: (work(0), work(1)), 15)[0] / timed(parallel, 15)[0]

    return ratio(copy), ratio(compute)


def _load_core(path: str) -> Any:
    """A build of the C core loaded from a file, beside the one deploykit imports."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("_core", path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("_core", loader))
    loader.exec_module(module)
    return module


def compare_builds(other_path: str, rounds: int) -> None:
    """Paired timing of the core's resample: another build (A) against this one (B)."""
    from deploykit.preprocess import _core

    other = _load_core(other_path)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    f32 = {"swap_rb": True, "scale": 1 / 255}
    norm = {**f32, "mean": MEAN, "std": STD}
    cases = [  # name, source, output, resized, window, offset, mode, layout, keywords
        ("A letterbox 640 f32", photo, ((3, 640, 640), np.float32), (360, 640), (0, 0, 360, 640), (140, 0),
         "cv2", "NCHW", {**f32, "pad": 114}),
        ("B pil 256, crop 224, ImageNet", photo, ((3, 224, 224), np.float32), (256, 455), (16, 115, 224, 224),
         (0, 0), "pil", "NCHW", norm),
        ("B cv2 256, crop 224, ImageNet", photo, ((3, 224, 224), np.float32), (256, 455), (16, 115, 224, 224),
         (0, 0), "cv2", "NCHW", norm),
        ("C one 640x480 -> 224", small, ((3, 224, 224), np.float32), (224, 224), (0, 0, 224, 224), (0, 0),
         "cv2", "NCHW", f32),
        ("C' one, pil mode", small, ((3, 224, 224), np.float32), (224, 224), (0, 0, 224, 224), (0, 0),
         "pil", "NCHW", f32),
        ("float16 NHWC letterbox 320", small, ((320, 320, 3), np.float16), (240, 320), (0, 0, 240, 320),
         (40, 0), "cv2", "NHWC", {**f32, "pad": 114}),
        ("uint8 NHWC pil 300x400 -> x2", small[:300, :400], ((600, 800, 3), np.uint8), (600, 800),
         (0, 0, 600, 800), (0, 0), "pil", "NHWC", {}),
        ("gray -> 3 channels, cv2 256", np.ascontiguousarray(small[..., 0]), ((3, 256, 256), np.float32),
         (256, 256), (0, 0, 256, 256), (0, 0), "cv2", "NCHW", {"scale": 1 / 255}),
    ]
    print(f"A: {other_path} ({other.SIMD}); B: this tree's build ({_core.SIMD}); {rounds} rounds, ms")
    print(f"{'case':<32}{'A med/min':>16}{'B med/min':>16}{'B/A med':>9}{'B/A min':>9}")
    order = np.random.default_rng(1).integers(0, 2, rounds)
    for name, src, (shape, dtype), *call, keywords in cases:
        outs = {"A": np.zeros(shape, dtype), "B": np.zeros(shape, dtype)}
        times: dict[str, list[float]] = {"A": [], "B": []}
        cores = {"A": other.resample, "B": _core.resample}
        for first in order:
            for k in ("A", "B") if first else ("B", "A"):
                t0 = time.perf_counter()
                cores[k](src, outs[k], *call, **keywords)
                times[k].append(time.perf_counter() - t0)
        assert np.array_equal(outs["A"], outs["B"]), f"{name}: the two builds differ"
        (am, an), (bm, bn) = ((float(np.median(times[k])) * 1e3, min(times[k]) * 1e3) for k in ("A", "B"))
        print(f"{name:<32}{am:>8.3f}/{an:<7.3f}{bm:>8.3f}/{bn:<7.3f}{bm / am:>9.3f}{bn / an:>9.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--against", metavar="CORE_SO", help="another build of the C core to compare")
    parser.add_argument("--rounds", type=int, default=400, help="paired calls per case with --against")
    args = parser.parse_args()
    if args.against:
        compare_builds(args.against, args.rounds)
        return
    import cv2
    from PIL import Image

    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    from sklearn.datasets import load_sample_image

    photo = cv2.resize(np.asarray(load_sample_image("china.jpg")), (1920, 1080))
    bw = memcpy_gbps()
    mem2, cpu2 = two_thread_scaling()
    print(f"machine: {platform.machine()}; OpenCV {cv2.__version__} (1 thread), Pillow "
          f"{Image.__version__}; memcpy {bw:.1f} GB/s (read+write); 2 threads vs 1 here now: "
          f"memcpy {mem2:.2f}x, compute {cpu2:.2f}x (the ceilings for C and C')")
    rows = []

    # A
    out_a = np.empty((1, 3, 640, 640), np.float32)

    def cv_a() -> object:
        r = cv2.resize(photo, (640, 360), interpolation=cv2.INTER_LINEAR)
        r = cv2.copyMakeBorder(r, 140, 140, 0, 0, cv2.BORDER_CONSTANT, value=(114, 114, 114))
        return cv2.dnn.blobFromImage(r, 1 / 255, swapRB=True)

    assert np.array_equal(pp.letterbox(photo, 640)[0], cv_a())
    # the floor: read the image once, write the tensor once, at memcpy speed
    floor_a = (photo.nbytes + out_a.nbytes) / (bw * 1e9) * 1e3
    rows.append(("A letterbox 640 (cv2 mode)", "OpenCV", timed(cv_a, args.repeat),
                 timed(lambda: pp.letterbox(photo, 640, out=out_a), args.repeat), floor_a))

    # B
    out_b = np.empty((1, 3, 224, 224), np.float32)
    pil = Image.fromarray(photo[..., ::-1])

    def pil_b() -> object:
        r = np.asarray(pil.resize((455, 256), Image.BILINEAR))[16:240, 115:339]
        x = (r.astype(np.float32) / 255 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def cv_b() -> object:
        r = cv2.resize(photo, (455, 256), interpolation=cv2.INTER_LINEAR)[16:240, 115:339]
        return cv2.dnn.blobFromImage(r, 1 / (255 * 0.226), mean=tuple(m * 255 for m in MEAN),
                                     swapRB=True)

    rows.append(("B resize 256 + crop 224 (pil mode)", "PIL+numpy", timed(pil_b, args.repeat),
                 timed(lambda: pp.resize_crop(photo, 256, 224, mean=MEAN, std=STD, out=out_b),
                       args.repeat), None))
    rows.append(("B resize 256 + crop 224 (cv2 mode)", "OpenCV", timed(cv_b, args.repeat),
                 timed(lambda: pp.resize_crop(photo, 256, 224, mean=MEAN, std=STD, mode="cv2",
                                              out=out_b), args.repeat), None))

    # C
    images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(32)]
    out_c = np.empty((32, 3, 224, 224), np.float32)

    def cv_c() -> object:
        for i, img in enumerate(images):
            r = cv2.resize(img, (224, 224), interpolation=cv2.INTER_LINEAR)
            out_c[i] = cv2.dnn.blobFromImage(r, 1 / 255, swapRB=True)[0]
        return out_c

    # 48 MB in and out: past the caches, so this floor (DRAM at memcpy speed) binds both threads
    floor_c = (sum(i.nbytes for i in images) + out_c.nbytes) / (bw * 1e9) * 1e3
    ours_c = pp.batch(images, pp.resize, size=224, threads=1)
    assert np.array_equal(ours_c, cv_c()), "C: deploykit must equal the OpenCV loop bit for bit"
    for threads in (1, 2):
        rows.append((f"C 32 x 640x480 -> 224 ({threads} thread)", "OpenCV loop",
                     timed(cv_c, max(3, args.repeat // 5)),
                     timed(lambda t=threads: pp.batch(images, pp.resize, size=224, out=out_c, threads=t),
                           max(3, args.repeat // 5)), floor_c))

    # C in Pillow mode: 4x more arithmetic per pixel, so the batch is compute-bound and shows what
    # the thread pool gives when memory bandwidth is not the limit
    pils = [Image.fromarray(img[..., ::-1]) for img in images]

    def pil_c() -> object:
        for i, im in enumerate(pils):
            r = np.asarray(im.resize((224, 224), Image.BILINEAR), np.float32)
            out_c[i] = (r / 255).transpose(2, 0, 1)
        return out_c

    for threads in (1, 2):
        rows.append((f"C' same, pil mode ({threads} thread)", "PIL+numpy", timed(pil_c, 3),
                     timed(lambda t=threads: pp.batch(images, pp.resize, size=224, mode="pil", out=out_c,
                                                      threads=t), max(3, args.repeat // 5)), None))

    print(f"\n{'case':<40}{'peer':<12}{'peer med/min':>16}{'deploykit med/min':>20}{'speed-up':>10}")
    for name, peer, (pm, pmin), (dm, dmin), floor in rows:
        extra = f"   floor {floor:.2f} ms ({dm / floor:.1f}x it)" if floor else ""
        print(f"{name:<40}{peer:<12}{pm:>8.2f}/{pmin:<7.2f}{dm:>11.2f}/{dmin:<8.2f}{pm / dm:>9.2f}x"
              + extra)


if __name__ == "__main__":
    main()
