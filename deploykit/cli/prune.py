"""``deploykit prune MODEL -i SAMPLES.npy -o OUT.onnx``: structured pruning, gated on this machine."""

from __future__ import annotations

import argparse

from ..errors import InvalidArgument
from .command import Command
from .quantize import add_gate_options, checked_samples, show


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_gate_options(parser, 1.1)
    parser.add_argument("--fractions", default="0.25,0.5,0.75", metavar="SHARE[,SHARE...]",
                        help="shares of each dense chain's hidden units to remove, one candidate each "
                             "(default 0.25,0.5,0.75)")
    parser.add_argument("--magnitude", default="", metavar="SHARE[,SHARE...]",
                        help="also try zeroing these shares of each weight (unstructured: compression only, "
                             "no speed-up; the report gives compressed sizes)")


def run(args: argparse.Namespace) -> int:
    from ..convert.prune import prune

    samples = checked_samples(args)
    fractions = [_share(f, "--fractions") for f in args.fractions.split(",")]
    magnitude = [_share(f, "--magnitude") for f in args.magnitude.split(",") if f.strip()]
    return show(prune(args.model, samples, output=args.output, fractions=fractions, accuracy=args.accuracy,
                      min_speedup=args.min_speedup, threads=args.threads, magnitude=magnitude), args)


def _share(text: str, option: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise InvalidArgument(f"{option}: {text.strip()!r} is not a number (shares like "
                              "0.25,0.5)") from None


COMMAND = Command("prune", "remove hidden units of dense layers, kept only when faster and accurate here",
                  add_arguments, run)
