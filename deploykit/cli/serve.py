"""``deploykit serve MODEL_OR_REPOSITORY``: KServe v2 and TF Serving REST on 127.0.0.1:8000 until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import time
import urllib.request
from typing import Any

from ..arguments import check_number
from ..errors import BackendError, InvalidArgument, first_line, require
from .command import Command

#: The Ray Serve application ``deploykit serve --ray`` runs.
RAY_APP = "deploykit"


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
    ray = parser.add_argument_group("on Ray Serve (extra deploykit[ray]; docs/ray.md)")
    ray.add_argument("--ray", action="store_true",
                     help="serve through Ray Serve: Ray's HTTP proxy on --host/--port, replicas running this "
                          "server's app; joins the Ray cluster RAY_ADDRESS names, or starts a local one")
    ray.add_argument("--replicas", default="1", metavar="N|auto",
                     help="replicas (default 1), or 'auto': Ray's autoscaling between --min/--max-replicas")
    ray.add_argument("--min-replicas", type=int, default=1, help="with --replicas auto (default 1)")
    ray.add_argument("--max-replicas", type=int, default=None, help="with --replicas auto (default: the "
                     "cluster's CPUs / --num-cpus)")
    ray.add_argument("--num-cpus", type=float, default=1.0,
                     help="CPUs per replica, which its engines' threads share (default 1)")


def run(args: argparse.Namespace) -> int:
    from ..serve.middleware import token_from_env, token_from_file
    from ..serve.server import Server

    token = token_from_env(args.token_env) if args.token_env else \
        token_from_file(args.token_file) if args.token_file else None
    if args.ray:
        return _run_on_ray(args, token)
    ray_flags = (("--replicas", args.replicas, "1"), ("--min-replicas", args.min_replicas, 1),
                 ("--max-replicas", args.max_replicas, None), ("--num-cpus", args.num_cpus, 1.0))
    given = [flag for flag, value, default in ray_flags if value != default]
    if given:
        raise InvalidArgument(f"{', '.join(given)}: only with --ray (one process serves without Ray)")
    from ..serve.logbuffer import log_to_stderr

    log_to_stderr(args.json_logs)
    server = Server(args.repository, host=args.host, port=args.port, drain_timeout=args.drain_timeout,
                    repository_api=args.repository_api, watch_interval=args.watch, max_queue=args.max_queue,
                    token=token, json_logs=args.json_logs, public_metrics=args.public_metrics)
    signal.signal(signal.SIGTERM, _interrupt)  # an orchestrator's stop: drain as for Ctrl-C
    signal.signal(signal.SIGINT, _interrupt)  # also when started in the background (SIGINT ignored)
    server.start()
    try:  # entered before the address is printed: a Ctrl-C right after it still drains and exits 0
        print(f"deploykit serve: {server.url} (KServe v2 and TF Serving REST; Ctrl-C stops)", flush=True)
        while not server.wait(0.5):  # short waits: Ctrl-C is seen between them
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _run_on_ray(args: argparse.Namespace, token: str | None) -> int:
    """The repository on Ray Serve until Ctrl-C: a local Ray, or the cluster ``RAY_ADDRESS`` names."""
    if args.port == 0:
        raise InvalidArgument("--port 0 does not work with --ray: Ray's HTTP proxy needs a port number")
    if args.replicas != "auto" and not re.fullmatch("[0-9]+", args.replicas):
        raise InvalidArgument(f"--replicas must be a number or 'auto', got {args.replicas!r}")
    if args.replicas != "auto" and (args.min_replicas != 1 or args.max_replicas is not None):
        raise InvalidArgument("--min-replicas/--max-replicas: only with --replicas auto")
    check_number(args.num_cpus, "--num-cpus", above=0)
    settings: dict[str, Any] = {"max_queue": args.max_queue, "watch_interval": args.watch, "token": token,
                                "json_logs": args.json_logs, "public_metrics": args.public_metrics}
    if args.repository_api:
        settings["repository_api"] = True  # refused by dk.ray.deployment, with the reason
    serve = require("ray.serve", "--ray needs Ray Serve: pip install 'deploykit[ray]'")
    import ray

    from ..integrations.rayserve import deployment

    def build() -> Any:
        return deployment(args.repository, num_cpus=args.num_cpus, **_replicas(args),
                          deployment_options={"graceful_shutdown_timeout_s": args.drain_timeout}, **settings)

    # the options are checked before Ray starts, unless the replica count needs the cluster's CPUs
    sized_by_cluster = args.replicas == "auto" and args.max_replicas is None
    application = None if sized_by_cluster else build()
    joined = bool(os.environ.get("RAY_ADDRESS"))  # that cluster; else a Ray of this process's own
    ray.init(address=None if joined else "local", include_dashboard=False, configure_logging=False)
    try:
        application = application or build()
        try:
            serve.start(http_options={"host": args.host, "port": args.port})
        except Exception as e:  # Ray's proxy failed to start (a port in use, an address not here)
            raise BackendError(f"Ray Serve's HTTP proxy did not start on --host {args.host} --port "
                               f"{args.port}: {first_line(e)}") from None
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        try:
            serve.run(application, name=RAY_APP, route_prefix="/")
        except RuntimeError as e:
            status = serve.status().applications.get(RAY_APP)
            why = [d.message for d in status.deployments.values() if d.message] if status else []
            raise BackendError(f"Ray Serve did not start the repository: {e}" +
                               (f"\n{why[-1].strip().splitlines()[-1]}" if why else "")) from None
        _check_proxy(args.host, args.port)
        with contextlib.suppress(KeyboardInterrupt):  # entered before the address is printed, as above
            print(f"deploykit serve --ray: http://{args.host}:{args.port} (KServe v2 and TF Serving REST "
                  f"through Ray Serve; Ctrl-C stops)", flush=True)
            while True:
                time.sleep(0.5)
    finally:
        with contextlib.suppress(Exception):  # on a cluster of others, only this application goes
            serve.delete(RAY_APP) if joined else serve.shutdown()
        ray.shutdown()
    return 0


def _check_proxy(host: str, port: int) -> None:
    """Ray's proxy answers on ``host:port`` — on a cluster whose Serve already ran, Ray keeps the HTTP
    options it started with and ignores ours (with a log line only)."""
    address = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    url = f"http://[{address}]:{port}/-/routes" if ":" in address else f"http://{address}:{port}/-/routes"
    try:
        with urllib.request.urlopen(url, timeout=10):
            pass
    except OSError as e:
        raise BackendError(f"the application runs, but Ray Serve's proxy does not answer on {host}:{port} "
                           f"({e}): Serve was already running on this cluster with other HTTP options, "
                           f"which Ray keeps; use its address") from None


def _replicas(args: argparse.Namespace) -> dict[str, Any]:
    """``num_replicas`` or Ray's autoscaling range from --replicas/--min-replicas/--max-replicas."""
    if args.replicas != "auto":
        return {"num_replicas": int(args.replicas)}
    import ray

    most = args.max_replicas
    if most is None:  # as many as the cluster's CPUs hold now
        most = max(args.min_replicas, int(ray.cluster_resources().get("CPU", 1) // args.num_cpus))
    return {"num_replicas": "auto", "autoscaling_config": {"min_replicas": args.min_replicas,
                                                          "max_replicas": most}}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


COMMAND = Command("serve", "serve a model or a model repository over KServe v2 and TF Serving REST",
                  add_arguments, run)
