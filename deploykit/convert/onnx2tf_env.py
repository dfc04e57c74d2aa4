"""The isolated Python environment onnx2tf runs in: onnx2tf pins numpy 1.26, onnx 1.19, onnxruntime
1.23 and TensorFlow 2.19 (~2.6 GB), which cannot share deploykit's own environment — so it lives in
a virtual environment of its own, made on demand in deploykit's cache folder (or given by the user)
from the package registry only, and is driven as a subprocess.

A finished environment carries a marker file; one without it (an install cut short) is made again.
Two processes asking at once take turns on a lock file instead of installing twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ..cachedir import cache_dir
from ..errors import BackendUnavailable, InvalidArgument

log = logging.getLogger("deploykit.convert")

#: What the environment holds, pinned to the versions this project converts with and tests.
REQUIREMENTS = (
    "onnx2tf==1.29.24", "tensorflow==2.19.0", "tf_keras==2.19.0", "onnx==1.19.1", "onnxruntime==1.23.0",
    "numpy==1.26.4", "protobuf==4.25.5", "onnx-graphsurgeon==0.5.8", "sng4onnx==2.0.1",
    "simple_onnx_processing_tools==1.1.32", "onnxsim==0.4.36", "ai-edge-litert==2.1.0", "psutil",
)
MARKER = ".deploykit-ready"
#: How long an install may take (the download is ~2.6 GB).
INSTALL_TIMEOUT_S = 1800


def default_location() -> Path:
    """``<cache>/onnx2tf/<hash of REQUIREMENTS>``: a change of pins makes a new environment."""
    digest = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()[:12]
    return cache_dir() / "onnx2tf" / digest


def python_of(env: Path) -> Path:
    return env / "bin" / "python"


def onnx2tf_env(env: str | Path | None = None, *, install: bool = True) -> Path:
    """The environment's folder, ready to run onnx2tf: ``env`` as given (never installed into: the
    user's own), else the default location — made there first when absent and ``install``."""
    if env is not None:
        if not isinstance(env, (str, Path)):
            raise InvalidArgument(f"env must be the folder of a Python environment with onnx2tf, got "
                                  f"{type(env).__name__}")
        given = Path(env)
        if not python_of(given).is_file():
            raise InvalidArgument(f"env {given}: no bin/python there (give the folder of a virtual "
                                  f"environment with onnx2tf installed: {' '.join(REQUIREMENTS[:2])} ...)")
        return given
    location = default_location()
    if (location / MARKER).is_file():
        return location
    if not install:
        raise BackendUnavailable(f"the onnx2tf environment is not at {location}; allow deploykit to make it "
                                 "(install=True; ~2.6 GB from the package registry) or pass env= a folder "
                                 f"with {', '.join(REQUIREMENTS[:2])} ...")
    with _locked(location.parent / (location.name + ".lock")):
        if not (location / MARKER).is_file():  # another process may have made it while we waited
            _install(location)
    return location


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install(location: Path) -> None:
    if location.exists():
        log.info("onnx2tf environment at %s was left unfinished; making it again", location)
        shutil.rmtree(location)
    log.info("making the onnx2tf environment at %s (~2.6 GB from the package registry; a few minutes)",
             location)
    start = time.perf_counter()
    steps = [[sys.executable, "-m", "venv", str(location)],
             [str(python_of(location)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              *REQUIREMENTS]]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired as e:
            shutil.rmtree(location, ignore_errors=True)
            raise BackendUnavailable(f"making the onnx2tf environment took over {INSTALL_TIMEOUT_S} s; "
                                     f"removed the partial one at {location}") from e
        if done.returncode:
            shutil.rmtree(location, ignore_errors=True)
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise BackendUnavailable(f"making the onnx2tf environment failed at `{' '.join(step[:4])} ...`:\n"
                                     f"{tail}")
    (location / MARKER).write_text("\n".join(REQUIREMENTS) + "\n")
    log.info("onnx2tf environment ready at %s in %.0f s", location, time.perf_counter() - start)


def main() -> int:
    """``python -m deploykit.convert.onnx2tf_env``: make the default environment now (``make test`` does)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(onnx2tf_env())
    return 0


__all__ = ["MARKER", "REQUIREMENTS", "default_location", "onnx2tf_env", "python_of"]

if __name__ == "__main__":
    raise SystemExit(main())
