"""Candidate media: search space, generation, linear constraints, scoring, batch proposals.

Hand-written: search-space/constraint tables, mixtures of top formulations,
level permutations, constraint filtering, acquisitions (UCB, EI) and the
greedy diverse batch selection. Reused: ``scipy.stats.norm`` (EI). The
Latin hypercube is a hand-written vectorised version (scipy's ``qmc`` is ~5x slower
at a million points).

Shapes/units: a candidate matrix is (m, d) in the search space's units, with
columns in ``SearchSpace.components`` order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from sbmlhybrid.errors import InputError, Issue

SPACE_COLUMNS = ("component", "unit", "min", "max", "levels")


@dataclass
class SearchSpace:
    """Per-component bounds and discrete levels.

    Attributes:
        components: d component names. units: d unit strings.
        lower, upper: (d,) bounds. levels: d arrays of allowed levels (for permutations).
    """

    components: list[str]
    units: list[str]
    lower: np.ndarray
    upper: np.ndarray
    levels: list[np.ndarray]

    @classmethod
    def from_table(cls, table: pd.DataFrame, source: str | None = None) -> SearchSpace:
        """Parse a table with columns component, unit, min, max, levels.

        ``levels`` is a count (evenly spaced from min to max) or explicit values
        separated by ';'. Raises InputError naming every bad column/cell.
        """
        issues = [Issue("required column is missing", file=source, column=c)
                  for c in SPACE_COLUMNS if c not in table.columns]
        if issues:
            raise InputError(issues, header="Invalid search space")
        comps, units, lo, hi, levels = [], [], [], [], []
        for i, row in enumerate(table.itertuples(index=False), start=1):
            r = row._asdict()
            name = str(r["component"]).strip()
            unit = r["unit"]
            if unit is None or (isinstance(unit, float) and np.isnan(unit)) or not str(
                    unit).strip():
                issues.append(Issue(f"unit missing for component {name!r}", file=source,
                                    row=i, column="unit", entity=name))
            try:
                a, b = float(r["min"]), float(r["max"])
                if not (np.isfinite(a) and np.isfinite(b)) or a > b:
                    raise ValueError
            except (TypeError, ValueError):
                issues.append(Issue(f"min/max must be finite numbers with min <= max ({name})",
                                    file=source, row=i, column="min", entity=name))
                continue
            try:
                lev = _parse_levels(r["levels"], a, b)
            except ValueError as err:
                issues.append(Issue(f"{err} ({name})", file=source, row=i, column="levels",
                                    entity=name))
                continue
            comps.append(name)
            units.append(str(unit))
            lo.append(a)
            hi.append(b)
            levels.append(lev)
        dup = sorted({c for c in comps if comps.count(c) > 1})
        issues += [Issue("duplicate component", file=source, column="component", entity=c)
                   for c in dup]
        if issues:
            raise InputError(issues, header="Invalid search space")
        return cls(comps, units, np.array(lo), np.array(hi), levels)

    @property
    def dim(self) -> int:
        """Number of components d."""
        return len(self.components)


def _parse_levels(value, lo: float, hi: float) -> np.ndarray:
    if isinstance(value, str) and ";" in value:
        lev = np.array([float(v) for v in value.split(";") if v.strip()])
    else:
        try:
            k = int(float(value))
        except (TypeError, ValueError):
            raise ValueError("levels must be a count or ';'-separated values") from None
        if k < 1:
            raise ValueError("levels must be >= 1")
        lev = np.linspace(lo, hi, k) if k > 1 else np.array([(lo + hi) / 2])
    if np.any(lev < lo) or np.any(lev > hi) or not np.all(np.isfinite(lev)):
        raise ValueError("levels must lie within [min, max]")
    return np.unique(lev)


@dataclass
class LinearConstraint:
    """lower <= sum_j coef_j * x_j <= upper (e.g. osmolality, cost budget)."""

    name: str
    coefficients: np.ndarray  # (d,) aligned with SearchSpace.components
    lower: float = -np.inf
    upper: float = np.inf
    offset: float = 0.0

    def value(self, x: np.ndarray) -> np.ndarray:
        """Constraint function (m,) of candidates x (m, d)."""
        return self.offset + x @ self.coefficients


def constraints_from_table(table: pd.DataFrame, space: SearchSpace,
                           source: str | None = None) -> list[LinearConstraint]:
    """Wide table: columns name, lower, upper, [offset], and one coefficient column per
    component (missing component columns mean 0). Unknown columns raise InputError."""
    issues = [Issue("required column is missing", file=source, column=c)
              for c in ("name", "lower", "upper") if c not in table.columns]
    known = {"name", "lower", "upper", "offset", *space.components}
    issues += [Issue("column is neither a component of the search space nor name/lower/"
                     "upper/offset", file=source, column=str(c))
               for c in table.columns if str(c) not in known]
    if issues:
        raise InputError(issues, header="Invalid constraints")
    out = []
    for i, row in table.reset_index(drop=True).iterrows():
        coef = np.array([float(row[c]) if c in table.columns and pd.notna(row[c]) else 0.0
                         for c in space.components])
        lo = float(row["lower"]) if pd.notna(row["lower"]) else -np.inf
        hi = float(row["upper"]) if pd.notna(row["upper"]) else np.inf
        off = float(row["offset"]) if "offset" in table.columns and pd.notna(
            row.get("offset")) else 0.0
        if lo > hi:
            issues.append(Issue("lower > upper", file=source, row=i + 1, column="lower"))
        out.append(LinearConstraint(str(row["name"]), coef, lo, hi, off))
    if issues:
        raise InputError(issues, header="Invalid constraints")
    return out


def feasible(x: np.ndarray, constraints: list[LinearConstraint], tol: float = 1e-9) -> np.ndarray:
    """Boolean (m,) mask of candidates satisfying every constraint."""
    ok = np.ones(len(x), dtype=bool)
    for c in constraints:
        v = c.value(x)
        ok &= (v >= c.lower - tol) & (v <= c.upper + tol)
    return ok


def latin_hypercube(space: SearchSpace, n: int, rng: np.random.Generator) -> np.ndarray:
    """n Latin-hypercube points (n, d) within the bounds (one stratum per row and
    column: u = (permutation + uniform) / n, the same design as scipy's
    ``qmc.LatinHypercube`` without its scrambling overhead)."""
    u = np.empty((n, space.dim))
    for j in range(space.dim):
        u[:, j] = (rng.permutation(n) + rng.random(n)) / n
    return space.lower + u * (space.upper - space.lower)


def top_mixtures(top: np.ndarray, n: int, rng: np.random.Generator,
                 parents: int = 3) -> np.ndarray:
    """n random convex mixtures (Dirichlet weights) of ``parents`` rows drawn from
    ``top`` (k, d); mixtures of feasible points satisfy every linear constraint."""
    top = np.asarray(top, float)
    k = min(parents, len(top))
    idx = rng.integers(0, len(top), size=(n, k))
    w = rng.dirichlet(np.ones(k), size=n)
    out = w[:, :1] * top[idx[:, 0]]
    for i in range(1, k):
        out += w[:, i : i + 1] * top[idx[:, i]]
    return out


def level_permutations(space: SearchSpace, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points (n, d): each column is its levels tiled to n rows and randomly permuted,
    so every level of every component appears equally often."""
    out = np.empty((n, space.dim))
    for j, lev in enumerate(space.levels):
        col = np.resize(lev, n)
        out[:, j] = col[rng.permutation(n)]
    return out


