"""What ``import deploykit`` costs next to ``import numpy`` (issue 11's target: <= 1.5x), and what the
first use of the heavier names adds. Fresh interpreters, alternating rounds, medians.

    python benchmarks/import_time.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python (nothing)": "pass",
    "import numpy": "import numpy",
    "import deploykit": "import deploykit",
    "import deploykit; dk.load": "import deploykit as dk; dk.load",
    "... + dk.bench, dk.tune, dk.compare": "import deploykit as dk; dk.load; dk.bench; dk.tune; dk.compare",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {k: [] for k in CASES}
    for r in range(args.rounds):
        order = list(CASES.items())
        order = order[r % len(order):] + order[:r % len(order)]  # rotate: load bursts hit every case
        for label, code in order:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            samples[label].append(time.perf_counter() - start)
    base = statistics.median(samples["python (nothing)"])
    numpy = statistics.median(samples["import numpy"]) - base
    print(f"{'case':<40}{'median ms':>10}{'minus python':>14}{'x numpy':>9}")
    for label, xs in samples.items():
        m = statistics.median(xs)
        ratio = "" if label == "python (nothing)" else f"{(m - base) / numpy:.2f}"
        print(f"{label:<40}{m * 1e3:>10.1f}{(m - base) * 1e3:>14.1f}{ratio:>9}")


if __name__ == "__main__":
    main()
