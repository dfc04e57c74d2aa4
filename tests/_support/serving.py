"""What the serving tests share: one plain-HTTP request, a digits repository, this process's memory."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from deploykit.demo import MODEL_PATH


def call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         method: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; an HTTP error status is a result, not an exception."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def digits_repository(root: Path, versions: tuple[int, ...] = (1, 2), config: dict[str, Any] | None = None,
                      ) -> Path:
    """``root/digits/<version>/model.onnx`` (the bundled model each time), with ``config.json``."""
    for version in versions:
        folder = root / "digits" / str(version)
        folder.mkdir(parents=True)
        shutil.copy(MODEL_PATH, folder / "model.onnx")
    if config is not None:
        (root / "digits" / "config.json").write_text(json.dumps(config))
    return root


def rss() -> int:
    """This process's resident memory in bytes (the servers under test run in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


__all__ = ["call", "digits_repository", "rss"]