def generate_candidates(
    space: SearchSpace, n: int, rng: np.random.Generator, top: np.ndarray | None = None,
    constraints: list[LinearConstraint] | None = None,
    shares: tuple[float, float, float] = (0.4, 0.3, 0.3), max_rounds: int = 20,
) -> np.ndarray:
    """About n feasible candidates (m, d), m <= n: LHS, top mixtures (if ``top`` is given,
    else its share goes to LHS) and level permutations, filtered by ``constraints``.

    Infeasible draws are replaced by new rounds (up to ``max_rounds``); fewer than
    n rows come back only when the feasible region is very small.
    """
    constraints = constraints or []
    if top is not None and constraints:
        top = top[feasible(top, constraints)]
    have_top = top is not None and len(top) > 0
    s_lhs, s_mix, s_lev = shares
    if not have_top:
        s_lhs, s_mix = s_lhs + s_mix, 0.0
    chunks, got = [], 0
    for _ in range(max_rounds):
        need = n - got
        if need <= 0:
            break
        k_mix = int(round(s_mix * need))
        k_lev = int(round(s_lev * need))
        k_lhs = need - k_mix - k_lev
        parts = [latin_hypercube(space, k_lhs, rng) if k_lhs else np.empty((0, space.dim)),
                 level_permutations(space, k_lev, rng) if k_lev else np.empty((0, space.dim))]
        if k_mix:
            parts.append(top_mixtures(top, k_mix, rng))
        x = np.vstack(parts)
        if constraints:
            x = x[feasible(x, constraints)]
        chunks.append(x)
        got += len(x)
    x = np.vstack(chunks)[:n] if chunks else np.empty((0, space.dim))
    return x


