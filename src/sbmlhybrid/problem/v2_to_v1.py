"""PEtab v2 experiments and measurements as PEtab v1 condition and measurement tables.

Used by the PEtab SciML importer (`sbmlhybrid.sciml.importer`), which compiles hybrid models
through AMICI's v1 path; plain PEtab v2 problems do not go through here any more, they use
AMICI's native v2 importer (`sbmlhybrid.problem.v2`, `sbmlhybrid.build.v2`).

* experiment with one period at t = 0 -> v1 simulation condition ``<experimentId>``;
  a ``-inf`` period plus one at t = 0 (or a lone ``-inf`` period) -> pre-equilibration
  condition ``<experimentId>__preeq`` plus simulation condition ``<experimentId>``;
  measurements without an experiment -> the empty condition ``__default``;
* condition changes (long ``targetId``/``targetValue``) -> v1 condition columns; a parameter
  set during pre-equilibration and not changed at t = 0 keeps its pre-equilibration value
  (v2 semantics), species not changed keep their state (NaN in v1).

What v1 cannot express raises `NotSupportedError` naming the experiment: several periods
after t0, a period starting at t0 != 0, condition values that are expressions (v1 allows
numbers and parameter ids only). Hand-written: petab 0.8.2 has ``petab1to2`` but no v2 -> v1
direction.
"""

from __future__ import annotations

import math
from typing import Any

import libsbml
import pandas as pd
import petab.v1 as petab
import sympy as sp

from sbmlhybrid.errors import Issue, NotSupportedError

DEFAULT_CONDITION = "__default"
PREEQ_SUFFIX = "__preeq"


def _number(expr: Any) -> float | None:
    """Float value of a sympy number / float, else None."""
    try:
        if isinstance(expr, int | float):
            return float(expr)
        if expr is not None and expr.is_number:
            return float(expr)
    except (TypeError, AttributeError):
        pass
    return None


def _model_default(model: libsbml.Model, target: str, par_ids: set[str]) -> Any:
    """v1 condition-table value that leaves `target` as the model defines it."""
    if target in par_ids:
        return target  # the parameter table's value (estimated or fixed)
    if model.getSpecies(target) is not None:
        return math.nan  # v1: NaN keeps the species' model initial value / current state
    p = model.getParameter(target)
    if p is not None:
        return float(p.getValue())
    return math.nan


def _period_values(exp_id: str, period: Any, changes: dict[str, list[tuple[str, Any]]],
                   issues: list[Issue], where: str | None) -> dict[str, Any]:
    """Target id -> v1 value (number or parameter id) of the conditions of one period."""
    out: dict[str, Any] = {}
    for cid in period.condition_ids:
        for target, value in changes.get(cid, []):
            num = _number(value)
            if num is not None:
                out[target] = num
            elif isinstance(value, sp.Symbol | str):
                out[target] = str(value)
            else:
                issues.append(Issue(
                    f"experiment {exp_id!r}: condition {cid!r} sets {target!r} to the "
                    f"expression {value}; PEtab v1 (and this loader) allows numbers and "
                    "parameter ids only", where, entity=cid))
    return out


def experiments_to_conditions(
    experiments: list[Any], changes: dict[str, list[tuple[str, Any]]],
    model: libsbml.Model, par_ids: set[str], where: str | None = None,
) -> tuple[pd.DataFrame, dict[str, tuple[str | None, str]]]:
    """v2 experiments -> v1 condition table.

    Args:
        experiments: ``petab.v2.Experiment`` objects (or anything with ``id`` and
            ``sorted_periods`` of objects with ``time`` and ``condition_ids``).
        changes: condition id -> [(target id, target value)] (value: number, parameter id
            string or sympy expression).
        model: The SBML model (for default values of columns a condition leaves unset).
        par_ids: Ids of the parameter table.
        where: File name for error messages.

    Returns:
        (v1 condition DataFrame indexed by conditionId, experiment id -> (pre-equilibration
        condition id or None, simulation condition id)).

    Raises:
        NotSupportedError: more than one period after pre-equilibration, t0 != 0, several
            pre-equilibration periods, or expression-valued changes.
    """
    rows: dict[str, dict[str, Any]] = {DEFAULT_CONDITION: {}}
    exp_map: dict[str, tuple[str | None, str]] = {}
    issues: list[Issue] = []
    for exp in experiments:
        periods = list(exp.sorted_periods)
        pre = [p for p in periods if p.time == -math.inf]
        main = [p for p in periods if p.time != -math.inf]
        if len(pre) > 1 or len(main) > 1:
            issues.append(Issue(f"experiment {exp.id!r}: {len(main)} periods after t0 and "
                                f"{len(pre)} pre-equilibration period(s); only one of each is "
                                "supported (no condition changes after t0)", where,
                                entity=exp.id))
            continue
        if main and main[0].time != 0:
            issues.append(Issue(f"experiment {exp.id!r} starts at t0 = {main[0].time}; only "
                                "t0 = 0 is supported", where, entity=exp.id))
            continue

        pre_values = _period_values(exp.id, pre[0], changes, issues, where) if pre else None
        sim_values = _period_values(exp.id, main[0], changes, issues, where) if main else {}
        if pre_values is not None:
            for target, value in pre_values.items():
                # v2: a parameter set before t0 keeps that value unless changed again
                if target not in sim_values and model.getSpecies(target) is None:
                    sim_values[target] = value
            rows[exp.id + PREEQ_SUFFIX] = pre_values
            exp_map[exp.id] = (exp.id + PREEQ_SUFFIX, exp.id)
        else:
            exp_map[exp.id] = (None, exp.id)
        rows[exp.id] = sim_values
    if issues:
        raise NotSupportedError(issues, header="PEtab v2 features without a v1 equivalent")
    columns = list(dict.fromkeys(t for r in rows.values() for t in r))
    table = []
    for cid, values in rows.items():
        row: dict[str, Any] = {petab.CONDITION_ID: cid}
        for col in columns:
            row[col] = values.get(col, _model_default(model, col, par_ids))
        table.append(row)
    df = pd.DataFrame(table, columns=[petab.CONDITION_ID, *columns])
    for col in columns:  # numeric columns must stay float (AMICI: object = overridden)
        if all(isinstance(v, float) for v in df[col]):
            df[col] = df[col].astype(float)
    return df.set_index(petab.CONDITION_ID), exp_map


