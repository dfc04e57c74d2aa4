"""The built wheel carries what `pip install deploykit` users need: the demo model and py.typed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contents(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("deploykit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("deploykit/py.typed", "deploykit/demo/digits.onnx",
                     "deploykit/demo/digits_test.npz", "deploykit/demo/build_digits.py",
                     "deploykit/backends/onnxruntime.py", "deploykit/preprocess/_core.pyi"):
        assert required in names
    assert any(n.startswith("deploykit/preprocess/_core.") and n.endswith(".so") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "deploykit = deploykit.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
