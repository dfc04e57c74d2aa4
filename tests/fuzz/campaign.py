"""The long fuzzing campaign (``make fuzz``): mutated ONNX and TFLite models (loaded from bytes and run
on made-up inputs), bundle manifests and Pipeline specs, in worker processes of ``--chunk`` inputs
each, so that a crash loses one chunk and names its input. Prints a summary and writes it as JSON.

    python -m tests.fuzz.campaign [--count 100000] [--jobs 2] [--chunk 5000] [--out fuzz-results.json]

An outcome is ``ok``, ``error:<DeployKitError subclass>``, ``raw:<type>`` (a finding: another exception
got through) or ``crash`` (the worker died: the input is saved under ``fuzz-findings/``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("onnx", "tflite", "manifest", "pipeline")


def _seeds() -> dict[str, list[bytes]]:
    import deploykit as dk
    from deploykit.demo import MODEL_PATH
    from tests.fuzz.corpus import ONNX_SEEDS, TFLITE_SEEDS, _seeds
    onnx_seeds = [MODEL_PATH.read_bytes()] + [p.read_bytes() for p in _seeds(ONNX_SEEDS[:1])]
    tflite_seeds = [p.read_bytes() for p in _seeds(TFLITE_SEEDS[:2])]
    folder = Path(os.environ["DEPLOYKIT_CACHE_DIR"]) / "campaign-bundle"
    if not (folder / "deploykit.json").exists():
        dk.pack(MODEL_PATH, folder, labels=["a"], pipeline=dk.preprocess.Pipeline.resize_to((8, 8)),
                overwrite=True)
    return {"onnx": onnx_seeds, "tflite": tflite_seeds,
            "manifest": [(folder / "deploykit.json").read_bytes()],
            "pipeline": [(folder / "pipeline.json").read_bytes()]}


def attempt(kind: str, data: bytes) -> str:
    import deploykit as dk
    from deploykit.bundle.manifest import parse
    from deploykit.synth import synthesize
    try:
        if kind == "manifest":
            parse(data, "fuzz")
        elif kind == "pipeline":
            dk.preprocess.Pipeline.from_json(data)
        else:
            with dk.load(data, check=True) as engine:
                engine.run(synthesize(engine.inputs, batch=1, seed=0).feeds)
        return "ok"
    except dk.DeployKitError as e:
        return f"error:{type(e).__name__}"
    except Exception as e:
        return f"raw:{type(e).__name__}: {str(e)[:200]}"


def inputs(seed: int, count: int) -> Iterator[tuple[int, str, bytes]]:
    """The campaign's inputs for ``seed``, in order: (index, kind, bytes) — deterministic, so that a
    finding's (seed, index) reproduces it."""
    from tests.fuzz.corpus import _mutants
    seeds = _seeds()
    rng = random.Random(seed)
    kinds = [k for k in KINDS if seeds[k]]
    for index in range(count):
        kind = kinds[index % len(kinds)]
        source = rng.choice(seeds[kind])
        _, data = list(_mutants(source, rng, 5))[rng.randrange(5)]  # one of the five kinds of mutation
        yield index, kind, data


def worker(seed: int, count: int) -> int:
    """Run ``count`` inputs from ``seed``; one JSON line per input (index first, so a crash names it)."""
    import logging
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    for index, kind, data in inputs(seed, count):
        print(json.dumps({"i": index, "kind": kind}), flush=True)
        print(json.dumps({"i": index, "outcome": attempt(kind, data)}), flush=True)
    return 0


def _chunk(seed: int, count: int, findings: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ORT_LOGGING_LEVEL": "3", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "tests.fuzz.campaign", "--worker", str(seed), str(count)],
                          capture_output=True, text=True, env=env, timeout=3600, check=False)
    outcomes: Counter[str] = Counter()
    raw, last, kind = [], -1, ""
    for line in done.stdout.splitlines():
        if not line.startswith('{"i"'):  # a runtime's own prints (ONNX Runtime's "EP Error ...")
            continue
        entry = json.loads(line)
        if "outcome" in entry:
            outcome = entry["outcome"]
            outcomes[outcome.split(":")[0] if outcome.startswith("raw") else outcome] += 1
            if outcome.startswith("raw"):
                raw.append({"seed": seed, "i": entry["i"], "outcome": outcome})
        else:
            last, kind = entry["i"], entry["kind"]
    crash = None
    if done.returncode != 0:
        crash = {"seed": seed, "i": last, "kind": kind, "exit": done.returncode, "stderr": done.stderr[-500:]}
        findings.mkdir(exist_ok=True)
        (findings / f"crash-{seed}-{last}.json").write_text(json.dumps(crash))
        outcomes["crash"] += 1
    return {"outcomes": outcomes, "raw": raw, "crash": crash}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", nargs=2, type=int, metavar=("SEED", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path("fuzz-results.json"))
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)
    os.environ.setdefault("DEPLOYKIT_CACHE_DIR", str(Path.home() / ".cache" / "deploykit"))
    _seeds()  # fetch and pack once, before the workers
    start = time.perf_counter()
    chunks = [(seed, min(args.chunk, args.count - seed * args.chunk))
              for seed in range((args.count + args.chunk - 1) // args.chunk)]
    findings = Path("fuzz-findings")
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda c: _chunk(c[0], c[1], findings), chunks))
    total: Counter[str] = Counter()
    for r in results:
        total.update(r["outcomes"])
    summary = {"inputs": sum(total.values()), "seconds": round(time.perf_counter() - start, 1),
               "outcomes": dict(total.most_common()), "raw": [x for r in results for x in r["raw"]][:50],
               "crashes": [r["crash"] for r in results if r["crash"]]}
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 1 if summary["raw"] or summary["crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
