"""``deploykit tune MODEL...``: time the backends that can run a model here (or several artifacts of
one), keep the fastest that agrees; the decision is cached (``dk.tune`` on the command line)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..artifacts import is_several, read_manifest
from ..model import onnx_io_specs, open_model
from ..plan import Plan
from ..spec import TensorSpec
from ..synth import check_made_up
from ..tuning import DEFAULT_SECONDS, tune
from .command import Command
from .options import (
    REAL_INPUT_HELP,
    MadeUp,
    add_input_option,
    add_made_up_options,
    add_progress_option,
    add_threads_option,
    made_up,
    read_inputs,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="+", help="a model, several artifacts of one model, or a manifest")
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"timing budget, all candidates (default {DEFAULT_SECONDS:g})")
    add_input_option(parser, REAL_INPUT_HELP)
    add_made_up_options(parser, ranges=True)
    add_threads_option(parser)
    parser.add_argument("--reference", default=None, help="backend whose outputs are the reference "
                                                          "(default: the rule's first candidate)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    parser.add_argument("--refresh", action="store_true", help="measure again and overwrite the cache")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    add_progress_option(parser)


def run(args: argparse.Namespace) -> int:
    model: Any = args.model[0] if len(args.model) == 1 else list(args.model)
    given = made_up(args)
    _check_names(model, given)
    plan = tune(model, inputs=read_inputs(args.input),
                seconds=DEFAULT_SECONDS if args.seconds is None else args.seconds,
                shapes=given.shapes, dims=given.dims, value_ranges=given.value_ranges,
                reference=args.reference, threads=args.threads,
                cache=False if args.no_cache else "refresh" if args.refresh else True,
                progress=False if args.no_progress else None)
    print(json.dumps(plan_dict(plan), indent=2) if args.json else plan.explain())
    return 0


def plan_dict(plan: Plan) -> dict[str, Any]:
    """The plan as JSON data, with ``chosen`` the candidate a load would run: the first ranked one."""
    data = plan.to_dict()
    if data.get("chosen") is None and plan.candidates:
        data["chosen"] = plan.candidates[0].to_dict()
    return data


def _check_names(model: Any, given: MadeUp) -> None:
    """``--shape``/``--dim``/``--range`` must name inputs and dimensions the model has and fit them
    (checked here for ONNX artifacts, whose specs are read without loading a runtime)."""
    if not (given.shapes or given.dims or given.value_ranges):
        return
    paths = model if isinstance(model, list) else read_manifest(model) if is_several(model) else [model]
    specs: list[TensorSpec] = []
    for path in paths:
        source = open_model(path, check=False)
        if source.format != "onnx":
            return  # the runtime reads these specs; tune itself checks what it can
        specs += onnx_io_specs(source.proto)[0]
    check_made_up(specs, given.shapes, given.dims, given.value_ranges)


COMMAND = Command("tune", "time the backends that can run a model here (or several artifacts of one), "
                          "keep the fastest that agrees; cached", add_arguments, run)
