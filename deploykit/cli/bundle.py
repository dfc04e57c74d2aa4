"""``deploykit pack | inspect | sign``: make a bundle, show one (verified), sign one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InvalidArgument
from .command import Command


def _pack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+",
                        help="the model's artifacts (.onnx, .tflite): formats or precisions of one model")
    parser.add_argument("--output", "-o", type=Path, required=True,
                        help="the bundle: a new folder, or a .zip / .tar / .tar.gz file")
    parser.add_argument("--pipeline", type=Path, default=None, help="the preprocessing spec (Pipeline JSON)")
    parser.add_argument("--labels", type=Path, default=None, help="a text file of labels, one per line")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                        help="metadata (name, version, source_framework, description, or any key); repeat")
    parser.add_argument("--sign-key", type=Path, default=None,
                        help="sign the bundle with this EC private key (PEM; needs deploykit[sign])")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _pack(args: argparse.Namespace) -> int:
    from ..bundle.pack import pack

    meta = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"--meta {item!r}: expected KEY=VALUE")
        meta[key] = value
    print(pack(args.models, args.output, pipeline=args.pipeline, labels=args.labels, metadata=meta,
               sign_key=args.sign_key, overwrite=args.overwrite))
    return 0


def _inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="a bundle folder or archive")
    parser.add_argument("--verify", type=Path, default=None, metavar="PUBLIC_KEY",
                        help="also verify its signature with this public key (PEM)")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")


def _inspect(args: argparse.Namespace) -> int:
    from ..bundle.bundle import open_bundle

    bundle = open_bundle(args.bundle, verify=args.verify)
    print(json.dumps(bundle.manifest.to_dict(), indent=2) if args.json else bundle)
    return 0


def _sign_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="a bundle folder (archives: deploykit pack --sign-key)")
    parser.add_argument("--key", type=Path, required=True, help="the EC private key (PEM)")


def _sign(args: argparse.Namespace) -> int:
    from ..bundle.pack import sign

    print(f"signed: {sign(args.bundle, args.key)}")
    return 0


PACK = Command("pack", "bundle a model's artifacts, preprocessing, labels and metadata, every file digested",
               _pack_arguments, _pack)
INSPECT = Command("inspect", "a bundle's manifest, its files verified (and its signature with --verify)",
                  _inspect_arguments, _inspect)
SIGN = Command("sign", "sign a bundle with an EC private key (OpenSSF model signing)", _sign_arguments, _sign)
