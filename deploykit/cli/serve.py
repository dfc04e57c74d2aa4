"""``deploykit serve MODEL_OR_REPOSITORY``: KServe v2 and TF Serving REST on 127.0.0.1:8000 until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
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
    parser.add_argument("--token-env", metavar="NAME", default=None,
                        help="require 'Authorization: Bearer <token>', the token read from this environment "
                             "variable")
    parser.add_argument("--token-file", metavar="PATH", default=None,
                        help="the same, the token read from this file (not readable by others)")
    parser.add_argument("--public-metrics", action="store_true", help="/metrics without the token")
    parser.add_argument("--json-logs", action="store_true", help="the access log as JSON lines")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="seconds to let requests in flight finish on SIGTERM/Ctrl-C (default 30)")


def run(args: argparse.Namespace) -> int:
    from ..serve.middleware import token_from_env, token_from_file
    from ..serve.server import Server

    token = token_from_env(args.token_env) if args.token_env else \
        token_from_file(args.token_file) if args.token_file else None
    _log_to_stderr(args.json_logs)
    server = Server(args.repository, host=args.host, port=args.port, drain_timeout=args.drain_timeout,
                    repository_api=args.repository_api, watch_interval=args.watch, max_queue=args.max_queue,
                    token=token, json_logs=args.json_logs, public_metrics=args.public_metrics)
    signal.signal(signal.SIGTERM, _interrupt)  # an orchestrator's stop: drain as for Ctrl-C
    signal.signal(signal.SIGINT, _interrupt)  # also when started in the background (SIGINT ignored)
    server.start()
    print(f"deploykit serve: {server.url} (KServe v2 and TF Serving REST; Ctrl-C stops)", flush=True)
    try:
        while not server.wait(0.5):  # short waits: Ctrl-C is seen between them
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _log_to_stderr(json_logs: bool) -> None:
    """The server's logs (access log included, at INFO) on stderr, as a server in a container does;
    written in batches (at most 0.2 s late; warnings and errors at once): see serve.logbuffer."""
    from ..serve.logbuffer import BufferedStreamHandler

    # this process is the server: its records need no thread or process names (~5 µs a record)
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BufferedStreamHandler()
    layout = "%(message)s" if json_logs else "%(asctime)s %(name)s %(message)s"
    handler.setFormatter(logging.Formatter(layout))
    logger = logging.getLogger("deploykit.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


COMMAND = Command("serve", "serve a model or a model repository over KServe v2 and TF Serving REST",
                  add_arguments, run)
