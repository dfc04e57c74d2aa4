"""What several commands share: the parser class, option groups (``--input``, ``--shape/--dim/
--range``, ``--threads``, ``--no-progress``), reading ``.npy``/``.npz`` inputs, checking output
paths up front, and the library's wording turned into the command line's (``shapes=`` -> ``--shape``)."""

from __future__ import annotations

import argparse
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from ..benchmark.output import output_path
from ..errors import InvalidArgument, first_line
from ..model import describe_content, sniff_format


class Parser(argparse.ArgumentParser):
    """argparse, with the error line saying where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- --input -----------------------------------------------------------------------------------
def add_input_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy", help=help)


INPUT_HELP = ("an input (repeat per input); FILE.npy alone for a one-input model, FILE.npz for arrays "
              "named after the inputs")
REAL_INPUT_HELP = "real inputs (as for 'run'); without them inputs are made up"


def read_inputs(items: Sequence[str], input_names: Sequence[str] | None = None
                ) -> dict[str, np.ndarray] | np.ndarray | None:
    """``--input`` values -> feeds: ``NAME=FILE.npy``, ``FILE.npz`` (arrays named after the inputs),
    or one bare ``FILE.npy`` alone, the model's one input (named from ``input_names``; returned as a
    bare array when they are not known yet). An input given twice is refused. None: no ``--input``."""
    if not items:
        return None
    bare = [s for s in items if "=" not in s and not s.endswith(".npz")]
    if bare and len(items) > 1:
        raise InvalidArgument(f"--input {bare[0]}: a bare FILE.npy works alone (one-input model); "
                              "with several inputs write NAME=FILE.npy")
    if bare:
        array = _load(bare[0], bare[0])
        if input_names is None:
            return array
        if len(input_names) != 1:
            raise InvalidArgument(f"--input {bare[0]}: the model has inputs {list(input_names)}; "
                                  "write NAME=FILE.npy")
        return {input_names[0]: array}
    feeds: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep:
            arrays = _load_npz(item)
        elif not name or not file:
            raise InvalidArgument(f"--input {item!r}: expected NAME=FILE.npy or FILE.npz")
        else:
            arrays = {name: _load(item, file)}
        for key, value in arrays.items():
            if key in feeds:
                raise InvalidArgument(f"--input {item}: input {key!r} is already given by --input "
                                      f"{origin[key]}; give each input once")
            feeds[key], origin[key] = value, item
    return feeds


def _not_arrays(path: Path, error: BaseException) -> str:
    """Why numpy could not read ``path``: what the file is, or numpy's reason for a damaged .npy/.npz."""
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith((NPY_MAGIC, NPZ_MAGIC)):
        return f"is a damaged .npy/.npz file ({first_line(error)})"
    if not head:
        return "is empty (0 bytes); save arrays with numpy.save or numpy.savez"
    fmt = sniff_format(head)
    what = f"an {fmt.upper()} model" if fmt == "onnx" else "a TFLite model" if fmt else describe_content(head)
    return f"is not a .npy/.npz file: it looks like {what}; save arrays with numpy.save or numpy.savez"


