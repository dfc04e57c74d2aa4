"""Where results are written: a path checked before anything is written (or measured), so that a
missing folder is one ``InvalidArgument`` naming the path, not a raw ``FileNotFoundError``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument


def output_path(path: Any, what: str) -> Path:
    """``path`` as a Path a file can be written to, else ``InvalidArgument`` naming ``what`` (the
    argument or flag) and the path. The folder must exist: it is not created, so that a mistyped
    folder is reported rather than made."""
    if not (isinstance(path, (str, os.PathLike)) and str(path)):
        raise InvalidArgument(f"{what} must be a file path (str or os.PathLike), got {path!r}")
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InvalidArgument(f"{what} {path}: is a folder; give a file path")
    if not folder.is_dir():
        raise InvalidArgument(f"{what} {path}: folder {str(folder)!r} does not exist (create it first)")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidArgument(f"{what} {path}: not writable (permission denied)")
    return path


__all__ = ["output_path"]
