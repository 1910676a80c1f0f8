"""Faster AMICI code generation for models with many parameters (unrolled networks).

Reused: AMICI's whole code generation and C++ build. Hand-written, and the one place that
touches AMICI's private `amici._symbolic` (this is why): AMICI's ``smart_jacobian`` finds the
sparsity pattern of a Jacobian by calling ``eq[i].has(p[j])`` for every pair of equation and
variable, a full walk of the expression each time. For the 2x64 gray-box CHO network (4,417
weights) that is ~600,000 walks and half of the Python code-generation time. `fast_jacobian`
reads each equation's free symbols once and differentiates only where a variable occurs; the
derivative of each entry is still sympy's ``diff``, so the generated code is byte-identical
(`tests/test_codegen.py` compares the C++ sources of both). ``AMICI_PARALLEL_COMPILE`` (the C++
build's job count, 1 unless set) is set to the number of cores for the build unless the user
set it. Measured in `benchmarks/hybrid_compile.py`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import amici._symbolic.de_model as _de_model
import sympy as sp
from amici._symbolic.sympy_utils import smart_is_zero_matrix

__all__ = ["fast_jacobian", "faster_codegen"]

_PARALLEL_ENV = "AMICI_PARALLEL_COMPILE"


def fast_jacobian(eq: sp.MatrixBase, sym_var: sp.MatrixBase) -> sp.MutableSparseMatrix:
    """Sparse Jacobian d eq / d sym_var, shape (len(eq), len(sym_var)); same entries as
    AMICI's ``smart_jacobian``, with the sparsity pattern from free symbols."""
    nrow, ncol = eq.shape[0], sym_var.shape[0]
    if not min(eq.shape) or not min(sym_var.shape) or smart_is_zero_matrix(eq) \
            or smart_is_zero_matrix(sym_var):
        return sp.MutableSparseMatrix(nrow, ncol, {})
    columns: dict[sp.Symbol, list[int]] = {}
    others: list[tuple[int, sp.Expr]] = []  # non-symbol variables keep AMICI's ``has`` test
    for j, var in enumerate(sym_var):
        if isinstance(var, sp.Symbol):
            columns.setdefault(var, []).append(j)
        else:
            others.append((j, var))
    entries: dict[tuple[int, int], sp.Expr] = {}
    for i, expr in enumerate(eq):
        hits = [(j, var) for var in expr.free_symbols & columns.keys() for j in columns[var]]
        hits += [(j, var) for j, var in others if expr.has(var)]
        for j, var in hits:
            entries[(i, j)] = expr.diff(var)
    return sp.MutableSparseMatrix(nrow, ncol, entries)


@contextlib.contextmanager
def faster_codegen() -> Iterator[None]:
    """Within the block, AMICI's model code generation uses `fast_jacobian` and the C++
    build runs one job per core (unless ``AMICI_PARALLEL_COMPILE`` is set)."""
    original = _de_model.smart_jacobian
    set_env = _PARALLEL_ENV not in os.environ
    _de_model.smart_jacobian = fast_jacobian
    if set_env:
        os.environ[_PARALLEL_ENV] = str(os.cpu_count() or 1)
    try:
        yield
    finally:
        _de_model.smart_jacobian = original
        if set_env:
            os.environ.pop(_PARALLEL_ENV, None)
