"""The ``deploykit`` command: ``demo``, ``info MODEL``, ``run MODEL``, ``backends``.

Bad arguments and bad models end in one line on stderr and exit code 2, never a traceback;
a runtime failure while running a valid model exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .errors import BackendError, DeployKitError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="deploykit", description="Run trained models fast and safely.")
    parser.add_argument("--version", action="version", version=f"deploykit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser("demo", help="classify held-out digits with the bundled model")
    demo.add_argument("--seconds", type=float, default=0.3,
                      help="timing budget per measurement (default 0.3)")

    info = sub.add_parser("info", help="I/O signature, opset, size and sha256 of a model")
    info.add_argument("model")
    info.add_argument("--json", action="store_true", help="print JSON")

    run = sub.add_parser("run", help="run a model on .npy/.npz inputs")
    run.add_argument("model")
    run.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                     help="an input (repeat per input); FILE.npy alone for a one-input model, "
                          "FILE.npz for arrays named after the inputs")
    run.add_argument("--backend", "-b", default="auto")
    run.add_argument("--threads", type=int, default=None)
    run.add_argument("--output", "-o", type=Path, help="write the outputs to this .npz")

    sub.add_parser("backends", help="which backends are usable here, and why not")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        command = {"demo": _demo, "info": _info, "run": _run, "backends": _backends}
        return command[args.command](args)
    except BackendError as e:
        print(f"deploykit: error: {e}", file=sys.stderr)
        return 1
    except (DeployKitError, OSError, ValueError, TypeError) as e:
        print(f"deploykit: error: {e}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if args.seconds <= 0:
        raise ValueError(f"--seconds must be > 0, got {args.seconds}")
    print(run_demo(min_seconds=args.seconds).format())
    return 0


def _info(args: argparse.Namespace) -> int:
    from .model import onnx_io_specs, open_model
    from .spec import dtype_name

    source = open_model(args.model, check=False)
    data: dict[str, Any] = {"path": source.label, "format": source.format,
                            "size_bytes": source.size, "sha256": source.sha256()}
    if source.format == "onnx":
        proto = source.proto
        inputs, outputs = onnx_io_specs(proto)
        data.update(
            ir_version=proto.ir_version,
            opsets={(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
            producer=f"{proto.producer_name} {proto.producer_version}".strip(),
            nodes=len(proto.graph.node),
            inputs=[{"name": s.name, "dtype": dtype_name(s.dtype), "shape": s.shape}
                    for s in inputs],
            outputs=[{"name": s.name, "dtype": dtype_name(s.dtype), "shape": s.shape}
                     for s in outputs],
        )
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for key, value in data.items():
        if key in ("inputs", "outputs"):
            for t in value:
                shape = "[...]" if t["shape"] is None else \
                    "[" + ",".join("?" if d is None else str(d) for d in t["shape"]) + "]"
                print(f"{key[:-1]:<11} {t['name']}: {t['dtype']}{shape}")
        elif key == "opsets":
            print(f"{key:<11} " + ", ".join(f"{k} {v}" for k, v in value.items()))
        else:
            print(f"{key:<11} {value}")
    return 0


def _read_inputs(specs: list[str], input_names: list[str]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep:
            name, file = "", spec
        path = Path(file)
        if not path.is_file():
            raise ValueError(f"--input {spec}: no such file {file!r}")
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                feeds.update({k: z[k] for k in z.files})
            continue
        array = np.load(path, allow_pickle=False)
        if not name:
            if len(input_names) != 1:
                raise ValueError(f"--input {spec}: the model has inputs {input_names}; "
                                 "write NAME=FILE.npy")
            name = input_names[0]
        feeds[name] = array
    return feeds


def _run(args: argparse.Namespace) -> int:
    from .engine import load

    with load(args.model, backend=args.backend, threads=args.threads) as engine:
        feeds = _read_inputs(args.input, [s.name for s in engine.inputs])
        outputs = engine.run(feeds)
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


def _backends(args: argparse.Namespace) -> int:
    from .backends import available_backends

    for name, status in available_backends().items():
        state = f"yes ({status.version})" if status.available else f"no: {status.reason}"
        print(f"{name:<14}{'/'.join(status.formats):<10}{state}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