def _override_text(values: list[Any]) -> str | float:
    if not values:
        return math.nan
    return ";".join(str(_number(v)) if _number(v) is not None else str(v) for v in values)


def measurements_to_v1(measurements: list[Any],
                       exp_map: dict[str, tuple[str | None, str]]) -> pd.DataFrame:
    """v2 measurements -> v1 measurement table (experimentId -> condition ids)."""
    rows = []
    for m in measurements:
        pre, sim = exp_map.get(m.experiment_id, (None, DEFAULT_CONDITION)) \
            if m.experiment_id else (None, DEFAULT_CONDITION)
        rows.append({
            petab.OBSERVABLE_ID: m.observable_id,
            petab.PREEQUILIBRATION_CONDITION_ID: pre if pre else math.nan,
            petab.SIMULATION_CONDITION_ID: sim,
            petab.TIME: float(m.time),
            petab.MEASUREMENT: float(m.measurement),
            petab.OBSERVABLE_PARAMETERS: _override_text(m.observable_parameters),
            petab.NOISE_PARAMETERS: _override_text(m.noise_parameters),
        })
    df = pd.DataFrame(rows)
    for col in (petab.PREEQUILIBRATION_CONDITION_ID, petab.OBSERVABLE_PARAMETERS,
                petab.NOISE_PARAMETERS):
        if df[col].isna().all():
            df = df.drop(columns=col)
    return df


def unknown_experiments(measurements: list[Any], known: set[str], file: str | None
                        ) -> list[Issue]:
    """One issue per measurement whose ``experimentId`` is not in `known`.

    Args:
        measurements: The records of one measurement file, in file order (anything with
            ``experiment_id``; None or empty: no experiment).
        known: The experiment table's ids.
        file: The measurement file (row = its TSV line, header 1).
    """
    return [Issue(f"unknown experiment {m.experiment_id!r} (not in the experiment table)",
                  file, row, "experimentId", m.experiment_id)
            for row, m in enumerate(measurements, start=2)
            if m.experiment_id and m.experiment_id not in known]


def simulation_table_to_v2(table: pd.DataFrame,
                           experiments: dict[str, tuple[str | None, str]]) -> pd.DataFrame:
    """A v1 simulation table (`ModelObjective.simulate`) with v2 ``experimentId`` column.

    Args:
        table: Rows with ``simulationConditionId`` (and ``preequilibrationConditionId``).
        experiments: Experiment id -> (pre-equilibration, simulation) v1 condition ids, as
            returned by `experiments_to_conditions`.

    Returns:
        The table with ``experimentId`` ("" for measurements without an experiment) instead
        of the v1 condition columns.
    """
    by_sim = {sim: exp for exp, (_pre, sim) in experiments.items()}
    out = table.copy()
    out["experimentId"] = [by_sim.get(s, "") if s != DEFAULT_CONDITION else ""
                           for s in out[petab.SIMULATION_CONDITION_ID]]
    drop = [c for c in (petab.SIMULATION_CONDITION_ID, petab.PREEQUILIBRATION_CONDITION_ID)
            if c in out]
    return out.drop(columns=drop)


__all__ = ["DEFAULT_CONDITION", "PREEQ_SUFFIX", "experiments_to_conditions",
           "measurements_to_v1", "simulation_table_to_v2", "unknown_experiments"]
