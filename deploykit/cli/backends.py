"""``deploykit backends``: which backends are usable here, and why not."""

from __future__ import annotations

import argparse

from ..backends import available_backends
from .command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    for name, status in available_backends().items():
        state = f"yes ({status.version})" if status.available else f"no: {status.reason}"
        print(f"{name:<14}{'/'.join(status.formats):<10}{state}")
    return 0


COMMAND = Command("backends", "which backends are usable here, and why not", add_arguments, run)
