"""The operator table in the docs is generated from the registry and must stay in sync."""

from __future__ import annotations

from pathlib import Path

from deploykit.backends.reference import coverage, registry

DOC = Path(__file__).resolve().parents[3] / "docs" / "reference-backend-ops.md"


def test_docs_table_is_current() -> None:
    assert DOC.read_text() == coverage.markdown(), (
        "regenerate: python -m deploykit.backends.reference.coverage > docs/reference-backend-ops.md"
    )


def test_hot_operators_are_native() -> None:
    native = {op for _, op, _ in registry.native_ops()}
    hot = {"Conv", "ConvTranspose", "MatMul", "Gemm", "BatchNormalization", "MaxPool",
           "AveragePool", "GlobalAveragePool", "Resize", "Softmax", "LayerNormalization", "Add",
           "Mul", "ReduceMean", "Gather", "Slice", "Concat", "Reshape", "Transpose", "LSTM", "GRU"}
    assert hot <= native, hot - native


def test_never_delegated_ops_are_native_at_every_listed_version() -> None:
    for domain, op_type in registry.NEVER_DELEGATE:
        assert any(d == domain and o == op_type for d, o, _ in registry.native_ops())
