"""Every exception deploykit raises, in one place.

Each class derives from :class:`DeployKitError` *and* the built-in exception a caller would
naturally catch (``ValueError`` for bad input, ``ImportError`` for a missing runtime, ...), so
``except ValueError`` keeps working while ``except dk.DeployKitError`` catches everything ours.
Messages say which tensor/file, what came, what was expected, and what to do.
"""

from __future__ import annotations

from types import ModuleType

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "DeployKitError",
    "DeployKitWarning",
    "EngineClosed",
    "FallbackWarning",
    "InputMismatch",
    "IntegrityError",
    "InvalidArgument",
    "ModelLoadError",
    "ModelNotFound",
    "PreprocessError",
    "SpecNotFound",
    "UnknownBackend",
    "UnknownOption",
]


class DeployKitError(Exception):
    """Root of every error raised by deploykit."""


class InputMismatch(DeployKitError, ValueError):
    """The inputs given to ``Engine.run`` do not fit the model's declared inputs."""


class ModelLoadError(DeployKitError, ValueError):
    """A model artifact could not be read, parsed or loaded by a backend."""


class IntegrityError(ModelLoadError):
    """A bundle's files are not what its manifest (or its signature) says: a changed, missing or
    extra file, a lying size, a path that escapes, an unsigned or wrongly signed bundle."""


class ModelNotFound(ModelLoadError, FileNotFoundError):
    """The model path does not exist (also a ``FileNotFoundError``)."""


class BackendUnavailable(DeployKitError, ImportError):
    """A backend (or an execution provider of it) is not usable on this machine."""


class UnknownBackend(DeployKitError, ValueError):
    """A backend name that deploykit does not know."""


class BackendError(DeployKitError, RuntimeError):
    """The runtime failed while running a model that passed input validation."""


class EngineClosed(DeployKitError, RuntimeError):
    """``run`` was called on an engine after ``close()``."""


class InvalidArgument(DeployKitError, ValueError):
    """An argument value deploykit cannot act on (e.g. ``dk.bench(duration=0)``), refused up front."""


class UnknownOption(InvalidArgument, TypeError):
    """A keyword option no backend (or not the backend named) takes; also a ``TypeError``, as Python
    says of an unexpected keyword argument."""


class PreprocessError(InvalidArgument):
    """An image, size or output buffer the preprocessing core cannot take (an ``InvalidArgument``,
    so also a ``ValueError``)."""


class SpecNotFound(PreprocessError, FileNotFoundError):
    """A preprocessing spec file that does not exist (also a ``FileNotFoundError``)."""


class DeployKitWarning(UserWarning):
    """Root of the warnings deploykit issues (filter them with ``warnings.filterwarnings``)."""


class FallbackWarning(DeployKitWarning):
    """What runs is not what was asked for or would be best: a backend or provider that failed to
    load was replaced by a lower one (``engine.fallback`` says which and why)."""


def first_line(e: BaseException) -> str:
    """The first non-blank line of an exception's message (its type's name when it has none):
    what a runtime's multi-line error contributes to one of ours."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def require(module: str, needs: str) -> ModuleType:
    """``module`` imported, or ``BackendUnavailable`` saying who ``needs`` it and how to install it
    (e.g. "quantize needs onnxruntime: pip install 'deploykit[onnxruntime]'") with the import's own
    error: the one check of every optional dependency."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailable(f"{needs} ({e})") from e


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside deploykit, so that the warning
    points at the user's line (and ``-W`` filters by module work), however deep the call."""
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__))
    level, frame = 2, sys._getframe(1)  # stacklevel 2: the caller of warn()
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    warnings.warn(message, category, stacklevel=level)