def _load_npz(file: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, by name; a member numpy cannot read is named."""
    with _NpyFile(file, file) as z:
        if isinstance(z, np.ndarray):
            raise InvalidArgument(f"--input {file}: {file!r} is a single .npy array; give it as "
                                  "NAME=FILE.npy")
        arrays: dict[str, np.ndarray] = {}
        for key in z.files:
            try:
                arrays[key] = z[key]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise InvalidArgument(f"--input {file}: array {key!r} of {file!r} cannot be read "
                                      f"({first_line(e)})") from e
        return arrays


def _load(item: str, file: str) -> np.ndarray:
    with _NpyFile(item, file) as value:
        if not isinstance(value, np.ndarray):
            raise InvalidArgument(f"--input {item}: {file!r} is an .npz archive; give it without NAME=")
        return value


#: How a .npy file and a .npz archive (a ZIP) begin.
NPY_MAGIC, NPZ_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


class _NpyFile:
    """``np.load`` of a file named by ``--input``, every failure one line naming the file."""

    def __init__(self, item: str, file: str) -> None:
        self.item, self.file = item, file
        self.value: Any = None

    def __enter__(self) -> Any:
        path = Path(self.file)
        if not path.is_file():
            raise InvalidArgument(f"--input {self.item}: no such file {self.file!r}")
        try:
            self.value = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise InvalidArgument(f"--input {self.item}: {self.file!r} {_not_arrays(path, e)}") from e
        return self.value

    def __exit__(self, *exc: object) -> None:
        close = getattr(self.value, "close", None)
        if close is not None:
            close()


# -- made-up inputs: --shape, --dim, --range ---------------------------------------------------
def add_made_up_options(parser: argparse.ArgumentParser, *, ranges: bool) -> None:
    parser.add_argument("--shape", action="append", default=[], metavar="NAME=1x3x320x480",
                        help="shape of a made-up input")
    parser.add_argument("--dim", action="append", default=[], metavar="SYMBOL=N",
                        help="size of a named dynamic dimension of made-up inputs")
    if ranges:
        parser.add_argument("--range", action="append", default=[], metavar="NAME=LOW:HIGH",
                            help="value range of a made-up input (high exclusive for ints), or NAME=VALUE")


@dataclass(frozen=True)
class MadeUp:
    """``--shape``/``--dim``/``--range`` parsed: the library's ``shapes``, ``dims``, ``value_ranges``."""

    shapes: dict[str, list[int]] | None
    dims: dict[str, int] | None
    value_ranges: dict[str, Any] | None


def made_up(args: argparse.Namespace) -> MadeUp:
    shapes = _named(args.shape, "--shape", "NAME=1x3x224x224", lambda v: ints("--shape", v, "x"))
    dims = _named(args.dim, "--dim", "SYMBOL=N", lambda v: _one_int("--dim", v))
    ranges = _named(getattr(args, "range", []), "--range", "NAME=LOW:HIGH or NAME=VALUE", _value_range)
    return MadeUp(shapes or None, dims or None, ranges or None)


def _named(items: Sequence[str], flag: str, form: str, parse: Callable[[str], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, value = pair(flag, item, form)
        if name in out:
            raise InvalidArgument(f"{flag} {item!r}: {name!r} is given twice; give it once")
        out[name] = parse(value)
    return out


def pair(flag: str, text: str, form: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise InvalidArgument(f"{flag} {text!r}: expected {form}")
    return name, value


def ints(flag: str, text: str, sep: str = ",") -> list[int]:
    try:
        return [int(v) for v in text.split(sep)]
    except ValueError:
        raise InvalidArgument(f"{flag} {text!r}: expected integers separated by {sep!r}") from None


def _one_int(flag: str, text: str) -> int:
    values = ints(flag, text)
    if len(values) != 1:
        raise InvalidArgument(f"{flag} {text!r}: expected one integer")
    return values[0]


def _value_range(text: str) -> Any:
    low, sep, high = text.partition(":")
    return (number(low), number(high)) if sep else number(text)


def number(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise InvalidArgument(f"--range: {text!r} is not a number") from None


# -- threads, progress and outputs -------------------------------------------------------------
def add_threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads per engine (default: the CPUs this process may use)")


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def check_writable(path: Path | None, flag: str) -> None:
    """Refuse, before any work, an output path that cannot be written (folder missing or read-only,
    or the path is a folder)."""
    if path is not None:
        output_path(path, flag)


# -- the library's words in the command line's -------------------------------------------------
def _shape_flag(m: re.Match[str]) -> str:
    """``shapes={'x': (1, 3)}`` or ``shapes['x']: (1, 3)`` -> ``--shape x=1x3``."""
    return f"--shape {m[1]}={'x'.join(d.strip() for d in m[2].split(',') if d.strip())}"


Replacement = str | Callable[[re.Match[str]], str]
#: Library keywords and the flags that set them (``batch_sizes`` -> ``--batch``).
_FLAGS: dict[str, str] = {
    "duration": "--duration", "iterations": "--iterations", "min_samples": "--min-samples",
    "warmup": "--warmup", "concurrency": "--concurrency", "threads": "--threads", "min_seconds": "--seconds",
    "batch_sizes": "--batch", "backends": "--backend", "seconds": "--seconds", "reference": "--reference",
    "shapes": "--shape", "dims": "--dim", "value_ranges": "--range", "inputs": "--input"}
_RULES: list[tuple[str, Replacement]] = [
    # examples in the library's syntax, rewritten in the flag's
    (r"\bshapes=\{'([^']*)': \(([^)]*)\)\}", _shape_flag),
    (r"\bdims=\{'([^']*)': ([^}]*)\}", r"--dim \1=\2"),
    (r"\bvalue_ranges=\{'([^']*)': \(([^,]*), ([^)]*)\)\}", r"--range \1=\2:\3"),
    (r"\binputs=\.\.\.", "--input NAME=FILE.npy"),
    (r"\bbatch_sizes \[([^\]]*)\]", lambda m: f"--batch {m[1].replace(' ', '')}"),
    (r"\bgive duration or iterations\b", "give --duration or --iterations"),
    # an entry of a dict argument (synth.check_made_up's messages): shapes['x'] -> --shape x
    (r"\bshapes\['([^']*)'\]: \(([^)]*)\)", _shape_flag),
    (r"\bshapes\['([^']*)'\] must be a sequence of ints >= 1, e\.g\. \(1, 3, 224, 224\), got "
     r"[\[(]([^\])]*)[\])]", lambda m: f"{_shape_flag(m)}: every size must be an int >= 1"),
    (r"\bdims\['([^']*)'\] must be an int >= 1, got (\S+)", r"--dim \1=\2: the size must be an int >= 1"),
    (r"\bvalue_ranges\['([^']*)'\]: range \(([^,]*), ([^)]*)\)", r"--range \1=\2:\3"),
    (r"\bvalue_ranges\['([^']*)'\] must be \(low, high\) or one number, got \(([^,]*), ([^)]*)\)",
     r"--range \1=\2:\3: LOW and HIGH must be finite numbers"),
    (r"\bvalue_ranges\['([^']*)'\] must be \(low, high\) or one number, got (\S+)",
     r"--range \1=\2: the value must be a finite number"),
    (r"\bgive \(low, high\) with high > low\b", "give LOW:HIGH with HIGH > LOW"),
    (r"\ba \(low, high\) range\b", "a LOW:HIGH range"),
    (r"\bdo not give it in dims\b", "do not give it with --dim"),
    (r"\bvalue_ranges\['([^']*)'\](: input .*?)\(([-+\w.]+), ([-+\w.]+)\)", r"--range \1\2\3:\4"),
    *((rf"\b{key}\['([^']*)'\]", rf"{flag} \1") for key, flag in
      (("shapes", "--shape"), ("dims", "--dim"), ("value_ranges", "--range"))),
    (r"\bshapes, dims and value_ranges\b", "--shape, --dim and --range"),
    (r"\ba bare array was given\b", "a bare FILE.npy was given"),
    (r"\bpass a dict name -> array\b", "give each as --input NAME=FILE.npy"),
    (r"\bor None for the (\d+) CPUs\b", r"or leave --threads out for the \1 CPUs"),
    # key=value -> --flag=value; a bare key= -> --flag
    *((rf"(?<!-)\b{key}=(?=[\w.'\"\[-])", f"{flag}=") for key, flag in _FLAGS.items()),
    *((rf"(?<!-)\b{key}=", flag) for key, flag in _FLAGS.items()),
    # the argument named at the head of a clause ("duration must be ...", "dims names ...")
    *((rf"(^|(?<=[;(:] ))\b{key}(?= must be|\[| names| is )", flag) for key, flag in _FLAGS.items()),
    # keywords that are never English words
    *((rf"\b{key}\b", _FLAGS[key]) for key in ("min_samples", "batch_sizes", "value_ranges")),
    # "None" is a Python value: on the command line, a flag left out
    (r"(--[\w-]+) must be ([^()]*?) \(or None(?=[:)])", r"\1 must be \2 (or leave \1 out"),
]
#: (pattern, replacement) in order: Python keyword arguments in library messages -> CLI flags.
WORDING: tuple[tuple[re.Pattern[str], Replacement], ...] = tuple((re.compile(p), r) for p, r in _RULES)


def cli_wording(message: str) -> str:
    """A library message with its keyword arguments named as this command line's flags."""
    for pattern, replacement in WORDING:
        message = pattern.sub(replacement, message)
    return message


__all__ = ["INPUT_HELP", "REAL_INPUT_HELP", "WORDING", "MadeUp", "Parser", "add_input_option",
           "add_made_up_options", "add_progress_option", "add_threads_option", "check_writable",
           "cli_wording", "ints", "made_up", "number", "pair", "read_inputs"]
