"""``deploykit convert MODEL.onnx -o OUT.tflite``: ONNX to TFLite with onnx2tf (its own environment),
checked against the ONNX model on the samples."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InvalidArgument
from .command import Command
from .options import add_input_option, read_inputs
from .quantize import add_report_options, check_outputs, show


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..convert.tflite import LAYOUTS, PRECISIONS

    parser.add_argument("model", help="the .onnx model")
    add_input_option(parser, "samples as the ONNX model takes them, the first axis counting them: what the "
                             ".tflite is checked (and int8 calibrated) on; without them inputs are made up")
    parser.add_argument("--output", "-o", type=Path, required=True, help="where the .tflite file is written")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="float32",
                        help="float32 (default), float16, dynamic-int8, or int8 (needs --input)")
    parser.add_argument("--layout", choices=list(LAYOUTS), default="nhwc",
                        help="nhwc: channels-last inputs, as TFLite kernels want (default); onnx: as the "
                             "model")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="the fixed batch of the .tflite (default 1)")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                        help="fix an input's symbolic dimensions (repeat per input)")
    parser.add_argument("--accuracy", type=float, default=None,
                        help="worst cosine / fraction equal the reduced precisions must reach (defaults: "
                             "float16 0.999, dynamic-int8 0.99, int8 0.98)")
    parser.add_argument("--env", type=Path, default=None,
                        help="a Python environment with onnx2tf (default: deploykit's own in its cache "
                             "folder)")
    parser.add_argument("--no-install", action="store_true",
                        help="fail instead of making deploykit's onnx2tf environment (~2.6 GB) when absent")
    add_report_options(parser, accept_mismatch=True)


def run(args: argparse.Namespace) -> int:
    from ..convert.tflite import to_tflite

    check_outputs(args)
    shapes = dict(_shape(item) for item in args.input_shape)
    return show(to_tflite(args.model, args.output, samples=read_inputs(args.input), precision=args.precision,
                          layout=args.layout, batch_size=args.batch_size, input_shapes=shapes or None,
                          accuracy=args.accuracy, accept_mismatch=args.accept_mismatch, env=args.env,
                          install=not args.no_install), args)


def _shape(item: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = item.partition("=")
    try:
        sizes = tuple(int(d) for d in dims.split(","))
    except ValueError:
        sizes = ()
    if not sep or not name or not sizes:
        raise InvalidArgument(f"--input-shape {item!r}: expected NAME=D0,D1,... (e.g. x=1,3,224,224)")
    return name, sizes


COMMAND = Command("convert", "an ONNX model to TFLite with onnx2tf, checked against the original",
                  add_arguments, run)
