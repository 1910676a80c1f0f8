"""Total derivatives of AMICI's expressions ``w``, chained once at code generation.

Reused: AMICI's symbolic model and code generation. Hand-written (and private to
`sbmlhybrid.build`, like `_codegen`, because it sets entries of AMICI's private
``DEModel._eqs``), and why: AMICI generates the *partial* derivatives dw/dp, dw/dx and dw/dw
of its expressions ``w`` (assignment rules) and chains them at run time. Every right-hand-side
evaluation with sensitivities, and every adjoint step, computes
``dwdp = sum_k dwdw^k dwdp_explicit`` with ``w_recursion_depth`` sparse products (and the same
for dwdx). An unrolled network is a deep chain of rules (the CHO gray box's 2-6-6-1 network:
depth 8), and `perf` on its adjoint gradient put 80 % of the model's time in AMICI's sparse
matrix routines of that recursion (``scatter``, ``SUNMatZero_Sparse``, ``sparse_multiply``,
``sparse_sum``) and 0.1 % in the generated model functions.

Here the chain rule is applied once, symbolically: for the rules that something other than a
rule reads (the right-hand side, the observables, the event roots: the only entities with
``w`` in their C++ signature), ``dwdp`` and ``dwdx`` hold the total derivatives
``(I - dwdw)^-1 dwd{p,x}_explicit``, built in dependency order from the rules they read;
``dwdw`` is empty and the recursion depth 0. AMICI's other symbolic chains stay correct:
``dydw`` (chained with ``dwdw`` powers) becomes the partial derivative, and AMICI multiplies
it with the total ``dwdx``/``dwdp``, as it does the right-hand side's ``dxdotdw`` in C++.
Which rules are static (evaluated once) is decided with the original ``dwdw`` pattern.

Not used (AMICI's recursion instead) for models with conservation laws or splines, whose
``dwdx`` AMICI builds differently, and when the totals would exceed `MAX_OPERATIONS` (their
size grows with the number of paths through the rules: wide networks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import amici._symbolic.de_model as _de_model
import sympy as sp
from amici.importers.utils import amici_time_symbol

__all__ = ["MAX_OPERATIONS", "install_total_derivatives", "static_w", "w_order"]

#: The totals are generated only up to this many operations (counted before they are built),
#: which bounds the extra code generation and C++ compile time. Measured under load 3 on
#: the CHO gray box with a 2 -> w -> w -> 1 tanh network: w = 6 4,556 operations; w = 32
#: 82,582 (cold build 29.7 s vs 21.6-25.3 s, adjoint gradient 1.37 s vs 3.84 s); w = 64
#: 321,526 (cold build 71.5 s vs 34.6 s, gradient 4.55 s vs 14.0 s): the 2x64 build would
#: miss the 30 s compile goal, so it keeps AMICI's chain rule.
MAX_OPERATIONS = 150_000
#: Functions whose arguments AMICI turns into event roots (implicit events).
_SWITCHES = (sp.Heaviside, sp.Piecewise, sp.Min, sp.Max, sp.Abs, sp.sign)
_NAMES = ("dwdw", "dwdx", "dwdp")

Sparse = dict[int, dict[int, sp.Expr]]
logger = logging.getLogger(__name__)


def _rows(matrix: sp.MatrixBase, own: dict[sp.Expr, sp.Symbol]) -> Sparse:
    """Non-zeros by row, with the formulas in `own` replaced by their rules' symbols."""
    out: Sparse = {}
    for (i, j), v in matrix.todok().items():
        if not v.is_zero:
            out.setdefault(i, {})[j] = v.xreplace(own) if own else v
    return out


def _size(expr: sp.Expr) -> int:
    return 1 if expr.is_Atom else int(sp.count_ops(expr)) + 1


def w_order(rules: Sparse, n: int) -> list[int]:
    """Indices of ``w`` with every rule after the rules it reads (``rules[k]``: read by k)."""
    done: set[int] = set()
    order: list[int] = []
    for root in range(n):
        stack = [(root, False)]
        while stack:
            k, expanded = stack.pop()
            if k in done:
                continue
            if expanded:
                done.add(k)
                order.append(k)
                continue
            stack.append((k, True))
            stack.extend((j, False) for j in rules.get(k, {}) if j not in done)
    return order


def _readers_of_w(model: _de_model.DEModel) -> list[sp.Basic]:
    """Expressions of the entities whose C++ functions read ``w`` (AMICI's
    `var_in_function_signature`: right-hand side, observables, event roots).

    AMICI's roots do not exist yet when the rules' derivatives are first requested (and
    computing them then breaks its event processing), so they are taken from their sources:
    the events' triggers and the arguments of the switches in the rules and the right-hand
    side, which become implicit roots. A superset only adds rows of totals.
    """
    out: list[sp.Basic] = [*model.eq("xdot"), *model.eq("y")]
    out += [event.get_val() for event in model._events]
    for expr in [*model.eq("w"), *model.eq("xdot")]:
        out += [arg for f in expr.atoms(*_SWITCHES) for arg in f.args]
    return out


