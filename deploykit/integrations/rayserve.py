"""Online serving on Ray Serve (extra ``deploykit[ray]``): ``dk.ray.deployment(repository)`` is a Ray
Serve application whose replicas each run the app ``deploykit serve`` runs — the same KServe v2 and
TF Serving REST endpoints, error bodies, repository versions and dynamic batching (the data plane's
batcher, configured by each model's ``config.json``) — with the engines' threads sized to the CPUs
Ray gives the replica, and the metrics recorded through Ray's too, so that one scrape of Ray's
metrics counts every replica. Ray Serve routes, replicates and autoscales; deploykit answers."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve import metrics as serve_metrics

from ..arguments import check_number
from ..errors import InvalidArgument, ModelLoadError
from ..serve.application import app
from ..serve.dataplane import MAX_QUEUE_PER_INSTANCE
from ..serve.logbuffer import log_to_stderr
from ..serve.metrics import BATCH_BUCKETS, LATENCY_BUCKETS
from .rayworker import actor_cpus

#: Requests one replica takes at once (Ray's ``max_ongoing_requests``; Ray's own default, 5, would
#: cap every batch at 5 rows). Twice the data plane's bound for one instance of one version, so that
#: an overloaded replica answers 503 itself, in the protocol's body with Retry-After, as ``deploykit
#: serve`` does; at the data plane's bound, Ray would queue the excess and answer 503 in plain text.
MAX_ONGOING = 2 * MAX_QUEUE_PER_INSTANCE
#: Requests each caller (the HTTP proxy) queues for the deployment before it answers 503 (Ray's
#: default, -1, queues without bound).
MAX_QUEUED = 1024
#: app() settings that make sense on a replica; ``repository_api`` does not (a load or an unload
#: would reach one replica of many): versions change by redeploying, or by ``watch_interval``.
SETTINGS = ("max_body_bytes", "max_elements", "max_queue", "watch_interval", "token", "json_logs",
            "public_metrics")


class RayMetrics:
    """A ``MetricsSink`` recording into Ray Serve's metrics (exported by each node's metrics agent as
    ``ray_deploykit_*``, tagged with the deployment, replica and application)."""

    def __init__(self) -> None:
        request_tags = ("model", "version", "protocol")
        self.requests = serve_metrics.Counter(
            "deploykit_requests", "Requests by model, version, protocol and outcome.",
            tag_keys=(*request_tags, "outcome"))
        self.latency = {part: serve_metrics.Histogram(  # the names /metrics uses
            f"deploykit_request_{name}_seconds", f"Request {name} time in seconds.",
            boundaries=list(LATENCY_BUCKETS), tag_keys=request_tags)
            for part, name in (("total", "duration"), ("queue", "queue"), ("compute", "compute"))}
        self.batches = serve_metrics.Histogram(
            "deploykit_batch_size", "Requests run together in one batch.", boundaries=list(BATCH_BUCKETS),
            tag_keys=("model", "version"))
        self.load_seconds = serve_metrics.Gauge(
            "deploykit_model_load_seconds", "Time the last load (with warm-up) of a version took.",
            tag_keys=("model", "version"))
        self.load_failures = serve_metrics.Counter(
            "deploykit_model_load_failures", "Model loads that failed.", tag_keys=("model",))

    def request(self, labels: Sequence[str], outcome: str, total_s: float, queue_s: float | None,
                compute_s: float | None) -> None:
        tags = {"model": labels[0], "version": labels[1], "protocol": labels[2]}
        self.requests.inc(1, {**tags, "outcome": outcome})
        for part, seconds in (("total", total_s), ("queue", queue_s), ("compute", compute_s)):
            if seconds is not None:
                self.latency[part].observe(seconds, tags)

    def batch(self, labels: Sequence[str], size: int) -> None:
        self.batches.observe(size, {"model": labels[0], "version": labels[1]})

    def load(self, labels: Sequence[str], seconds: float, ok: bool) -> None:
        if ok:
            self.load_seconds.set(seconds, {"model": labels[0], "version": labels[1]})
        else:
            self.load_failures.inc(1, {"model": labels[0]})


@serve.ingress()
class Replica:
    """One replica: the repository's models loaded once, behind the data plane's endpoints."""

    def __init__(self, repository: str, settings: Mapping[str, Any]) -> None:
        self.repository, self.settings = repository, dict(settings)

    def __serve_build_asgi_app__(self) -> Any:
        """The app, its models loaded here: a replica that cannot serve all of its repository fails to
        start, with the reason (``deploykit serve``, one process, serves what loaded instead)."""
        log_to_stderr(bool(self.settings.get("json_logs")))  # the access log, in the replica's log
        application = app(self.repository, cpus=actor_cpus(), **self.settings)
        application.state.metrics.add_sink(RayMetrics())
        plane = application.state.plane
        plane.load_all()  # the app's start finds them loaded
        if plane.failures:
            plane.close()
            why = "; ".join(f"{k}: {v}" for k, v in sorted(plane.failures.items()))
            raise ModelLoadError(f"the replica cannot serve {self.repository}: {why}")
        return application


def deployment(repository: str | os.PathLike[str], *, name: str = "deploykit",
               num_replicas: int | str = 1, autoscaling_config: Mapping[str, Any] | None = None,
               num_cpus: float = 1, max_ongoing_requests: int = MAX_ONGOING,
               max_queued_requests: int = MAX_QUEUED, ray_actor_options: Mapping[str, Any] | None = None,
               deployment_options: Mapping[str, Any] | None = None, **settings: Any) -> Any:
    """A Ray Serve application (``serve.run(dk.ray.deployment("repo"))``) serving ``repository``
    (a repository folder, a model file or a bundle every replica can read at that path) over KServe v2
    and TF Serving REST. ``num_replicas``: a number, or ``"auto"`` with ``autoscaling_config`` (Ray's
    keys: min_replicas, max_replicas, target_ongoing_requests, ...). ``num_cpus``: each replica's CPUs,
    which its engines' threads share. ``max_ongoing_requests`` / ``max_queued_requests``: Ray's
    bounds per replica and per caller. ``ray_actor_options`` / ``deployment_options``: passed to Ray
    as they are (e.g. ``{"graceful_shutdown_timeout_s": 30}``). ``settings``: ``dk.serve.app``'s
    (max_body_bytes, max_elements, max_queue, watch_interval, token, json_logs, public_metrics)."""
    if not isinstance(repository, (str, os.PathLike)):
        raise InvalidArgument(f"repository must be a path every replica can read, got "
                              f"{type(repository).__name__}")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        why = ("a load or an unload would reach one replica of many; redeploy, or set watch_interval"
               if "repository_api" in unknown else f"accepted: {', '.join(SETTINGS)}")
        raise InvalidArgument(f"dk.ray.deployment does not take {', '.join(unknown)} ({why})")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"name must be a deployment name, got {name!r}")
    check_number(max_ongoing_requests, "max_ongoing_requests", minimum=1, integer=True)
    if max_queued_requests != -1:
        check_number(max_queued_requests, "max_queued_requests (or -1: unbounded)", minimum=1, integer=True)
    check_number(num_cpus, "num_cpus", above=0)
    replicas = _replicas(num_replicas, autoscaling_config)
    path = str(Path(repository).resolve())
    app(path, **settings)  # checks the settings and scans the repository here, not in every replica
    actor = _mapping(ray_actor_options, "ray_actor_options")
    others = _mapping(deployment_options, "deployment_options")
    options = {"max_ongoing_requests": max_ongoing_requests, "max_queued_requests": max_queued_requests,
               **replicas}
    for given, ours, what in ((actor, {"num_cpus"}, "ray_actor_options"),
                              (others, {*options, "name", "ray_actor_options"}, "deployment_options")):
        twice = sorted(set(given) & ours)
        if twice:
            raise InvalidArgument(f"{what} sets {', '.join(twice)}: give that as dk.ray.deployment's own "
                                  f"argument")
    actor["num_cpus"] = num_cpus
    options.update(others)
    try:
        bound = serve.deployment(Replica, name=name, ray_actor_options=actor, **options)
    except (ValueError, TypeError) as e:  # Ray's own checks of the options passed through
        raise InvalidArgument(f"Ray Serve refused the deployment's options: {e}") from e
    return bound.bind(path, settings)


def _replicas(num_replicas: Any, autoscaling: Any) -> dict[str, Any]:
    """Ray's ``num_replicas`` / ``autoscaling_config`` pair, checked."""
    if autoscaling is not None and not isinstance(autoscaling, Mapping):
        raise InvalidArgument(f"autoscaling_config must be a mapping of Ray's autoscaling keys, got "
                              f"{type(autoscaling).__name__}")
    if num_replicas == "auto" or autoscaling is not None:
        if num_replicas not in ("auto", 1):
            raise InvalidArgument(f"num_replicas={num_replicas!r} with autoscaling_config: give one of them "
                                  "(or num_replicas='auto')")
        from ray.serve.config import AutoscalingConfig

        known = getattr(AutoscalingConfig, "model_fields", None) or AutoscalingConfig.__fields__
        unknown = sorted(set(autoscaling or {}) - set(known))
        if unknown:  # Ray ignores them (a typo would leave its defaults in force)
            raise InvalidArgument(f"autoscaling_config has no key(s) {', '.join(unknown)}; Ray's keys: "
                                  f"{', '.join(sorted(known))}")
        return {"num_replicas": "auto", "autoscaling_config": dict(autoscaling or {})}
    check_number(num_replicas, "num_replicas (or 'auto')", minimum=1, integer=True)
    return {"num_replicas": num_replicas}


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidArgument(f"{name} must map Ray's option names to values, got {type(value).__name__}")
    return dict(value)


__all__ = ["MAX_ONGOING", "MAX_QUEUED", "RayMetrics", "Replica", "deployment"]
