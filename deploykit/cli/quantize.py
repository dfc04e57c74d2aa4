"""``deploykit quantize MODEL -i SAMPLES.npy -o OUT.onnx``: int8 candidates, gated on this machine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .command import Command
from .options import add_input_option, check_writable, read_inputs


def add_gate_options(parser: argparse.ArgumentParser, min_speedup: float) -> None:
    """What every conversion command takes: the model, samples, output, the gates, a JSON copy."""
    parser.add_argument("model", help="the .onnx model")
    add_input_option(parser, "samples, the first axis counting them (as for 'run'): what candidates are "
                             "calibrated and checked on; without them inputs are made up, with a warning")
    parser.add_argument("--output", "-o", type=Path, required=True,
                        help="where the kept candidate is written (nothing is written when the original "
                             "is kept)")
    parser.add_argument("--min-speedup", type=float, default=min_speedup,
                        help=f"keep a candidate only this many times faster than the original (default "
                             f"{min_speedup:g})")
    parser.add_argument("--accuracy", type=float, default=0.99,
                        help="worst cosine similarity / fraction of equal labels a candidate may reach "
                             "(default 0.99)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads the speed is measured with (default 1)")
    add_report_options(parser)


def add_report_options(parser: argparse.ArgumentParser, *, accept_mismatch: bool = False) -> None:
    """``--json FILE`` (the report as JSON), and for the checked conversions ``--accept-mismatch``."""
    if accept_mismatch:
        parser.add_argument("--accept-mismatch", action="store_true",
                            help="keep the file even when the check fails (the report says FAILED)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the report as JSON")


def check_outputs(args: argparse.Namespace) -> None:
    """``--output`` and ``--json`` writable, checked before any work."""
    check_writable(args.output, "--output")
    check_writable(args.json, "--json")


def checked_samples(args: argparse.Namespace) -> Any:
    """The output paths checked, then the samples read (before any work)."""
    check_outputs(args)
    return read_inputs(args.input)


def show(report: Any, args: argparse.Namespace) -> int:
    print(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gate_options(parser, 1.25)
    parser.add_argument("--candidates", default=None, metavar="NAME[,NAME...]",
                        help="int8-static, int8-static-conv-matmul, int8-dynamic (default: all)")


def run(args: argparse.Namespace) -> int:
    from ..convert.quantize import CANDIDATES, quantize

    samples = checked_samples(args)
    candidates = CANDIDATES if args.candidates is None else [c.strip() for c in args.candidates.split(",")]
    return show(quantize(args.model, samples, output=args.output, accuracy=args.accuracy,
                         min_speedup=args.min_speedup, candidates=candidates, threads=args.threads), args)


COMMAND = Command("quantize", "int8 candidates of an ONNX model, kept only when faster and accurate here",
                  add_arguments, run)
