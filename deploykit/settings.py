"""Every ``DEPLOYKIT_*`` environment variable in one table: its default, its meaning, who reads it.

Read them through :func:`get` (never ``os.environ`` elsewhere in the package) so that this table
stays the whole truth; ``docs/settings.md`` shows it and a test checks the two agree.
"""

from __future__ import annotations

import os
from typing import NamedTuple


class Setting(NamedTuple):
    """One environment variable: its name, its default (``""``: unset), what it does, who reads it."""

    name: str
    default: str
    meaning: str
    read_by: str


#: The table. Add a variable here first; ``get`` refuses names that are not in it.
SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("DEPLOYKIT_BACKEND", "", "replaces backend=\"auto\" with a backend name, for operators "
            "(\"auto\" or unset: the plan decides)", "deploykit.selection"),
    Setting("DEPLOYKIT_CACHE_DIR", "", "deploykit's cache folder (tuning decisions in tune/, TensorRT "
            "engines in tensorrt/, unpacked bundles in bundles/, the onnx2tf environment in onnx2tf/); "
            "unset: the platform's user cache folder", "deploykit.cachedir"),
    Setting("DEPLOYKIT_SIMD", "", "\"generic\" makes the C preprocessing core take its portable path "
            "instead of AVX2 (read once, when the core is imported)", "deploykit/preprocess/_core.c"),
    Setting("DEPLOYKIT_LOG_RUNTIME", "", "\"1\" (or true/yes/on) lets runtimes print their own "
            "start-up chatter to stderr (e.g. LiteRT's XNNPACK line); unset: it goes to the DEBUG log",
            "deploykit.backends.runtime_chatter"),
    Setting("DEPLOYKIT_SANITIZE", "", "\"1\" builds the C core with AddressSanitizer + UBSan "
            "(make sanitize)", "setup.py"),
    Setting("DEPLOYKIT_PORTABLE", "", "\"1\" builds the C core without x86 dispatch and with -Werror "
            "(make test checks that this build compiles)", "setup.py"),
    Setting("DEPLOYKIT_ZOO", "", "where the tests keep the real-model zoo; unset: "
            "~/.cache/deploykit/zoo", "tests/zoo.py"),
    Setting("DEPLOYKIT_FUZZ_EXAMPLES", "", "how many inputs the C core's fuzz tests draw (make "
            "sanitize sets 20000)", "tests/preprocess/test_fuzz.py"),
)}


def get(name: str) -> str:
    """The variable's value, stripped, or its default when unset or blank."""
    setting = SETTINGS[name]  # a KeyError here is a bug: every variable is listed above
    value = os.environ.get(name, "").strip()
    return value or setting.default


def table_markdown() -> str:
    """The table as Markdown, for docs/settings.md."""
    rows = ["| variable | default | meaning | read by |", "| --- | --- | --- | --- |"]
    rows += [f"| `{s.name}` | {f'`{s.default}`' if s.default else '(unset)'} | {s.meaning} | "
             f"`{s.read_by}` |" for s in SETTINGS.values()]
    return "\n".join(rows)


__all__ = ["SETTINGS", "Setting", "get", "table_markdown"]
