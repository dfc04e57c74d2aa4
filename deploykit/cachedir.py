"""deploykit's cache folder, shared by everything that keeps files between runs: tuning decisions
(``tune/``), TensorRT engines (``tensorrt/``), unpacked bundles (``bundles/``), the onnx2tf environment
(``onnx2tf/``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import settings

#: Environment variable naming deploykit's cache folder.
ENV_CACHE_DIR = "DEPLOYKIT_CACHE_DIR"


def cache_dir() -> Path:
    """deploykit's cache folder: ``$DEPLOYKIT_CACHE_DIR``, else platformdirs' user cache dir, else
    the platform's convention (XDG on Linux, ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows)."""
    env = settings.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:
        pass
    else:
        return Path(platformdirs.user_cache_dir("deploykit", appauthor=False))
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "deploykit" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "deploykit"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else home / ".cache") / "deploykit"


__all__ = ["ENV_CACHE_DIR", "cache_dir"]
