"""What dk.probe() costs: a fresh interpreter per sample, so the cache and warm imports do not help.

Each sample runs ``import deploykit`` and then times ``dk.probe()`` (files and folder listings only)
and, separately, the first ``report.backend_facts("onnxruntime")`` (which imports onnxruntime).
The table shows medians and ranges over the samples.

    python benchmarks/probe.py [--samples 15]
Target (issue 7): under 100 ms without GPUs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = """
import json, time
t0 = time.perf_counter()
import deploykit as dk
t1 = time.perf_counter()
r = dk.probe()
t2 = time.perf_counter()
r.backend_facts("onnxruntime")
t3 = time.perf_counter()
print(json.dumps({"import deploykit": t1 - t0, "dk.probe()": t2 - t1, "onnxruntime providers": t3 - t2,
                  "gpus": len(r.gpus), "gpu_probe": r.gpu_probe, "cpu": r.cpu.model}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    rows: list[dict[str, float | str | int]] = []
    for _ in range(args.samples):
        proc = subprocess.run([sys.executable, "-c", SAMPLE], capture_output=True, text=True, cwd=ROOT,
                              timeout=120, check=True)
        rows.append(json.loads(proc.stdout))
    last = rows[-1]
    print(f"{platform.platform()}, Python {platform.python_version()}, {last['cpu']}, "
          f"GPUs: {last['gpus']} ({last['gpu_probe']}); {args.samples} fresh processes")
    print(f"{'step':<24}{'median ms':>10}{'min':>8}{'max':>8}")
    for key in ("import deploykit", "dk.probe()", "onnxruntime providers"):
        ms = [float(r[key]) * 1e3 for r in rows]
        print(f"{key:<24}{statistics.median(ms):>10.1f}{min(ms):>8.1f}{max(ms):>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
