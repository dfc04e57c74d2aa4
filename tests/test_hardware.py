"""dk.probe(): this machine's report checked against independent sources, and every reader on
captured output (cpuinfo, meminfo, sysctl, nvidia-smi, NVML, cgroups v1 and v2)."""

from __future__ import annotations

import html
import importlib
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import deploykit as dk
from deploykit.gpus import GpuInfo, gpu_from_nvml, parse_nvidia_smi, probe_nvidia_gpus, visible_gpus
from deploykit.hardware import (
    RUNTIME_DISTRIBUTIONS,
    cgroup_cpu_limit,
    cgroup_memory_limit,
    installed_runtimes,
    usable_cpus,
)
from deploykit.hostinfo import parse_cpuinfo, parse_meminfo, parse_sysctl

probe_module = importlib.import_module("deploykit.hardware")
LINUX = sys.platform.startswith("linux")
HAS_NVIDIA_DRIVER = any(os.path.exists(p) for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl"))

# -- captured output ----------------------------------------------------------------------------
# First processor block of /proc/cpuinfo on the H100 host this project's GPU checks ran on
# (a Sapphire Rapids Xeon VM, 16 vCPUs), captured 2026-11-22.
XEON_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 207
model name\t: Intel(R) Xeon(R) Processor
physical id\t: 0
siblings\t: 16
core id\t\t: 0
cpu cores\t: 16
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr \
sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology \
nonstop_tsc cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic \
movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm \
3dnowprefetch cpuid_fault ssbd ibrs ibpb stibp ibrs_enhanced fsgsbase tsc_adjust bmi1 avx2 \
smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb \
avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 \
wbnoinvd arat avx512vbmi umip pku ospke avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni \
avx512_bitalg avx512_vpopcntdq rdpid bus_lock_detect cldemote movdiri movdir64b fsrm \
md_clear serialize tsxldtrk ibt amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d \
arch_capabilities
bogomips\t: 4200.00
"""
# `nvidia-smi --query-gpu=index,name,memory.total,compute_cap,driver_version,uuid
#  --format=csv,noheader,nounits` on that host (driver 580.159.04), and without compute_cap.
H100_SMI = "0, NVIDIA H100 80GB HBM3, 81559, 9.0, 580.159.04, GPU-d5af6e15-2476-9cce-7e33-4d1858b8bee7\n"
H100_SMI_NO_CC = "0, NVIDIA H100 80GB HBM3, 81559, 580.159.04, GPU-d5af6e15-2476-9cce-7e33-4d1858b8bee7\n"
# What nvidia-ml-py 13.610 returned there: name, memory total, compute capability, driver, uuid.
H100_NVML = ("NVIDIA H100 80GB HBM3", 85520809984, (9, 0), "580.159.04",
             "GPU-d5af6e15-2476-9cce-7e33-4d1858b8bee7")


# -- this machine ---------------------------------------------------------------------------------
def test_probe_is_cached_per_process() -> None:
    report = dk.probe()
    assert dk.probe() is report
    fresh = dk.probe(refresh=True)
    assert fresh is not report and dk.probe() is fresh
    assert fresh.fingerprint() == report.fingerprint()


def test_cpu_matches_the_os() -> None:
    cpu = dk.probe().cpu
    assert cpu.logical_cores == os.cpu_count()
    assert cpu.usable_cores == usable_cpus() and 1 <= cpu.usable_cores <= cpu.logical_cores
    assert cpu.physical_cores is None or 1 <= cpu.physical_cores <= cpu.logical_cores
    assert cpu.model and cpu.arch
    if LINUX and cpu.arch in ("x86_64", "amd64", "i686"):
        flags = {f for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("flags") for f in line.split(":", 1)[1].split()}
        assert set(cpu.features) <= flags
        for name in ("sse4_2", "avx2", "fma", "f16c", "avx512f", "avx512_vnni"):
            assert cpu.has(name) == (name in flags), name


@pytest.mark.skipif(not LINUX, reason="/proc/meminfo is Linux-only")
def test_memory_matches_the_kernel() -> None:
    mem = dk.probe(refresh=True).memory
    assert mem.total_bytes == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert mem.available_bytes is not None and 0 < mem.available_bytes <= mem.total_bytes
    assert mem.cgroup_limit_bytes == cgroup_memory_limit()
    assert mem.usable_bytes == min(v for v in (mem.available_bytes, mem.cgroup_limit_bytes) if v)


def test_runtimes_agree_with_importlib_metadata() -> None:
    runtimes = dk.probe().runtimes
    for dists in RUNTIME_DISTRIBUTIONS.values():
        for dist in dists:
            try:
                expected: str | None = metadata.version(dist)
            except metadata.PackageNotFoundError:
                expected = None
            assert runtimes.get(dist) == expected, dist
    assert runtimes["numpy"] == metadata.version("numpy")


def test_probe_imports_no_runtime() -> None:
    code = ("import sys, deploykit as dk; r = dk.probe(); "
            "print(sorted(m for m in ('onnxruntime', 'onnx', 'ai_edge_litert', 'tensorrt', 'pynvml', "
            "'importlib.metadata') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_onnxruntime_providers_are_the_runtime_s() -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime extra not installed")
    report = dk.probe()
    facts = report.backend_facts("onnxruntime")
    assert facts == {"providers": ort.get_available_providers(), "error": None}
    data = report.to_dict()  # the former JSON keys, now from the backend's facts
    assert data["onnxruntime_providers"] == facts["providers"] and data["onnxruntime_error"] is None
    with pytest.warns(DeprecationWarning, match="backend_facts"):
        assert list(report.onnxruntime_providers) == facts["providers"]
    with pytest.warns(DeprecationWarning, match="backend_facts"):
        legacy = dk.HardwareReport(cpu=report.cpu, memory=report.memory, onnxruntime_providers=["X"])
    assert legacy.backend_facts("onnxruntime")["providers"] == ["X"]


def test_broken_onnxruntime_is_reported_not_raised() -> None:
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "import deploykit as dk\nr = dk.probe()\n"
            "f = r.backend_facts('onnxruntime')\n"
            "print(r.runtime_version('onnxruntime') is not None, tuple(f['providers']))\n"
            "print(f['error'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.strip().splitlines()
    if first.startswith("True"):
        assert first == "True ()" and second.startswith("onnxruntime does not import: ModuleNotFoundError")
    else:
        assert second == "onnxruntime is not installed"


def test_preprocess_core_is_reported() -> None:
    from deploykit.preprocess import _core

    core = dk.probe().preprocess
    assert core.loaded and core.simd == _core.SIMD and core.error is None


@pytest.mark.skipif(HAS_NVIDIA_DRIVER, reason="this machine has an NVIDIA driver")
def test_no_gpu_is_an_empty_list_with_the_reason() -> None:
    report = dk.probe()
    assert report.gpus == ()
    assert report.gpu_probe.startswith("no driver found") or report.gpu_probe.startswith("no GPU found")
    assert probe_nvidia_gpus() == ((), report.gpu_probe)
    assert f"none ({report.gpu_probe})" in report.format()


@pytest.mark.skipif(not HAS_NVIDIA_DRIVER, reason="no NVIDIA driver on this machine")
def test_gpus_match_nvidia_smi() -> None:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                         text=True, timeout=30)
    names = [n.strip() for n in smi.stdout.splitlines() if n.strip()]
    if os.environ.get("CUDA_VISIBLE_DEVICES") is None:
        assert [g.name for g in dk.probe().gpus] == names


def test_to_dict_is_plain_json_and_html_escapes() -> None:
    report = dk.probe()
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["cpu"]["usable_cores"] == report.cpu.usable_cores
    assert data["gpus"] == [dict(vars(g), device=g.device) for g in report.gpus]
    assert data["fingerprint"] == report.fingerprint() and len(data["fingerprint"]) == 16
    page = report._repr_html_()
    assert page.startswith("<div><b>deploykit.HardwareReport</b><table>")
    assert html.escape(report.cpu.model) in page and "fingerprint" in page
    assert report.cpu.model in str(report) and report.cpu.model in repr(report)


# -- readers on captured output -------------------------------------------------------------------
def test_parse_cpuinfo_x86() -> None:
    model, features, physical = parse_cpuinfo(XEON_CPUINFO)
    assert model == "Intel(R) Xeon(R) Processor"
    assert features == ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512cd",
                        "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                        "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
    assert physical == 1  # one block given: one (physical id, core id) pair


def test_parse_cpuinfo_counts_cores_not_threads() -> None:
    blocks = [f"processor\t: {i}\nmodel name\t: X\nphysical id\t: {i // 4}\ncore id\t\t: {i % 4 // 2}\n"
              "flags\t\t: sse4_2 avx2 sme\n" for i in range(8)]  # 2 sockets x 2 cores x 2 threads
    model, features, physical = parse_cpuinfo("\n".join(blocks))
    assert (model, features, physical) == ("X", ("sse4_2", "avx2"), 4)  # AMD's "sme" is not Arm SME


def test_parse_cpuinfo_arm() -> None:
    # the layout arm64 Linux prints (no model name; implementer and part codes); Neoverse-V1 features
    text = ("processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
            "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop sha3 asimddp sha512 sve asimdfhm svei8mm "
            "svebf16 i8mm bf16 rng\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\n"
            "CPU part\t: 0xd40\nCPU revision\t: 1\n")
    assert parse_cpuinfo(text) == ("Neoverse-V1", ("neon", "fp16", "dotprod", "i8mm", "bf16", "sve"), None)
    unknown = text.replace("0x41", "0x61").replace("0xd40", "0x022")
    assert parse_cpuinfo(unknown)[0] == "Arm CPU (implementer 0x61, part 0x022)"


@pytest.mark.skipif(not LINUX, reason="/proc/cpuinfo is Linux-only")
def test_parse_cpuinfo_this_machine() -> None:
    model, features, _ = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    report = dk.probe()
    assert (model or report.cpu.model) == report.cpu.model and features == report.cpu.features


def test_parse_meminfo_and_sysctl() -> None:
    assert parse_meminfo("MemTotal:       24684096 kB\nMemFree:  1 kB\nMemAvailable:   24008568 kB\n") \
        == (24684096 * 1024, 24008568 * 1024)
    assert parse_meminfo("MemTotal: 10 kB\n") == (10240, None)
    # `sysctl NAME...` prints "name: value"; an Apple silicon Mac lacks the machdep.cpu feature keys
    mac_arm = ("machdep.cpu.brand_string: Apple M2\nhw.physicalcpu: 8\nhw.optional.arm.FEAT_FP16: 1\n"
               "hw.optional.arm.FEAT_DotProd: 1\nhw.optional.arm.FEAT_I8MM: 0\n"
               "hw.optional.arm.FEAT_BF16: 0\n")
    assert parse_sysctl(mac_arm, "arm64") == ("Apple M2", ("neon", "fp16", "dotprod"), 8)
    mac_x86 = ("machdep.cpu.brand_string: Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz\nhw.physicalcpu: 6\n"
               "machdep.cpu.features: FPU SSE SSE2 SSE3 SSSE3 FMA SSE4.1 SSE4.2 AVX1.0 F16C\n"
               "machdep.cpu.leaf7_features: SMEP BMI1 AVX2 BMI2\n")
    assert parse_sysctl(mac_x86, "x86_64") == ("Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz",
                                               ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c"), 6)


def test_parse_nvidia_smi_captured() -> None:
    (gpu,) = parse_nvidia_smi(H100_SMI)
    assert gpu == GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559 * 2**20, "9.0", "580.159.04",
                          "GPU-d5af6e15-2476-9cce-7e33-4d1858b8bee7", 0)
    assert gpu.device == "cuda:0"
    fields = ["index", "name", "memory.total", "driver_version", "uuid"]
    (old,) = parse_nvidia_smi(H100_SMI_NO_CC, fields)
    assert old.compute_capability is None and old.memory_bytes == gpu.memory_bytes
    two = parse_nvidia_smi(H100_SMI + H100_SMI.replace("0, ", "1, ", 1).replace("GPU-d5", "GPU-e6")
                           .replace("81559", "[N/A]"))
    assert [g.index for g in two] == [0, 1] and two[1].memory_bytes is None
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        parse_nvidia_smi("0, only two\n")
    assert parse_nvidia_smi("") == []


def test_gpu_from_nvml_str_and_bytes() -> None:
    gpu = gpu_from_nvml(0, *H100_NVML)
    assert gpu == GpuInfo(0, "NVIDIA H100 80GB HBM3", 85520809984, "9.0", "580.159.04",
                          "GPU-d5af6e15-2476-9cce-7e33-4d1858b8bee7", 0)
    name, total, cc, driver, uuid = H100_NVML  # older nvidia-ml-py releases returned bytes
    assert gpu_from_nvml(0, name.encode(), total, cc, driver.encode(), uuid.encode()) == gpu


def test_cuda_visible_devices() -> None:
    a, b = (GpuInfo(i, f"gpu{i}", 1, "9.0", "580", f"GPU-{i}abc", i) for i in range(2))
    assert visible_gpus([a, b], None) == (a, b)
    assert visible_gpus([a, b], "") == ()
    assert visible_gpus([a, b], "-1") == ()
    flipped = visible_gpus([a, b], "1,0")
    assert [(g.index, g.name, g.nvml_index) for g in flipped] == [(0, "gpu1", 1), (1, "gpu0", 0)]
    assert [g.name for g in visible_gpus([a, b], "GPU-1a")] == ["gpu1"]
    assert [g.name for g in visible_gpus([a, b], "0,7,1")] == ["gpu0"]  # CUDA stops at the bad entry
    assert visible_gpus([a, b], "MIG-1234") == (a, b)


def test_installed_runtimes_reads_dist_info_names(tmp_path: Path) -> None:
    for name in ("onnxruntime_gpu-1.20.1.dist-info", "Tflite_Runtime-2.14.0.dist-info",
                 "tensorrt-10.3.0-py3.11.egg-info", "somethingelse-1.0.dist-info", "numpy-9.9.dist-info"):
        (tmp_path / name).mkdir()
    first = tmp_path / "first"
    (first / "numpy-2.0.0.dist-info").mkdir(parents=True)
    found = installed_runtimes([str(first), str(tmp_path), str(tmp_path / "missing")])
    assert found == {"onnxruntime-gpu": "1.20.1", "tflite-runtime": "2.14.0", "tensorrt": "10.3.0",
                     "numpy": "2.0.0"}


def test_several_onnxruntime_distributions_are_noted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "onnxruntime_gpu-1.20.1.dist-info").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))  # a second onnxruntime distribution on the path
    try:
        report = dk.probe(refresh=True)
        assert report.runtimes["onnxruntime-gpu"] == "1.20.1"
        noted = any("several onnxruntime distributions" in n for n in report.notes)
        assert noted == ("onnxruntime" in report.runtimes)
    finally:
        monkeypatch.undo()
        dk.probe(refresh=True)


# -- cgroups --------------------------------------------------------------------------------------
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


def test_cgroup_memory_v2_and_v1(tmp_path: Path) -> None:
    _write(tmp_path / "v2/proc", "0::/pod/c\n")
    _write(tmp_path / "v2/cg/pod/c/memory.max", "max\n")
    _write(tmp_path / "v2/cg/pod/memory.max", "4294967296\n")
    assert cgroup_memory_limit(tmp_path / "v2/cg", tmp_path / "v2/proc") == 4 * 2**30
    _write(tmp_path / "v1/proc", "4:memory:/docker/abc\n2:cpu:/\n")
    _write(tmp_path / "v1/cg/memory/docker/abc/memory.limit_in_bytes", "536870912\n")
    assert cgroup_memory_limit(tmp_path / "v1/cg", tmp_path / "v1/proc") == 512 * 2**20
    # v1 writes 2**63 rounded down to a page for "no limit" (as on this project's dev machine)
    _write(tmp_path / "v1/cg/memory/docker/abc/memory.limit_in_bytes", "9223372036854771712\n")
    assert cgroup_memory_limit(tmp_path / "v1/cg", tmp_path / "v1/proc") is None


def test_probe_module_exports() -> None:
    assert probe_module.probe is dk.probe and probe_module.HardwareReport is dk.HardwareReport


def test_cli_probe(capsys: pytest.CaptureFixture[str]) -> None:
    from deploykit.cli import main
    from deploykit.demo import MODEL_PATH

    assert main(["probe"]) == 0
    text = capsys.readouterr().out
    report = dk.probe()
    assert f"cpu           {report.cpu.model}: " in text and "fingerprint   " in text
    assert main(["probe", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cpu"]["usable_cores"] == report.cpu.usable_cores and data["gpus"] == report.to_dict()["gpus"]
    assert main(["probe", "--json", str(MODEL_PATH)]) == 0
    both = json.loads(capsys.readouterr().out)
    assert set(both) == {"hardware", "plan"} and both["plan"]["model"] == str(MODEL_PATH)
    assert both["plan"]["candidates"][-1]["backend"] == "numpy"
    assert main(["probe", str(MODEL_PATH)]) == 0
    assert f"plan for {MODEL_PATH} (onnx), backend='auto', decided by rule" in capsys.readouterr().out
    assert main(["probe", "no-such-model.onnx"]) == 2
    assert "model file not found: no-such-model.onnx" in capsys.readouterr().err
