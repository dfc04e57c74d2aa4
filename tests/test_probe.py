"""usable_cpus: the affinity mask capped by the cgroup CPU quota (v1 and v2)."""

from __future__ import annotations

import os
from pathlib import Path

from deploykit.probe import cgroup_cpu_limit, usable_cpus


def test_usable_cpus_within_affinity() -> None:
    n = usable_cpus()
    assert 1 <= n <= len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit()
    if limit is not None:
        assert n <= max(1, int(-(-limit // 1)))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    _write(tmp_path / "proc", "0::/kubepods/pod1\n")
    _write(tmp_path / "cg/kubepods/pod1/cpu.max", "150000 100000\n")
    _write(tmp_path / "cg/kubepods/cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(tmp_path / "cg", tmp_path / "proc") == 1.5


def test_cgroup_v2_parent_limit_binds(tmp_path: Path) -> None:
    _write(tmp_path / "proc", "0::/a/b\n")
    _write(tmp_path / "cg/a/b/cpu.max", "max 100000\n")
    _write(tmp_path / "cg/a/cpu.max", "200000 100000\n")
    assert cgroup_cpu_limit(tmp_path / "cg", tmp_path / "proc") == 2.0


def test_cgroup_v2_unlimited(tmp_path: Path) -> None:
    _write(tmp_path / "proc", "0::/\n")
    _write(tmp_path / "cg/cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(tmp_path / "cg", tmp_path / "proc") is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    _write(tmp_path / "proc", "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n")
    _write(tmp_path / "cg/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "300000\n")
    _write(tmp_path / "cg/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path / "cg", tmp_path / "proc") == 3.0


def test_cgroup_v1_no_quota_and_missing_files(tmp_path: Path) -> None:
    _write(tmp_path / "proc", "2:cpu:/\n")
    _write(tmp_path / "cg/cpu/cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "cg/cpu/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path / "cg", tmp_path / "proc") is None
    assert cgroup_cpu_limit(tmp_path / "none", tmp_path / "no-proc") is None
