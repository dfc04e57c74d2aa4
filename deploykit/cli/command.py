"""What a command is: a name, a line of help, how it adds its arguments, and what it runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NamedTuple


class Command(NamedTuple):
    """One ``deploykit`` command. ``run`` returns the exit code; bad arguments and bad models raise
    (``main`` turns the error into one line and exit code 2, a runtime failure into 1)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


__all__ = ["Command"]
