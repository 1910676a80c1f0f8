"""Validation and reduction of a stoichiometric network (numpy/scipy, build time only).

The constraint set ``{v : S_int v = 0, lb <= v <= ub}`` does not depend on the
measured rates, so everything about it is settled once, here:

* shapes, NaN/inf, ``lb > ub`` and unknown/overlapping rows are rejected with an
  `InputError` naming the flux or metabolite;
* emptiness is decided by an LP; if empty, an elastic LP names the bounds that
  would have to move, and by how much;
* bounds that hold with equality at every feasible point (``lb == ub``, or
  implied by the balances: blocked directions) are found by flux variability
  LPs and those fluxes are fixed, so the interior point solver always sees a
  set with a non-empty interior;
* the balances are eliminated: ``v = v0 + T z`` with ``T`` an orthonormal basis
  of the null space of the free columns (rank-deficient ``S_int`` is fine:
  dependent balances such as conserved moieties are redundant);
* the bounds become unit-norm rows ``G z <= h``; coupled fluxes (parallel rows
  of ``T``) are merged to their tightest bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from sbmlhybrid.errors import InputError, Issue

RowSpec = Sequence[int] | Sequence[str] | Sequence[bool] | np.ndarray


@dataclass(frozen=True)
class ReducedNetwork:
    """Everything the layer needs, as float64 numpy arrays.

    Attributes:
        flux_ids, metabolite_ids: names (n,) and (n_rows,).
        measured, internal: row indices into ``S``.
        S_m: (n_measured, n) measured rows.
        v0: (n,) particular flux vector (fixed fluxes hold their value).
        T: (n, k) orthonormal basis of the free directions (zero on fixed rows).
        G, h: (m, k), (m,) bounds in z: ``G z <= h`` (rows unit norm).
        origin: for each row of G, (flux index, "lower" | "upper").
        fixed: indices of fluxes fixed by ``lb == ub`` or by implied equality.
        lb, ub: the (validated) bounds (n,).
    """

    flux_ids: list[str]
    metabolite_ids: list[str]
    measured: list[int]
    internal: list[int]
    S_m: np.ndarray
    v0: np.ndarray
    T: np.ndarray
    G: np.ndarray
    h: np.ndarray
    origin: list[tuple[int, str]]
    fixed: list[int]
    lb: np.ndarray
    ub: np.ndarray


def _resolve_rows(spec: RowSpec | None, ids: list[str], what: str) -> list[int] | None:
    if spec is None:
        return None
    arr = np.asarray(spec)
    if arr.dtype == bool:
        if arr.shape != (len(ids),):
            raise InputError(
                f"{what}: boolean mask has shape {arr.shape}, expected ({len(ids)},)"
            )
        return [int(i) for i in np.flatnonzero(arr)]
    out: list[int] = []
    issues: list[Issue] = []
    for item in list(spec):
        if isinstance(item, str):
            if item not in ids:
                issues.append(Issue(f"{what}: unknown metabolite {item!r}", entity=item))
                continue
            out.append(ids.index(item))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not 0 <= int(item) < len(ids):
                issues.append(Issue(f"{what}: row index {item} out of range 0..{len(ids) - 1}"))
                continue
            out.append(int(item))
        else:
            issues.append(Issue(f"{what}: {item!r} is neither a metabolite id nor a row index"))
    dup = sorted({ids[i] for i in out if out.count(i) > 1})
    issues += [Issue(f"{what}: metabolite {d!r} listed twice", entity=d) for d in dup]
    if issues:
        raise InputError(issues, header="Invalid flux network rows")
    return out


def _vector(x: object, n: int, name: str, default: float, flux_ids: list[str]) -> np.ndarray:
    if x is None:
        return np.full(n, default)
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise InputError(f"{name} has shape {arr.shape}, expected ({n},) (one per flux)")
    nan = [flux_ids[j] for j in np.flatnonzero(np.isnan(arr))]
    if nan:
        raise InputError(
            [Issue(f"{name} of flux {f!r} is NaN", entity=f) for f in nan], "Invalid flux bounds"
        )
    return arr


def _lp(c: np.ndarray, A_eq: np.ndarray, lb: np.ndarray, ub: np.ndarray):
    bounds = [(None if np.isinf(a) else a, None if np.isinf(b) else b) for a, b in zip(lb, ub)]
    return linprog(c, A_eq=A_eq, b_eq=np.zeros(A_eq.shape[0]), bounds=bounds, method="highs")


def _explain_infeasible(
    S_int: np.ndarray, lb: np.ndarray, ub: np.ndarray, flux_ids: list[str], mets: list[str]
) -> InputError:
    """Elastic LP: minimal total bound relaxation; name the fluxes it moves."""
    n = lb.size
    fin_l, fin_u = np.isfinite(lb), np.isfinite(ub)
    # variables: v (n), a (n) >= 0 relaxes lb, b (n) >= 0 relaxes ub
    c = np.concatenate([np.zeros(n), fin_l.astype(float), fin_u.astype(float)])
    A_eq = np.hstack([S_int, np.zeros_like(S_int), np.zeros_like(S_int)])
    eye, zero = np.eye(n), np.zeros((n, n))
    A_ub = np.vstack([np.hstack([-eye, -eye, zero])[fin_l], np.hstack([eye, zero, -eye])[fin_u]])
    b_ub = np.concatenate([-lb[fin_l], ub[fin_u]])
    bounds = [(None, None)] * n + [(0, None)] * (2 * n)
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=np.zeros(S_int.shape[0]),
                  bounds=bounds, method="highs")
    issues: list[Issue] = []
    if res.status == 0:
        a, b = res.x[n : 2 * n], res.x[2 * n :]
        for j in range(n):
            if a[j] > 1e-9:
                issues.append(Issue(
                    f"lower bound {lb[j]:g} of flux {flux_ids[j]!r} must be lowered by "
                    f"at least {a[j]:.6g} for the balances to hold", entity=flux_ids[j]))
            if b[j] > 1e-9:
                issues.append(Issue(
                    f"upper bound {ub[j]:g} of flux {flux_ids[j]!r} must be raised by "
                    f"at least {b[j]:.6g} for the balances to hold", entity=flux_ids[j]))
    if not issues:
        issues.append(Issue("no flux vector satisfies the balances of "
                            + ", ".join(mets) + " within the bounds"))
    return InputError(issues, header="Infeasible flux bounds")


def _check_matrix(S: object, flux_ids: Sequence[str] | None,
                  metabolite_ids: Sequence[str] | None) -> tuple[np.ndarray, list[str], list[str]]:
    """The matrix as float64 and the flux and metabolite ids (defaults v<j>, m<i>)."""
    S = np.asarray(S, dtype=float)
    if S.ndim != 2 or 0 in S.shape:
        raise InputError(f"stoichiometric matrix must be 2-D and non-empty, got shape {S.shape}")
    n_rows, n = S.shape
    fids = [str(f) for f in flux_ids] if flux_ids is not None else [f"v{j}" for j in range(n)]
    mids = (
        [str(m) for m in metabolite_ids]
        if metabolite_ids is not None
        else [f"m{i}" for i in range(n_rows)]
    )
    if len(fids) != n or len(mids) != n_rows:
        raise InputError(
            f"got {len(fids)} flux ids and {len(mids)} metabolite ids for a "
            f"{n_rows} x {n} stoichiometric matrix"
        )
    bad = np.argwhere(~np.isfinite(S))
    if bad.size:
        raise InputError(
            [Issue(f"stoichiometric coefficient of {mids[i]!r} in flux {fids[j]!r} is "
                   f"{S[i, j]}", entity=fids[j]) for i, j in bad[:20]],
            header="Invalid stoichiometric matrix",
        )
    return S, fids, mids


def _split_rows(S: np.ndarray, measured_rows: RowSpec, internal_rows: RowSpec | None,
                mids: list[str]) -> tuple[list[int], list[int]]:
    """Measured and balanced (internal) row indices: disjoint, measured rows not empty."""
    measured = _resolve_rows(measured_rows, mids, "measured_rows")
    if not measured:
        raise InputError("at least one measured metabolite is required")
    internal = _resolve_rows(internal_rows, mids, "internal_rows")
    if internal is None:
        internal = [i for i in range(S.shape[0]) if i not in measured]
    both = sorted(set(measured) & set(internal))
    if both:
        raise InputError([Issue(f"metabolite {mids[i]!r} is both measured and balanced",
                                entity=mids[i]) for i in both], header="Invalid flux network rows")
    dead = [i for i in measured if not np.any(S[i])]
    if dead:
        raise InputError([Issue(f"measured metabolite {mids[i]!r} takes part in no flux, so "
                                "its rate cannot be explained", entity=mids[i]) for i in dead],
                         header="Rank problem in flux network")
    return measured, internal


def _check_bounds(lb: object, ub: object, fids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Bounds as (n,) arrays (default -inf/+inf); InputError for NaN, crossed or inf bounds."""
    n = len(fids)
    lb = _vector(lb, n, "lower bound", -np.inf, fids)
    ub = _vector(ub, n, "upper bound", np.inf, fids)
    issues = [Issue(f"flux {fids[j]!r}: lower bound {lb[j]:g} > upper bound {ub[j]:g}",
                    entity=fids[j]) for j in range(n) if lb[j] > ub[j]]
    issues += [Issue(f"flux {fids[j]!r}: lower bound is +inf", entity=fids[j])
               for j in range(n) if lb[j] == np.inf]
    issues += [Issue(f"flux {fids[j]!r}: upper bound is -inf", entity=fids[j])
               for j in range(n) if ub[j] == -np.inf]
    if issues:
        raise InputError(issues, header="Infeasible flux bounds")
    return lb, ub