def score_candidates(model, x: np.ndarray, columns: list[str], batch_size: int = 4096
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Batched ensemble scoring: (mean (m,), std (m,)) for candidates x (m, d).

    ``model`` is a fitted TransferMLPRegressor; ``columns`` names x's columns and
    must cover the model's input columns (extra search-space columns raise).
    """
    cols = list(model.input_columns_)
    missing = [c for c in cols if c not in columns]
    if missing:
        raise InputError([Issue("model input column is not in the search space", column=c)
                          for c in missing], header="Search space does not match the model")
    pos = {c: j for j, c in enumerate(columns)}
    design = np.tile(model.x_fill_, (len(x), 1))
    for j, c in enumerate(model.columns_):
        if c in pos and c in cols:
            design[:, j] = x[:, pos[c]]
    return model._predict_array(design, return_std=True, batch_size=batch_size)


def acquisition(mean: np.ndarray, std: np.ndarray, kind: str = "ucb", beta: float = 2.0,
                best: float | None = None, xi: float = 0.0) -> np.ndarray:
    """UCB = mean + beta * std, or expected improvement over ``best`` (maximisation)."""
    kind = kind.lower()
    if kind == "ucb":
        return mean + beta * std
    if kind == "ei":
        best = float(np.max(mean)) if best is None else best
        s = np.maximum(std, 1e-12)
        z = (mean - best - xi) / s
        return (mean - best - xi) * norm.cdf(z) + s * norm.pdf(z)
    if kind == "mean":
        return mean.copy()
    raise InputError(Issue(f"unknown acquisition {kind!r}; use 'ucb', 'ei' or 'mean'"))


def select_batch(x: np.ndarray, score: np.ndarray, n: int, space: SearchSpace,
                 min_distance: float = 0.1, pool: int = 20000) -> np.ndarray:
    """Greedy diverse batch: indices (<= n,) of the best-scoring candidates such that
    every pair is >= ``min_distance`` apart (RMS distance in [0, 1]-scaled units).
    The distance is relaxed (halved) when too few candidates pass."""
    order = np.argsort(-score, kind="stable")[: max(pool, n)]
    z = (x[order] - space.lower) / np.where(space.upper > space.lower,
                                            space.upper - space.lower, 1.0)
    dist = min_distance
    while True:
        chosen: list[int] = []
        mind = np.full(len(order), np.inf)
        for i in range(len(order)):
            if mind[i] < dist:
                continue
            chosen.append(i)
            if len(chosen) == n:
                break
            d = np.sqrt(np.mean((z - z[i]) ** 2, axis=1))
            mind = np.minimum(mind, d)
        if len(chosen) >= min(n, len(order)) or dist < 1e-6:
            return order[np.array(chosen, dtype=int)]
        dist /= 2
