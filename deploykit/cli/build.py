"""``deploykit build MODEL [--fp16] ...``: build (or find in the cache) the TensorRT engine a later
``dk.load(MODEL, backend="tensorrt", same options)`` will use — so a deployment's first request does
not wait minutes for the build."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import InvalidArgument
from .command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the .onnx model")
    parser.add_argument("--fp16", action="store_true", help="allow float16 kernels")
    parser.add_argument("--int8", action="store_true", help="allow int8 kernels (needs --calibration-cache)")
    parser.add_argument("--calibration-cache", default=None, help="an int8 calibration cache file")
    parser.add_argument("--no-tf32", action="store_true",
                        help="forbid TF32 (on by default on Ampere and newer)")
    parser.add_argument("--workspace-mb", type=int, default=None, help="the builder's scratch memory limit")
    parser.add_argument("--opt-level", type=int, default=3, help="builder optimization level 0-5 (default 3)")
    parser.add_argument("--timing-cache", default=None, help="a timing cache file, reused across builds")
    parser.add_argument("--dim", action="append", default=[], metavar="NAME=MIN,OPT,MAX",
                        help="the range of a symbolic dimension, e.g. seq=1,128,512 (repeat)")
    parser.add_argument("--shape", action="append", default=[], metavar="INPUT=MIN:OPT:MAX",
                        help="an input's shapes, e.g. x=1x3x224x224:8x3x224x224:32x3x224x224 (repeat)")
    parser.add_argument("--rebuild", action="store_true", help="build even when the cache has the engine")
    parser.add_argument("--device-id", type=int, default=0, help="the GPU (default 0)")


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The ``dk.load`` options the flags stand for."""
    options: dict[str, Any] = {"fp16": args.fp16, "int8": args.int8, "tf32": not args.no_tf32,
                               "opt_level": args.opt_level, "device_id": args.device_id,
                               "rebuild": args.rebuild}
    for key, value in (("workspace_mb", args.workspace_mb), ("timing_cache", args.timing_cache),
                       ("calibration_cache", args.calibration_cache)):
        if value is not None:
            options[key] = value
    if args.dim:
        options["dims"] = dict(_dim(item) for item in args.dim)
    if args.shape:
        options["shapes"] = dict(_shape(item) for item in args.shape)
    return options


def _dim(item: str) -> tuple[str, tuple[int, ...]]:
    name, sep, text = item.partition("=")
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if not sep or not name or len(sizes) != 3:
        raise InvalidArgument(f"--dim {item!r}: expected NAME=MIN,OPT,MAX (e.g. seq=1,128,512)")
    return name, sizes


def _shape(item: str) -> tuple[str, list[tuple[int, ...]]]:
    name, sep, text = item.partition("=")
    try:
        shapes = [tuple(int(d) for d in part.split("x")) for part in text.split(":")]
    except ValueError:
        shapes = []
    if not sep or not name or len(shapes) != 3:
        raise InvalidArgument(f"--shape {item!r}: expected INPUT=MIN:OPT:MAX with shapes like 1x3x224x224")
    return name, shapes


def run(args: argparse.Namespace) -> int:
    from ..loading import load

    options = options_of(args)
    with load(args.model, "tensorrt", **options) as engine:
        print(json.dumps(engine.info, indent=2, default=str))
    return 0


COMMAND = Command("build", "build (or find cached) the TensorRT engine of an ONNX model, ahead of serving",
                  add_arguments, run)
