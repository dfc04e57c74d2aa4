"""``deploykit demo``: classify held-out digits with the bundled model on every backend."""

from __future__ import annotations

import argparse

from ..arguments import check_number
from ..demo import run_demo
from .command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=0.3,
                        help="timing budget per measurement (default 0.3)")


def run(args: argparse.Namespace) -> int:
    check_number(args.seconds, "--seconds", above=0)
    print(run_demo(min_seconds=args.seconds).format())
    return 0


COMMAND = Command("demo", "classify held-out digits with the bundled model", add_arguments, run)
