"""Faster AMICI code generation for models with many parameters (unrolled networks).

Reused: AMICI's whole code generation and C++ build. Hand-written, and the one place that
touches AMICI's private `amici._symbolic` and its exporter (this is why): three steps of
AMICI's symbolic processing walk every (row, column) pair of matrices whose columns are the
network weights, which for the 2x64 gray-box CHO network (4,417 weights, ~300 rules) is
millions of walks:

- ``smart_jacobian`` finds the sparsity pattern with ``eq[i].has(p[j])`` for every pair, and
  sympy's ``Add.diff`` differentiates every term of a 65-term sum for every weight.
  `fast_jacobian` reads each equation's free symbols once, differentiates only where a
  variable occurs, and in a sum only the terms that contain it (the zero derivatives of the
  other terms drop out of sympy's ``Add`` anyway); a product ``W * a`` is differentiated
  w.r.t. ``W`` by dropping the factor;
- ``csc_matrix`` (sparse symbols of each derivative) reads every entry of the dense shape;
  `fast_csc_matrix` visits the stored non-zeros in the same column-major order;
- ``DEModel.static_indices`` tests every non-zero of ``dwdp``/``dwdx``/``dwdw`` with
  ``expr.has(*dynamic_symbols)`` (thousands of patterns); `_static_derivative_indices` uses
  free-symbol sets, and the static rules ``w`` come from the sparse patterns of ``dwdx`` and
  ``dwdw`` instead of dense symbol matrices (models with splines keep AMICI's tests, which
  also inspect strings).

Before all this, AMICI's SBML import parses every rule's MathML with `sbmlmath`, which builds
an n-ary ``<plus/>`` by adding its operands one at a time: sympy re-flattens and re-sorts the
growing sum at every step, quadratic in the operands (a neuron of the 2x64 network sums 65
terms; 2.6 of the 2x64 build's 4.6 s of rule processing). `_nary_plus` builds the same sum
with one ``Add`` (sympy's canonical form, so the expression and the generated code are the
same: the byte-by-byte test covers it); `_JacobianMemo` gives the rules' Jacobians that
`sbmlhybrid.build._chain` computed for its operation count to AMICI when the totals are not
used, instead of differentiating ~4,700 entries again.

The C++ build is AMICI's CMake project, run by `sbmlhybrid.build._cmake` without AMICI's
generated ``setup.py`` (why: see there), with one change: generated sources of at least
`LARGE_SOURCE_BYTES` get `LARGE_SOURCE_FLAGS` (-O0) through a ``set_source_files_properties``
line appended to the generated ``CMakeLists.txt`` (AMICI's ``AMICI_CXXFLAGS`` would lower every
source, the model's right-hand side included).

Every result of the symbolic steps equals AMICI's: `tests/test_codegen.py` compares entries and
the generated C++ sources byte by byte. ``AMICI_PARALLEL_COMPILE`` (the C++ build's job count,
1 unless set) is set to the number of cores for the build unless the user set it. Measured in
`benchmarks/hybrid_compile.py`.
"""

from __future__ import annotations

import contextlib
import operator
import os
from collections.abc import Callable, Iterator
from functools import reduce

import amici._symbolic.de_model as _de_model
import amici.exporters.sundials.cxxcodeprinter as _printer
import amici.exporters.sundials.de_export as _de_export
import sbmlmath.mathml_parser as _mathml
import sympy as sp
from amici._symbolic.sympy_utils import smart_is_zero_matrix
from amici.importers.utils import amici_time_symbol, symbol_with_assumptions

from sbmlhybrid.build._chain import install_total_derivatives, static_w, w_order
from sbmlhybrid.build._cmake import build_model_extension, replicates_amici_build

__all__ = ["CODEGEN_VARIANT", "LARGE_SOURCE_BYTES", "LARGE_SOURCE_FLAGS", "fast_csc_matrix",
           "fast_jacobian", "faster_codegen", "large_sources"]

#: Part of the compile-cache key: builds of an earlier variant are not reused.
CODEGEN_VARIANT = "total-w-derivatives-3"

