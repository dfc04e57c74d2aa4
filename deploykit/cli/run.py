"""``deploykit run MODEL -i NAME=FILE.npy``: run a model once and show (or save) its outputs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..loading import load
from .command import Command
from .options import INPUT_HELP, add_input_option, add_threads_option, check_writable, read_inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model")
    add_input_option(parser, INPUT_HELP)
    parser.add_argument("--backend", "-b", default="auto")
    add_threads_option(parser)
    parser.add_argument("--output", "-o", type=Path, help="write the outputs to this .npz")


def run(args: argparse.Namespace) -> int:
    check_writable(args.output, "--output")
    feeds = read_inputs(args.input)  # before loading: a bad file fails first (a bare array is the one input)
    with load(args.model, backend=args.backend, threads=args.threads) as engine:
        outputs = engine.run({} if feeds is None else feeds)
        print(f"ran {engine.source.label} on {engine.backend} ({engine.device})")
        for name, value in outputs.items():
            arr = np.asarray(value)
            stats = ""
            if arr.size and arr.dtype.kind in "biuf":
                stats = f" min={arr.min():.6g} max={arr.max():.6g} mean={arr.mean():.6g}"
            print(f"  {name}: {arr.dtype}{list(arr.shape)}{stats}")
        if args.output:
            arrays: dict[str, Any] = {k: np.asarray(v) for k, v in outputs.items()}
            np.savez(args.output, **arrays)
            print(f"wrote {args.output}")
    return 0


COMMAND = Command("run", "run a model on .npy/.npz inputs", add_arguments, run)
