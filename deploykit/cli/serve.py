"""``deploykit serve MODEL_OR_REPOSITORY``: KServe v2 REST on 127.0.0.1:8000 until Ctrl-C."""

from __future__ import annotations

import argparse
import signal

from .command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repository", help="a model file, or a repository folder repo/<model>/<version>/...")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: a free one)")
    parser.add_argument("--repository-api", action="store_true",
                        help="enable the repository endpoints (index, load, unload); off by default")
    parser.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                        help="rescan the repository every SECONDS and swap versions as it changes")
    parser.add_argument("--max-queue", type=int, default=None,
                        help="requests one model version holds at once before 503 (default 64 per instance)")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="seconds to let requests in flight finish on SIGTERM/Ctrl-C (default 30)")


def run(args: argparse.Namespace) -> int:
    from ..serve.server import Server  # the serve extra's own imports happen when the app is made

    server = Server(args.repository, host=args.host, port=args.port, drain_timeout=args.drain_timeout,
                    repository_api=args.repository_api, watch_interval=args.watch, max_queue=args.max_queue)
    signal.signal(signal.SIGTERM, _interrupt)  # an orchestrator's stop: drain as for Ctrl-C
    server.start()
    print(f"deploykit serve: {server.url} (KServe v2 REST; Ctrl-C stops)", flush=True)
    try:
        while not server.wait(0.5):  # short waits: Ctrl-C is seen between them
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


COMMAND = Command("serve", "serve a model or a model repository over KServe v2 REST", add_arguments, run)
