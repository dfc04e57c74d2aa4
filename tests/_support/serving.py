"""What the serving tests share: one plain-HTTP request, a digits repository, an ASGI app on uvicorn
in a thread, this process's memory."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
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


class Running:
    """An ASGI app on uvicorn in a thread of this process, on a free loopback port."""

    def __init__(self, app: Any, root_path: str = "") -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        import uvicorn  # the serve extra's; only the tests that run an app on uvicorn need it

        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                root_path=root_path)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


def rss() -> int:
    """This process's resident memory in bytes (the servers under test run in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


__all__ = ["Running", "call", "digits_repository", "rss"]