_PARALLEL_ENV = "AMICI_PARALLEL_COMPILE"
_DERIVATIVES_OF_W = ("dwdw", "dwdx", "dwdp")
#: Generated C++ sources of at least this many bytes are compiled with `LARGE_SOURCE_FLAGS`
#: (appended after CMake's -O3, so they win). gcc's -O3 time grows faster than linearly with
#: function length: the 2x64 network's ``dwdp.cpp`` (4,433 straight-line assignments, 350 kB)
#: takes 11 s at -O3, 5 s at -O1, 2 s at -O0. These are the sparse derivative tables
#: (``dwdp``, ``dwdw``), the rules ``w`` and the model class's name arrays: copies and
#: products that -O3 barely speeds up (`benchmarks/results/hybrid_compile.json`, idle: 2x64
#: cold build 29.3 s, 32.0 s with these sources at -O1, 38.1 s at -O3; 2x32 gray-box gradient,
#: builds alternated 4 times, median 13.3 s, 14.9 s at -O1, 14.1 s at -O3).
LARGE_SOURCE_BYTES = 64 * 1024
LARGE_SOURCE_FLAGS = "-O0"


def _term_derivative(term: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """d term / d var. A product in which `var` is one plain factor and occurs nowhere else
    (a weight times an input: ``W * a``) is the product of the other factors, which is what
    sympy's product rule returns (the other factors' derivatives are zero) without its
    machinery; anything else goes to sympy."""
    if term == var:
        return sp.S.One
    if isinstance(term, sp.Mul):
        others = [f for f in term.args if f != var]
        if len(others) == len(term.args) - 1 and \
                not any(var in f.free_symbols for f in others):
            return sp.Mul(*others)
    return term.diff(var)


def _derivative(expr: sp.Expr, var: sp.Symbol,
                terms_of: dict[sp.Symbol, list[sp.Expr]] | None) -> sp.Expr:
    """d expr / d var; for a sum (``terms_of``: symbol -> terms containing it) only the
    terms that contain ``var`` are differentiated."""
    if terms_of is None:
        return _term_derivative(expr, var)
    return sp.Add(*(_term_derivative(term, var) for term in terms_of[var]))


def _terms_by_symbol(expr: sp.Expr) -> dict[sp.Symbol, list[sp.Expr]] | None:
    if not isinstance(expr, sp.Add):
        return None
    out: dict[sp.Symbol, list[sp.Expr]] = {}
    for term in expr.args:
        for sym in term.free_symbols:
            out.setdefault(sym, []).append(term)
    return out


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
        symbols = expr.free_symbols & columns.keys()
        terms_of = _terms_by_symbol(expr) if symbols else None
        for var in symbols:
            d = _derivative(expr, var, terms_of)
            for j in columns[var]:
                entries[(i, j)] = d
        for j, var in others:
            if expr.has(var):
                entries[(i, j)] = expr.diff(var)
    return sp.MutableSparseMatrix(nrow, ncol, entries)


class _JacobianMemo:
    """`fast_jacobian` that returns a copy of its earlier result for the same equations and
    variables (compared by value) within one build."""

    def __init__(self) -> None:
        self._done: dict[tuple, sp.MutableSparseMatrix] = {}

    def __call__(self, eq: sp.MatrixBase, sym_var: sp.MatrixBase) -> sp.MutableSparseMatrix:
        key = (eq.shape, tuple(eq), sym_var.shape, tuple(sym_var))
        if key not in self._done:
            self._done[key] = fast_jacobian(eq, sym_var)
        return self._done[key].copy()


def _nary_plus(*operands: sp.Basic, evaluate: bool = False) -> sp.Basic:
    """`sbmlmath`'s n-ary ``<plus/>``, with one ``Add`` of sympy expressions when evaluating
    (its own pairwise sum otherwise, and for non-sympy operands such as unit quantities)."""
    if evaluate and all(isinstance(a, sp.Expr) for a in operands):
        return sp.Add(*operands)
    with sp.evaluate(evaluate):
        return reduce(operator.add, operands[1:], operands[0]) if operands else sp.Integer(0)


def _is_zero(expr: sp.Expr) -> bool:
    """AMICI's ``expr.is_zero`` test of a stored entry, without sympy's assumption queries on
    compound expressions (1.7 ms per chained 2x32 network derivative, 7 s per build): a sum,
    product or function that is zero is the number 0 once sympy has built it (zero terms and
    factors are dropped, a zero factor makes the product 0), so only atoms are queried."""
    return bool(expr.is_zero) if expr.is_Atom else expr == 0


def fast_csc_matrix(matrix: sp.MatrixBase, rownames: list[sp.Symbol],
                    colnames: list[sp.Symbol], identifier: int | None = 0,
                    pattern_only: bool | None = False) -> tuple:
    """AMICI's ``csc_matrix`` (same arguments and results: column pointers, row values,
    sparse expressions, their symbols, the symbol matrix) from the stored non-zeros."""
    nrows, ncols = matrix.shape
    nonzero = sorted(((c, r), v) for (r, c), v in matrix.todok().items() if not _is_zero(v))
    sparse_matrix = None if pattern_only else sp.zeros(nrows, ncols)
    symbol_list, sparse_list, col_ptrs, row_vals = [], [], [], []
    k = 0
    for col in range(ncols):
        col_ptrs.append(len(row_vals))
        while k < len(nonzero) and nonzero[k][0][0] == col:
            (_, row), value = nonzero[k]
            k += 1
            row_vals.append(row)
            name = f"d{rownames[row].name}_d{colnames[col].name}"
            symbol = symbol_with_assumptions(f"{name}_{identifier}" if identifier else name)
            symbol_list.append(symbol)
            if not pattern_only:
                sparse_matrix[row, col] = symbol
                sparse_list.append(value)
    col_ptrs = col_ptrs + [len(row_vals)] if row_vals else []
    return (col_ptrs, row_vals, sparse_list if pattern_only else sp.Matrix(sparse_list),
            symbol_list, sparse_matrix)


def _static_derivative_indices(model: _de_model.DEModel, name: str) -> list[int] | None:
    """Static non-zeros of dwdw/dwdx/dwdp as AMICI defines them (the row's ``w`` is static,
    the entry is a number, or it contains no time-dependent symbol); None: use AMICI's."""
    if model._splines:
        return None
    static_w = set(model.static_indices("w"))
    dynamic = [*(s for i, s in enumerate(model.sym("w")) if i not in static_w),
               amici_time_symbol, *model.sym("x"), *model.sym("h")]
    if not all(isinstance(s, sp.Symbol) for s in dynamic):
        return None
    dynamic_set = set(dynamic)
    return [i for i, (expr, row) in enumerate(zip(model.sparseeq(name), model.rowvals(name),
                                                  strict=True))
            if row in static_w or expr.is_Number or expr.free_symbols.isdisjoint(dynamic_set)]


def _sparse_pattern(model: _de_model.DEModel, name: str) -> dict[int, dict[int, bool]]:
    """Stored non-zeros of the sparse entity `name`, row -> columns."""
    colptrs, rowvals = model.colptrs(name), model.rowvals(name)
    rows: dict[int, dict[int, bool]] = {}
    for col in range(max(len(colptrs) - 1, 0)):
        for k in range(colptrs[col], colptrs[col + 1]):
            rows.setdefault(rowvals[k], {})[col] = True
    return rows


def _static_w_indices(model: _de_model.DEModel) -> list[int] | None:
    """AMICI's static ``w`` from the sparse patterns of dwdx and dwdw (AMICI builds dense
    nw x nw and nw x nx matrices of their symbols for this: 1.9 s of the 2x64 build);
    None: use AMICI's (splines, which it recognizes in strings)."""
    if model._splines:
        return None
    dwdw = _sparse_pattern(model, "dwdw")
    return static_w(model, _sparse_pattern(model, "dwdx"), dwdw,
                    w_order(dwdw, len(model.sym("w"))))


def _patched_static_indices(original):
    def static_indices(self: _de_model.DEModel, name: str) -> list[int]:
        if name not in self._static_indices and (name in _DERIVATIVES_OF_W or name == "w"):
            found = _static_w_indices(self) if name == "w" else \
                _static_derivative_indices(self, name)
            if found is not None:
                self._static_indices[name] = found
        return original(self, name)  # returns the stored result when there is one
    return static_indices


def large_sources(folder: str | os.PathLike) -> list[str]:
    """Generated ``.cpp`` files in `folder` of at least `LARGE_SOURCE_BYTES` bytes, sorted."""
    return sorted(f.name for f in os.scandir(folder)
                  if f.name.endswith(".cpp") and f.stat().st_size >= LARGE_SOURCE_BYTES)


def _patched_print_pow(original):
    """Squares and cubes of a symbol as products: ``std::pow(a, 2)`` calls libm's ``pow``
    (C++11 promotes the int exponent to double), which gcc inlines only from -O1 on, and the
    large derivative sources are built at -O0 (`LARGE_SOURCE_FLAGS`); with the rules'
    derivatives chained (`sbmlhybrid.build._chain`), the network's ``1 - a^2`` terms made
    ``pow`` a fifth of a 2x32 gray-box adjoint gradient (perf)."""
    def print_pow(self, expr: sp.Pow) -> str:
        if expr.base.is_Symbol and expr.exp in (2, 3):
            # parenthesized: the printer places a Pow without parentheses (y / x^2)
            return "(" + "*".join([self._print(expr.base)] * int(expr.exp)) + ")"
        return original(self, expr)
    return print_pow


def _patched_compute_equation(original, jacobian: Callable):
    def compute_equation(self: _de_model.DEModel, name: str) -> None:
        if name in _DERIVATIVES_OF_W and not getattr(self, "_sbmlhybrid_chain_tried", False):
            self._sbmlhybrid_chain_tried = True
            if install_total_derivatives(self, jacobian):
                return
        original(self, name)
    return compute_equation


def _patched_compile_model(original):
    def compile_model(self: _de_export.DEExporter) -> None:
        names = large_sources(self.model_path) if LARGE_SOURCE_FLAGS else []
        if names:
            with open(os.path.join(self.model_path, "CMakeLists.txt"), "a") as cmake:
                cmake.write(f"\n# sbmlhybrid: large generated sources, see "
                            f"sbmlhybrid.build._codegen\nset_source_files_properties("
                            f"{' '.join(names)} PROPERTIES COMPILE_OPTIONS "
                            f"\"{LARGE_SOURCE_FLAGS}\")\n")
        if not replicates_amici_build():
            original(self)
            return
        build_model_extension(self.model_path, self.model_name, compiler=self.compiler,
                              verbose=self.verbose)
    return compile_model


@contextlib.contextmanager
def faster_codegen(total_w_derivatives: bool = True) -> Iterator[None]:
    """Within the block, AMICI's SBML import sums MathML with `_nary_plus`, its model code
    generation uses `fast_jacobian` (memoized within the block: `_JacobianMemo`),
    `fast_csc_matrix` and free-symbol static indices, the C++ build (CMake run directly:
    `sbmlhybrid.build._cmake`) compiles large sources with `LARGE_SOURCE_FLAGS` and runs one
    job per core (unless ``AMICI_PARALLEL_COMPILE`` is set). With `total_w_derivatives`, the
    derivatives of the rules ``w`` are chained at code generation (`sbmlhybrid.build._chain`)
    instead of at run time and squares and cubes of symbols are printed as products; without,
    the generated C++ is byte-identical to AMICI's."""
    plus = f"{{{_mathml.mathml_ns}}}plus"
    saved_plus = _mathml.mathml_op_sympy.get(plus)
    jacobian = _JacobianMemo()
    saved = (_de_model.smart_jacobian, _de_model.csc_matrix,
             _de_model.DEModel.static_indices, _de_export.DEExporter.compile_model,
             _de_model.DEModel._compute_equation, _printer.AmiciCxxCodePrinter._print_Pow,
             _printer.AmiciCxxCodePrinter.__dict__.get("_print_Pow"))
    set_env = _PARALLEL_ENV not in os.environ
    _mathml.mathml_op_sympy[plus] = _nary_plus
    _de_model.smart_jacobian = jacobian
    _de_model.csc_matrix = fast_csc_matrix
    _de_model.DEModel.static_indices = _patched_static_indices(saved[2])
    _de_export.DEExporter.compile_model = _patched_compile_model(saved[3])
    if total_w_derivatives:
        _de_model.DEModel._compute_equation = _patched_compute_equation(saved[4], jacobian)
        _printer.AmiciCxxCodePrinter._print_Pow = _patched_print_pow(saved[5])
    if set_env:
        os.environ[_PARALLEL_ENV] = str(os.cpu_count() or 1)
    try:
        yield
    finally:
        if saved_plus is None:
            _mathml.mathml_op_sympy.pop(plus, None)
        else:
            _mathml.mathml_op_sympy[plus] = saved_plus
        _de_model.smart_jacobian, _de_model.csc_matrix = saved[0], saved[1]
        _de_model.DEModel.static_indices = saved[2]
        _de_export.DEExporter.compile_model = saved[3]
        _de_model.DEModel._compute_equation = saved[4]
        if saved[6] is None:  # inherited from sympy's printer
            with contextlib.suppress(AttributeError):
                del _printer.AmiciCxxCodePrinter._print_Pow
        else:
            _printer.AmiciCxxCodePrinter._print_Pow = saved[6]
        if set_env:
            os.environ.pop(_PARALLEL_ENV, None)
