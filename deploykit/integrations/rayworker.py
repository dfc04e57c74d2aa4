"""What a Ray worker knows of itself, for ``ray`` (batch actors) and ``rayserve`` (replicas): the
CPUs Ray gave it, which the engines' threads follow instead of the host's count."""

from __future__ import annotations


def actor_cpus(default: int = 1) -> int:
    """The CPUs Ray assigned to the calling actor or task (``default`` outside Ray)."""
    try:
        import ray
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # not inside a Ray worker
        return default
    return max(1, int(cpus)) if cpus else default


__all__ = ["actor_cpus"]
