"""Feeds files to deploykit's loaders, one after another in this (child) process, and prints one JSON
line per file: ``{"start": path}`` before (so a crash or a hang names its file) and
``{"file", "outcome"}`` after — ``ok``, ``error:<DeployKitError subclass>``, or ``raw:<type>: <message>``
(a finding: deploykit let another exception through). A model that loads is run once on made-up
inputs too (the runtimes parse lazily).

    python -m tests.fuzz.runner LIST.json        # a JSON list of paths (tests/fuzz/corpus.py writes one)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path

import deploykit as dk
from deploykit.synth import synthesize


def attempt(path: Path) -> str:
    """What deploykit did with the file at ``path``."""
    try:
        if path.suffix == ".json":
            dk.preprocess.Pipeline.load(path)
            return "ok"
        with dk.load(path, check=True) as engine:
            feeds = synthesize(engine.inputs, batch=1, seed=0).feeds
            engine.run(feeds)
        return "ok"
    except dk.DeployKitError as e:
        return f"error:{type(e).__name__}"
    except MemoryError:
        return "raw:MemoryError"
    except Exception as e:  # the finding this runner exists for
        return f"raw:{type(e).__name__}: {str(e)[:300]}"


def main(argv: list[str]) -> int:
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    paths = [Path(p) for p in json.loads(Path(argv[0]).read_text())]
    for path in paths:
        print(json.dumps({"start": str(path)}), flush=True)
        print(json.dumps({"file": str(path), "outcome": attempt(path)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
