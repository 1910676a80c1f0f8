"""The sigma of every measurement at nominal parameters must be finite and > 0.

PEtab constrains the *result* of an observable's `noiseFormula`, not its noise parameters:
Bachmann_MSB2011 uses `noiseParameter1_obs + noiseParameter2_obs` with the second noise
parameter set to 0 in the measurement table, which is valid. So instead of checking each
noise parameter, the formula is evaluated per measurement row with its placeholders
substituted (numbers as given, parameter ids by their parameter-table `nominalValue`,
linear scale) and rejected only when sigma <= 0 or non-finite. Formulas that depend on
anything else (model states, the observable's own value) cannot be evaluated before a
simulation and are left to the simulator.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import petab.v1 as petab
import sympy as sp

from sbmlhybrid.errors import Issue

_PLACEHOLDER = re.compile(r"^(noise|observable)Parameter(\d+)_(.+)$")


def _override_parts(raw: object) -> list[str | float]:
    """The `;`-separated overrides of one measurement-table cell ([] for an empty cell)."""
    if isinstance(raw, str):
        # empty parts are kept so that later overrides keep their positions
        return [part.strip() for part in raw.split(";")] if raw.strip() else []
    if raw is None or pd.isna(raw):
        return []
    return [float(raw)]


def _value(part: str | float, nominal: dict[str, float]) -> float | None:
    """Numeric value of one override: a number, or a parameter id's nominal value."""
    number = pd.to_numeric(part, errors="coerce")
    if not pd.isna(number):
        # inf is reported by check_noise_overrides; None avoids a second issue per row
        return float(number) if math.isfinite(number) else None
    return nominal.get(str(part))


def _nominal_values(parameter_df: pd.DataFrame) -> dict[str, float]:
    """Parameter id -> nominal value (linear scale, as PEtab stores it)."""
    if petab.NOMINAL_VALUE not in parameter_df:
        return {}
    values = pd.to_numeric(parameter_df[petab.NOMINAL_VALUE], errors="coerce")
    return {str(pid): float(v) for pid, v in values.items() if not pd.isna(v)}


def _parse(raw: object) -> sp.Expr | None:
    """A noise formula as sympy expression; None when petab cannot parse it (the linter
    reports the syntax error or the empty cell)."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    if isinstance(raw, int | float):
        return sp.Float(raw)
    try:
        return petab.math.sympify_petab(str(raw))
    except Exception:  # petab raises several types for unparsable formulas
        return None


def _sigma(expr: sp.Expr, values: dict[sp.Symbol, float]) -> float:
    """Float value of `expr` with `values` substituted; NaN when not a real number."""
    try:
        result = complex(expr.xreplace({s: sp.Float(v) for s, v in values.items()}).evalf())
    except (TypeError, ValueError):  # zoo, nan and unevaluated expressions
        return math.nan
    return result.real if result.imag == 0 else math.nan


def _row_values(expr: sp.Expr, oid: str, noise: object, observable: object,
                nominal: dict[str, float]) -> dict[sp.Symbol, float] | None:
    """Values of every free symbol of `expr` for one measurement row with the given
    noiseParameters / observableParameters cells; None when one of them cannot be known
    before simulating (a model state, a missing override)."""
    overrides = {"noise": _override_parts(noise), "observable": _override_parts(observable)}
    values: dict[sp.Symbol, float] = {}
    for symbol in expr.free_symbols:
        name = str(symbol)
        match = _PLACEHOLDER.match(name)
        if match and match.group(3) == oid:
            parts = overrides[match.group(1)]
            index = int(match.group(2)) - 1
            value = _value(parts[index], nominal) if index < len(parts) else None
        else:
            value = nominal.get(name)
        if value is None:
            return None
        values[symbol] = value
    return values


def check_sigmas(problem: petab.Problem, files: dict[str, str | None]) -> list[Issue]:
    """Issues for measurements whose sigma at nominal parameters is <= 0 or non-finite.

    Args:
        problem: A PEtab v1 problem whose tables have the required columns.
        files: Table kind -> file path, for the issues' file names.

    Returns:
        One issue per bad measurement row (measurement file, 1-based line, column
        noiseParameters); or one per observable (observable file, column noiseFormula) when
        its formula has no placeholders, so sigma does not depend on the row.
    """
    nominal = _nominal_values(problem.parameter_df)
    meas = problem.measurement_df
    empty = pd.Series(np.nan, index=meas.index, dtype=object)
    noise_col = meas.get(petab.NOISE_PARAMETERS, empty)
    obs_col = meas.get(petab.OBSERVABLE_PARAMETERS, empty)
    oids = meas[petab.OBSERVABLE_ID].to_numpy()
    issues: list[Issue] = []
    for obs_row, (oid, formula) in enumerate(
            problem.observable_df[petab.NOISE_FORMULA].items(), start=2):
        positions = np.flatnonzero(oids == oid)
        expr = _parse(formula)
        if expr is None or not len(positions):
            continue
        placeholders = any(_PLACEHOLDER.match(str(s)) for s in expr.free_symbols)
        cache: dict[tuple[str, str], float | None] = {}  # tables repeat few override combos
        for pos in positions if placeholders else positions[:1]:
            noise, observable = noise_col.iat[pos], obs_col.iat[pos]
            key = (str(noise), str(observable))
            if key not in cache:
                values = _row_values(expr, str(oid), noise, observable, nominal)
                cache[key] = None if values is None else _sigma(expr, values)
            sigma = cache[key]
            if sigma is None or (math.isfinite(sigma) and sigma > 0):
                continue
            message = (f"sigma {sigma:g} of observable {oid!r} at nominal parameters must be "
                       f"finite and > 0 (noiseFormula {formula!r}")
            if placeholders:
                issues.append(Issue(f"{message}, noiseParameters {key[0]!r})",
                                    files.get("measurement"), int(pos) + 2,
                                    petab.NOISE_PARAMETERS, oid))
            else:
                issues.append(Issue(f"{message})", files.get("observable"), obs_row,
                                    petab.NOISE_FORMULA, oid))
    return issues


def check_noise_overrides(measurement_df: pd.DataFrame, file: str | None) -> list[Issue]:
    """Numeric noise parameters must be finite (any finite value is fine on its own: only
    the resulting sigma, checked by `check_sigmas`, must be > 0)."""
    if petab.NOISE_PARAMETERS not in measurement_df:
        return []
    issues = []
    for line, raw in enumerate(measurement_df[petab.NOISE_PARAMETERS], start=2):
        for part in _override_parts(raw):
            value = pd.to_numeric(part, errors="coerce")
            if str(part).lower().lstrip("+-") in ("inf", "infinity", "nan") or (
                    not pd.isna(value) and not math.isfinite(value)):
                issues.append(Issue(f"noise parameter {part} must be finite", file, line,
                                    petab.NOISE_PARAMETERS))
    return issues
