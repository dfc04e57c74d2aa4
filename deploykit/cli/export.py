"""``deploykit export MODEL -i SAMPLES.npy -o OUT.onnx``: a saved trained model (.keras, .pt2, or a
scikit-learn pickle behind --trust-pickle) to ONNX, checked against the original on the samples."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InvalidArgument
from .command import Command
from .options import add_input_option, read_inputs
from .quantize import add_report_options, check_outputs, show


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the trained model: a .keras file, a torch.export .pt2 program, or a "
                                      "scikit-learn .pkl/.joblib (with --trust-pickle)")
    add_input_option(parser, "samples the export is checked on, the first axis counting them; FILE.npz "
                             "for several inputs (in the file's order)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="where the .onnx file is written")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="read a pickle (.pkl/.joblib): loading one runs code stored in it, so only for "
                             "a file you made or trust")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest difference allowed between the original and the ONNX model "
                             "(default 1e-4)")
    parser.add_argument("--min-agreement", type=float, default=1.0,
                        help="scikit-learn: the fraction of labels that must agree (default 1.0)")
    parser.add_argument("--opset", type=int, default=None, help="the ONNX opset (default: the exporter's)")
    add_report_options(parser, accept_mismatch=True)


def run(args: argparse.Namespace) -> int:
    from ..convert.export import export
    from ..convert.trained import load_trained

    check_outputs(args)
    feeds = read_inputs(args.input)
    if feeds is None:
        raise InvalidArgument("--input: give the samples the export is checked on (FILE.npy, or FILE.npz "
                              "for several inputs)")
    samples = feeds if not isinstance(feeds, dict) else \
        next(iter(feeds.values())) if len(feeds) == 1 else tuple(feeds.values())
    model = load_trained(args.model, trust_pickle=args.trust_pickle)
    return show(export(model, samples, args.output, target_opset=args.opset, atol=args.atol,
                       min_agreement=args.min_agreement, accept_mismatch=args.accept_mismatch), args)


COMMAND = Command("export",
                  "a saved trained model (.keras, .pt2, scikit-learn pickle) to a checked ONNX file",
                  add_arguments, run)
