"""``deploykit probe [MODEL]``: this machine's hardware and runtimes; with a model, the plan by rule."""

from __future__ import annotations

import argparse
import json

from ..hardware import probe
from ..model import open_model
from ..selection import make_plan
from .command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="also show the plan by rule for this model")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    report = probe()
    plan = make_plan(open_model(args.model, check=False), report) if args.model else None
    if args.json:
        data = report.to_dict()
        print(json.dumps(data if plan is None else {"hardware": data, "plan": plan.to_dict()}, indent=2))
        return 0
    print(report.format())
    if plan is not None:
        print()
        print(plan.explain())
    return 0


COMMAND = Command("probe", "this machine's hardware and runtimes; with MODEL, the backend 'auto' "
                           "would pick for it and why", add_arguments, run)
