"""``main``: one parser built from the table of commands, one dispatch, one way to fail.

Bad arguments, models and paths (a ``DeployKitError`` or an ``OSError``) end in one line on stderr,
``deploykit <command>: error: ...``, and exit code 2, never a traceback; a runtime failure while
running a valid model (``BackendError``) exits 1. Any other exception is a bug in deploykit: it
propagates with its traceback (exit code 1), so that it is seen and reported, not mistaken for a
user's error. Warnings
deploykit gives show as ``deploykit <command>: warning: ...``. Library messages name the command
line's flags (``--shape``), not Python keywords (``shapes=``). A closed stdout (``| head``) ends
the command quietly.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from ..errors import BackendError, DeployKitError, DeployKitWarning, InvalidArgument
from ..version import __version__
from . import (
    backends,
    bench,
    build,
    bundle,
    convert,
    demo,
    export,
    info,
    probe,
    prune,
    quantize,
    run,
    serve,
    tune,
)
from .command import Command
from .options import Parser, cli_wording

#: Every command, in the order ``deploykit --help`` lists them. Add a command here (a module with a
#: ``COMMAND``) and nowhere else.
COMMANDS: tuple[Command, ...] = (demo.COMMAND, info.COMMAND, run.COMMAND, bench.COMMAND,
                                 backends.COMMAND, probe.COMMAND, tune.COMMAND, export.COMMAND,
                                 convert.COMMAND, quantize.COMMAND, prune.COMMAND, bundle.PACK,
                                 bundle.INSPECT, bundle.SIGN, build.COMMAND, serve.COMMAND)


def build_parser() -> Parser:
    return _parsers()[0]


def _parsers() -> tuple[Parser, dict[str, Parser]]:
    """The top parser and each command's, by name (a command's own errors name the command)."""
    parser = Parser(prog="deploykit", description="Run trained models fast and safely.")
    parser.add_argument("--version", action="version", version=f"deploykit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    commands: dict[str, Parser] = {}
    for command in COMMANDS:
        commands[command.name] = sub.add_parser(command.name, help=command.help)
        command.add_arguments(commands[command.name])
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    """The ``deploykit`` command; returns the exit code. ``argv``: the arguments after the program
    name, as a list of strings (default: ``sys.argv[1:]``)."""
    if argv is not None and (isinstance(argv, (str, bytes)) or not all(isinstance(a, str) for a in argv)):
        raise InvalidArgument(f"argv must be a list of strings (the arguments after 'deploykit'), "
                              f"got {argv!r}")
    parser, commands = _parsers()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's parser: "deploykit run: error: ..." and its --help
        commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    prog = f"deploykit {args.command}"
    command = next(c for c in COMMANDS if c.name == args.command)
    try:
        with _warnings_shown(prog):
            code = command.run(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # the reader left (``| head``): stop quietly, as the Python docs advise
        _stdout_to_devnull()
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BackendError as e:
        _error(prog, e)
        return 1
    except (DeployKitError, OSError) as e:  # bad arguments, models and paths; anything else is a bug
        _error(prog, e)
        return 2


def _error(prog: str, e: BaseException) -> None:
    print(f"{prog}: error: {cli_wording(str(e))}", file=sys.stderr)


@contextmanager
def _warnings_shown(prog: str) -> Iterator[None]:
    """deploykit's warnings (and resource warnings, e.g. threads over the CPUs) as one line each."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        print(f"{prog}: warning: {cli_wording(str(message))}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("default", DeployKitWarning)
        warnings.simplefilter("default", ResourceWarning)
        warnings.showwarning = show
        yield


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is no file (replaced, or captured)
        pass


__all__ = ["COMMANDS", "build_parser", "main"]
