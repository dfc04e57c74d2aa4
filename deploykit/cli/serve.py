"""``deploykit serve MODEL_OR_REPOSITORY``: KServe v2 REST on 127.0.0.1:8000 until Ctrl-C."""

from __future__ import annotations

import argparse

from .command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repository", help="a model file, or a repository folder repo/<model>/<version>/...")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: a free one)")


def run(args: argparse.Namespace) -> int:
    from ..serve.server import Server  # the serve extra's own imports happen when the app is made

    server = Server(args.repository, host=args.host, port=args.port)  # checks and binds before loading
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


COMMAND = Command("serve", "serve a model or a model repository over KServe v2 REST", add_arguments, run)