def _total_sizes(explicit: dict[tuple[int, int], int], dwdw: dict[tuple[int, int], int],
                 order: list[int]) -> dict[int, dict[int, int]]:
    """Operations of every rule's total derivatives as `_totals` builds them (no sympy)."""
    rows: dict[int, dict[int, int]] = {}
    for (k, v), n in explicit.items():
        rows.setdefault(k, {})[v] = n
    reads: dict[int, list[tuple[int, int]]] = {}
    for (k, j), n in dwdw.items():
        reads.setdefault(k, []).append((j, n))
    size: dict[int, dict[int, int]] = {}
    for k in order:
        tsize = dict(rows.get(k, {}))
        for j, n in reads.get(k, []):
            for v, m in size.get(j, {}).items():
                tsize[v] = tsize.get(v, 0) + n + m + 1
        size[k] = tsize
    return size


def _totals(explicit: Sparse, dwdw: Sparse, order: list[int]) -> Sparse:
    """Total derivatives of every rule, in dependency order: d_k = e_k + sum_j dwdw_kj d_j."""
    total: Sparse = {}
    for k in order:
        terms: dict[int, list[sp.Expr]] = {v: [e] for v, e in explicit.get(k, {}).items()}
        for j, d in dwdw.get(k, {}).items():
            for v, t in total.get(j, {}).items():
                terms.setdefault(v, []).append(d * t)
        total[k] = {v: sp.Add(*ts) for v, ts in terms.items()}
    return total


def static_w(model: _de_model.DEModel, dwdx: Sparse, dwdw: Sparse, order: list[int]
              ) -> list[int]:
    """AMICI's static ``w`` (no dependence on t, x or h, directly or through other rules),
    from the non-zero patterns of ``dwdx`` and ``dwdw`` (rows -> columns) and `w_order`."""
    dynamic_syms = {*model.sym("h"), amici_time_symbol}
    dynamic: set[int] = set()
    for k, expr in zip(range(len(model.eq("w"))), model.eq("w"), strict=True):
        if dwdx.get(k) or not expr.free_symbols.isdisjoint(dynamic_syms):
            dynamic.add(k)
    for k in order:  # dependencies first
        if any(j in dynamic for j in dwdw.get(k, {})):
            dynamic.add(k)
    return [k for k in range(len(model.eq("w"))) if k not in dynamic]


def install_total_derivatives(model: _de_model.DEModel,
                              fast_jacobian: Callable[[sp.MatrixBase, sp.MatrixBase],
                                                      sp.MatrixBase]) -> bool:
    """Set ``dwdw`` (empty), ``dwdx`` and ``dwdp`` (totals) of `model`; False: not done.

    Must run before anything reads the three (the patched ``_compute_equation`` of
    `sbmlhybrid.build._codegen` calls it on the first request of any of them, with its
    `fast_jacobian`: sparse Jacobian of equations w.r.t. symbols).
    """
    w = model.eq("w")
    nw = w.shape[0]
    if not nw or model._splines or model.num_cons_law():
        return False
    w_syms = model.sym("w")
    # a rule's value where its formula recurs in a derivative (d tanh(z)/dz = 1 - tanh(z)^2
    # -> 1 - a^2): fdwdp and fdwdx evaluate the rules first, so the value is current
    own = {e: s for e, s in zip(w, w_syms, strict=True) if isinstance(e, sp.Function)}
    dwdw = _rows(fast_jacobian(w, w_syms), own)
    if not dwdw:  # no chain: AMICI's partial derivatives are already total
        return False
    index = {s: i for i, s in enumerate(w_syms)}
    read = sorted({index[s] for expr in _readers_of_w(model) for s in expr.free_symbols
                   if s in index})
    order = w_order(dwdw, nw)
    dwdw_sizes = {(k, j): _size(d) for k, row in dwdw.items() for j, d in row.items()}
    explicit = {var: _rows(fast_jacobian(w, model.sym(var)), own) for var in ("x", "p")}
    total_size = 0
    for rows in explicit.values():
        sizes = _total_sizes({(k, v): _size(e) for k, row in rows.items()
                              for v, e in row.items()}, dwdw_sizes, order)
        total_size += sum(n for k in read for n in sizes.get(k, {}).values())
    used = total_size <= MAX_OPERATIONS
    logger.info("rule derivatives %s: totals of %d read rules, %d operations (limit %d)",
                "chained at code generation" if used else "left to AMICI's run-time chain "
                "rule", len(read), total_size, MAX_OPERATIONS)
    if not used:
        return False
    model._static_indices["w"] = static_w(model, explicit["x"], dwdw, order)
    for var, rows in explicit.items():
        total = _totals(rows, dwdw, order)
        entries = {(k, v): e for k in read for v, e in total.get(k, {}).items()}
        model._eqs[f"dwd{var}"] = sp.MutableSparseMatrix(nw, model.sym(var).shape[0], entries)
    model._eqs["dwdw"] = sp.MutableSparseMatrix(nw, nw, {})
    model._w_recursion_depth = 0
    return True