def _implied_equalities(A_eq: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> dict[int, float]:
    """Flux index -> value for every finite bound that holds at every feasible point
    (``lb == ub``, or found by a flux variability LP)."""
    n = lb.size
    scale = 1.0 + np.max(np.abs(np.concatenate([lb[np.isfinite(lb)], ub[np.isfinite(ub)], [0]])))
    fixed_val: dict[int, float] = {j: lb[j] for j in range(n) if lb[j] == ub[j]}
    for j in range(n):
        if j in fixed_val:
            continue
        for bound, sign in ((lb[j], -1.0), (ub[j], 1.0)):
            if np.isfinite(bound):
                c = np.zeros(n)
                c[j] = sign  # maximise v_j to test lb, minimise to test ub
                res = _lp(c, A_eq, lb, ub)
                if res.status == 0 and abs(res.x[j] - bound) <= 1e-9 * scale:
                    fixed_val[j] = float(bound)
                    break
    return fixed_val


def _eliminate_balances(S_int: np.ndarray, fixed_val: dict[int, float]
                        ) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """``v = v0 + T z``: particular solution v0 (n,), null-space basis T (n, k) of the free
    columns (zero on fixed rows), and the fixed and free flux indices."""
    n = S_int.shape[1]
    fixed = sorted(fixed_val)
    free = [j for j in range(n) if j not in fixed_val]
    v0 = np.zeros(n)
    v0[fixed] = [fixed_val[j] for j in fixed]
    T = np.zeros((n, 0))
    if free:
        Sf = S_int[:, free]
        rhs = -S_int[:, fixed] @ v0[fixed] if fixed else np.zeros(S_int.shape[0])
        if Sf.shape[0]:
            p = np.linalg.lstsq(Sf, rhs, rcond=None)[0]
            _, sv, Vt = np.linalg.svd(Sf)
            rank = int(np.sum(sv > max(Sf.shape) * np.finfo(float).eps * max(sv.max(), 1.0)))
            N = Vt[rank:].T
        else:
            p, N = np.zeros(len(free)), np.eye(len(free))
        v0[free] = p
        T = np.zeros((n, N.shape[1]))
        T[free] = N
    return v0, T, fixed, free


def _bound_rows(T: np.ndarray, v0: np.ndarray, lb: np.ndarray, ub: np.ndarray, free: list[int]
                ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """The bounds of the free fluxes as unit-norm rows ``G z <= h`` and their origin;
    parallel rows (coupled fluxes) merged to the tightest."""
    rows: list[np.ndarray] = []
    h: list[float] = []
    origin: list[tuple[int, str]] = []
    for j in free:
        norm = np.linalg.norm(T[j])
        if norm < 1e-10:  # blocked flux: constant v0[j], inside its bounds (feasible set)
            continue
        if np.isfinite(lb[j]):
            rows.append(-T[j] / norm)
            h.append((v0[j] - lb[j]) / norm)
            origin.append((j, "lower"))
        if np.isfinite(ub[j]):
            rows.append(T[j] / norm)
            h.append((ub[j] - v0[j]) / norm)
            origin.append((j, "upper"))
    keep: list[int] = []
    for i in range(len(rows)):  # merge parallel rows (coupled fluxes): keep the tightest
        dup = next((t for t in keep if rows[t] @ rows[i] > 1 - 1e-12), None)
        if dup is None:
            keep.append(i)
        elif h[i] < h[dup]:
            keep[keep.index(dup)] = i
    G = np.array([rows[i] for i in keep]).reshape(len(keep), T.shape[1])
    return G, np.array([h[i] for i in keep]), [origin[i] for i in keep]


def reduce_network(
    S: object,
    measured_rows: RowSpec,
    internal_rows: RowSpec | None = None,
    lb: object = None,
    ub: object = None,
    flux_ids: Sequence[str] | None = None,
    metabolite_ids: Sequence[str] | None = None,
) -> ReducedNetwork:
    """Validate and reduce a network; see the module docstring."""
    S, fids, mids = _check_matrix(S, flux_ids, metabolite_ids)
    n = S.shape[1]
    measured, internal = _split_rows(S, measured_rows, internal_rows, mids)
    lb, ub = _check_bounds(lb, ub, fids)
    S_int = S[internal] if internal else np.zeros((0, n))
    A_eq = S_int if S_int.shape[0] else np.zeros((1, n))
    if _lp(np.zeros(n), A_eq, lb, ub).status != 0:
        raise _explain_infeasible(A_eq, lb, ub, fids, [mids[i] for i in internal])
    v0, T, fixed, free = _eliminate_balances(S_int, _implied_equalities(A_eq, lb, ub))
    G, h, origin = _bound_rows(T, v0, lb, ub, free)
    return ReducedNetwork(
        flux_ids=fids, metabolite_ids=mids, measured=measured, internal=internal,
        S_m=S[measured], v0=v0, T=T, G=G, h=h, origin=origin, fixed=fixed, lb=lb, ub=ub,
    )
