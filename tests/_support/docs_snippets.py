"""The fenced code blocks of the Markdown docs, for tests/test_docs.py: extraction, compilation with
the page's own line numbers (a traceback points into the .md file), the names a page uses without
defining them, and a documented call signature read back as an ``inspect.Signature``."""

from __future__ import annotations

import ast
import builtins
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from types import CodeType

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)")


@dataclass(frozen=True)
class Block:
    """One fenced block: ``line`` is the 1-based line of its opening fence in ``page``."""

    page: str
    line: int
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(root: Path, page: str) -> list[Block]:
    """Every fenced block of ``root / page``, in page order (``lang`` is "" when the fence has none)."""
    lines = (root / page).read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        i += 1
        body: list[str] = []
        while i < len(lines) and not (lines[i].lstrip().startswith(fence[0] * len(fence))
                                      and not lines[i].strip().strip(fence[0])):
            body.append(lines[i])
            i += 1
        if i >= len(lines):
            raise ValueError(f"{page}:{start + 1}: code fence never closed")
        out.append(Block(page, start + 1, lang, "\n".join(body) + "\n"))
        i += 1
    return out


def compile_block(block: Block) -> CodeType:
    """The block compiled so that its line numbers are the page's: a traceback names ``page``
    and the line of the .md file."""
    return compile("\n" * block.line + block.code, block.page, "exec")


def free_names(codes: list[str]) -> set[str]:
    """Names the code reads but never binds (nor imports, nor gets from builtins)."""
    loaded: set[str] = set()
    bound: set[str] = set()
    for code in codes:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Name):
                (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                bound.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
    return loaded - bound - set(dir(builtins))


_CALL = re.compile(r"^\s*(?:[\w, ]+=\s*)?(?P<func>[\w.]+)\((?P<args>.*)\)\s*(?:#.*)?$", re.S)


def documented_signature(code: str) -> inspect.Signature:
    """``engine = dk.load(model, backend="auto", *, threads=None, **options)`` -> the signature of
    ``def f(model, backend="auto", *, threads=None, **options)``: a call written as its signature."""
    m = _CALL.match(code.strip())
    if not m:
        raise ValueError(f"not a documented call signature: {code!r}")
    namespace: dict[str, object] = {}
    exec(f"def documented({m.group('args')}):\n    pass\n", namespace)
    return inspect.signature(namespace["documented"])  # type: ignore[arg-type]


def same_parameters(doc: inspect.Signature, real: inspect.Signature) -> list[str]:
    """What differs between a documented and a real signature: names, kinds and defaults, in
    order (annotations ignored); empty when they agree."""
    doc_params = list(doc.parameters.values())
    real_params = [p for p in real.parameters.values() if p.name != "self"]
    problems = []
    if [p.name for p in doc_params] != [p.name for p in real_params]:
        problems.append(f"parameters {[p.name for p in doc_params]} != {[p.name for p in real_params]}")
    for d, r in zip(doc_params, real_params):
        if d.name != r.name:
            continue
        if d.kind != r.kind:
            problems.append(f"{d.name}: {d.kind.description} != {r.kind.description}")
        if d.default != r.default:
            problems.append(f"{d.name}: default {d.default!r} != {r.default!r}")
    return problems
