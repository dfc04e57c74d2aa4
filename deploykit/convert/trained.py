"""Trained models read back from the files their frameworks save, for ``deploykit export``: a Keras
``.keras`` file (``safe_mode``: no code inside is run), a ``torch.export`` program (``.pt2``), and
scikit-learn pickles (``.pkl``/``.pickle``/``.joblib``) — only when the caller says they trust the file,
because unpickling runs whatever code the file names."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable, InvalidArgument, ModelLoadError, require


def _keras(path: Path) -> Any:
    keras = require("keras", f"reading {path.name} needs Keras 3 (pip install keras, and a backend: "
                             f"torch, tensorflow or jax)")
    return keras.saving.load_model(str(path), safe_mode=True)


def _torch_program(path: Path) -> Any:
    torch = require("torch", f"reading {path.name} needs torch: pip install 'deploykit[torch]'")
    return torch.export.load(str(path)).module()


def _pickle(path: Path) -> Any:
    with open(path, "rb") as handle:
        return pickle.load(handle)


def _joblib(path: Path) -> Any:
    joblib = require("joblib", f"reading {path.name} needs joblib (scikit-learn installs it)")
    return joblib.load(path)


#: file suffix -> (reader, whether reading it runs code stored in the file)
READERS: dict[str, tuple[Callable[[Path], Any], bool]] = {
    ".keras": (_keras, False),
    ".pt2": (_torch_program, True),  # torch.export.load falls back to full unpickling of its weights
    ".pkl": (_pickle, True),
    ".pickle": (_pickle, True),
    ".joblib": (_joblib, True),
}


def load_trained(path: str | Path, *, trust_pickle: bool = False) -> Any:
    """The trained model saved at ``path``, by its suffix (``READERS``)."""
    file = Path(path)
    if file.suffix.lower() not in READERS:
        raise InvalidArgument(f"{file.name}: deploykit export reads {', '.join(READERS)} files; got "
                              f"{file.suffix or 'no suffix'}")
    if not file.is_file():
        raise InvalidArgument(f"model: no file at {file}")
    reader, runs_code = READERS[file.suffix.lower()]
    if runs_code and not trust_pickle:
        raise InvalidArgument(f"{file.name} holds pickled data: loading it can run any code stored in it. "
                              "Pass --trust-pickle (trust_pickle=True) only for a file you made or trust")
    try:
        return reader(file)
    except (BackendUnavailable, InvalidArgument):
        raise
    except Exception as e:
        raise ModelLoadError(f"cannot read {file.name} as a {file.suffix} model: {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300] if str(e) else ''}") from e


__all__ = ["READERS", "load_trained"]
