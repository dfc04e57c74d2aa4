"""The architecture's rules that a linter does not check (docs/architecture.md): no module imports
another's private names, no source file over the size budget, every DEPLOYKIT_* variable read
through the settings table and shown in docs/settings.md. (Layers: ``lint-imports`` in ``make lint``.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from deploykit import settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "deploykit"
SOURCES = sorted(p for p in PACKAGE.rglob("*") if p.suffix in (".py", ".c", ".h"))
#: Lines a source file may have (a file past it holds several ideas: split it).
BUDGET = 500
#: Generated files, exempt from the budget, each with its reason.
GENERATED: dict[str, str] = {}


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _module_of(path).split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_module(dotted: str) -> bool:
    """True when ``dotted`` names a module or package of deploykit (a file, a folder or an extension)."""
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists() or \
        any(path.parent.glob(path.name + ".*.so")) or path.with_suffix(".pyi").exists()


@pytest.mark.parametrize("path", [p for p in SOURCES if p.suffix == ".py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _resolve(path, node)
        if not source.startswith("deploykit"):
            continue
        for alias in node.names:
            private = alias.name.startswith("_") and not alias.name.startswith("__")
            if private and not _is_module(f"{source}.{alias.name}"):
                bad.append(f"line {node.lineno}: from {source} import {alias.name}")
    assert not bad, f"{path.relative_to(ROOT)} imports private names: {bad}"


def test_no_source_file_over_the_budget() -> None:
    over = {str(p.relative_to(ROOT)): n for p in SOURCES
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > BUDGET
            and str(p.relative_to(ROOT)) not in GENERATED}
    assert not over, f"source files over {BUDGET} lines (split them): {over}"


def test_environment_read_only_through_settings() -> None:
    # os.environ / os.getenv / getenv() on a DEPLOYKIT_ name or an ENV_* constant holding one
    pattern = re.compile(r"(environ|getenv)\W[^\n]*(DEPLOYKIT_|\bENV_[A-Z_]+)")
    readers = [str(p.relative_to(ROOT)) for p in SOURCES
               if p.name != "settings.py" and pattern.search(p.read_text(encoding="utf-8"))]
    # the C core reads DEPLOYKIT_SIMD itself, once, when it is imported
    allowed = {"deploykit/preprocess/dispatch.c", "deploykit/preprocess/_core.c"}
    assert set(readers) <= allowed, f"read DEPLOYKIT_* through deploykit.settings.get: {readers}"
    named = {m for p in [*SOURCES, ROOT / "setup.py", ROOT / "Makefile"]
             for m in re.findall(r"DEPLOYKIT_[A-Z_]+", p.read_text(encoding="utf-8"))}
    named |= {m for p in (ROOT / "tests").rglob("*.py")
              for m in re.findall(r"DEPLOYKIT_[A-Z_]+", p.read_text(encoding="utf-8"))}
    missing = named - {"DEPLOYKIT_"} - set(settings.SETTINGS)
    assert not missing, f"variables missing from deploykit.settings: {missing}"


def test_settings_page_shows_the_table() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert settings.table_markdown() in page, \
        "docs/settings.md is stale: paste deploykit.settings.table_markdown()"
