"""PEtab v2 problems, converted in memory to an equivalent PEtab v1 problem.

Why a conversion: everything downstream (compile cache, exact condition subsets, fits) works
on PEtab v1 tables through AMICI's v1 importer and pyPESTO's `AmiciObjective`; pyPESTO's v2
objective silently ignores condition subsets. So a v2 problem is parsed and validated by
`petab.v2` (`Problem.from_yaml`, `Problem.validate`) and its tables are rewritten as v1 tables:

* experiment with one period at t = 0 -> v1 simulation condition ``<experimentId>``;
  a ``-inf`` period plus one at t = 0 (or a lone ``-inf`` period) -> pre-equilibration
  condition ``<experimentId>__preeq`` plus simulation condition ``<experimentId>``;
  measurements without an experiment -> the empty condition ``__default``;
* condition changes (long ``targetId``/``targetValue``) -> v1 condition columns; a parameter
  set during pre-equilibration and not changed at t = 0 keeps its pre-equilibration value
  (v2 semantics), species not changed keep their state (NaN in v1);
* ``noiseDistribution`` normal / laplace / log-normal / log-laplace -> v1
  ``observableTransformation`` (lin / log) + ``noiseDistribution``;
* explicit ``observablePlaceholders`` / ``noisePlaceholders`` -> v1's positional
  ``observableParameter{i}_{obsId}`` / ``noiseParameter{i}_{obsId}`` names;
* parameters: linear scale, ``estimate`` true/false -> 1/0, priors normal / laplace /
  log-normal / log-laplace / uniform -> v1 objective priors.

What cannot be mapped raises `NotSupportedError` naming the experiment or feature: several
periods after t0, a period starting at t0 != 0, condition values that are expressions
(v1 allows numbers and parameter ids only), priors without a v1 equivalent, mapping-table
entries that point at non-SBML entities. Hand-written: the table conversion (petab 0.8.2 has
``petab1to2`` but no v2 -> v1 direction). Reused: petab.v2 parsing and validation.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import libsbml
import pandas as pd
import petab.v1 as petab
import sympy as sp

from sbmlhybrid.errors import InputError, Issue, NotSupportedError

DEFAULT_CONDITION = "__default"
PREEQ_SUFFIX = "__preeq"

# v2 noise distribution -> (v1 observableTransformation, v1 noiseDistribution)
NOISE_V2_TO_V1: dict[str, tuple[str, str]] = {
    "normal": (petab.LIN, petab.NORMAL),
    "laplace": (petab.LIN, petab.LAPLACE),
    "log-normal": (petab.LOG, petab.NORMAL),
    "log-laplace": (petab.LOG, petab.LAPLACE),
}
# v2 prior -> v1 objectivePriorType (v1 priors on linear scale are these; the rest has none)
PRIOR_V2_TO_V1: dict[str, str] = {
    "normal": petab.NORMAL,
    "laplace": petab.LAPLACE,
    "log-normal": petab.LOG_NORMAL,
    "log-laplace": petab.LOG_LAPLACE,
    "uniform": petab.UNIFORM,
}


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


def _rename_placeholders(formula: str, placeholders: list[str], kind: str, oid: str) -> str:
    if not placeholders:
        return formula
    expr = petab.math.sympify_petab(formula)
    subs = {sp.Symbol(str(ph), real=True): sp.Symbol(f"{kind}Parameter{i}_{oid}", real=True)
            for i, ph in enumerate(placeholders, start=1)}
    subs |= {sp.Symbol(str(ph)): sp.Symbol(f"{kind}Parameter{i}_{oid}")
             for i, ph in enumerate(placeholders, start=1)}
    return str(expr.subs(subs))


def _own_value(noise_formula: str, oid: str, formula: str) -> str:
    """v2 lets a noise formula use the observable's own id (its value, e.g. relative noise);
    v1 does not, so the id is replaced by the observable formula."""
    expr = petab.math.sympify_petab(noise_formula)
    own = [s for s in expr.free_symbols if s.name == oid]
    if not own:
        return noise_formula
    return str(expr.xreplace({s: petab.math.sympify_petab(formula) for s in own}))


def observables_to_v1(observables: list[Any], where: str | None = None) -> pd.DataFrame:
    """v2 observables (``petab.v2.Observable``) -> v1 observable table."""
    rows = []
    for o in observables:
        dist = str(getattr(o.noise_distribution, "value", o.noise_distribution) or "normal")
        if dist not in NOISE_V2_TO_V1:
            raise NotSupportedError(Issue(f"observable {o.id!r}: noise distribution {dist!r} "
                                          "has no PEtab v1 equivalent", where, entity=o.id))
        trans, noise = NOISE_V2_TO_V1[dist]
        formula = _rename_placeholders(
            str(o.formula), [str(s) for s in o.observable_placeholders], "observable", o.id)
        rows.append({
            petab.OBSERVABLE_ID: o.id,
            petab.OBSERVABLE_FORMULA: formula,
            petab.NOISE_FORMULA: _own_value(_rename_placeholders(
                str(o.noise_formula), [str(s) for s in o.noise_placeholders], "noise", o.id),
                o.id, formula),
            petab.OBSERVABLE_TRANSFORMATION: trans,
            petab.NOISE_DISTRIBUTION: noise,
        })
    return pd.DataFrame(rows).set_index(petab.OBSERVABLE_ID)


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


def parameters_to_v1(parameters: list[Any], where: str | None = None) -> pd.DataFrame:
    """v2 parameters -> v1 parameter table (linear scale; v1 priors where they exist)."""
    rows, issues = [], []
    for p in parameters:
        nominal = p.nominal_value
        lb = p.lb if p.lb is not None else nominal
        ub = p.ub if p.ub is not None else nominal
        row = {petab.PARAMETER_ID: p.id, petab.PARAMETER_SCALE: petab.LIN,
               petab.LOWER_BOUND: lb, petab.UPPER_BOUND: ub, petab.NOMINAL_VALUE: nominal,
               petab.ESTIMATE: int(bool(p.estimate))}
        prior = p.prior_distribution
        if prior is not None:
            prior = str(getattr(prior, "value", prior))
            if prior not in PRIOR_V2_TO_V1:
                issues.append(Issue(f"parameter {p.id!r}: prior {prior!r} has no PEtab v1 "
                                    "equivalent", where, entity=p.id))
                continue
            pars = ";".join(repr(float(v)) for v in p.prior_parameters)
            row[petab.OBJECTIVE_PRIOR_TYPE] = PRIOR_V2_TO_V1[prior]
            row[petab.OBJECTIVE_PRIOR_PARAMETERS] = pars
        rows.append(row)
    if issues:
        raise NotSupportedError(issues, header="PEtab v2 priors without a v1 equivalent")
    return pd.DataFrame(rows).set_index(petab.PARAMETER_ID)


def _sbml_model_entry(config: dict[str, Any], where: str) -> dict[str, Any]:
    """The YAML's single `model_files` entry; NotSupportedError unless it is one SBML model.

    Checked before petab.v2 parses the problem: petab.v2 imports the model's language
    package (pysb for PySB models), whose absence would otherwise read as a broken input.
    """
    models = config.get("model_files")
    if not isinstance(models, dict) or len(models) != 1:
        raise NotSupportedError(Issue("exactly one entry under 'model_files' is supported",
                                      where))
    model_info = next(iter(models.values()))
    if not isinstance(model_info, dict) or "location" not in model_info:
        raise InputError(Issue("the 'model_files' entry needs a 'location'", where))
    if str(model_info.get("language", "sbml")).lower() != "sbml":
        raise NotSupportedError(Issue(f"model language {model_info.get('language')!r}; only "
                                      "SBML is supported", where))
    return model_info


def load_v2(path: Path, config: dict[str, Any], solver: Any = None) -> Any:
    """Load a PEtab v2 problem YAML as an sbmlhybrid `Problem` (v1 tables inside).

    Args:
        path: The problem YAML (``format_version: 2`` / ``2.0.0``).
        config: Its parsed content.
        solver: `SolverSettings`; default: the YAML's ``sbmlhybrid: solver:`` entry.

    Returns:
        `Problem` whose ``petab_problem`` is the equivalent petab.v1 problem; its
        ``experiments`` attribute maps v2 experiment ids to (pre-equilibration, simulation)
        v1 condition ids.

    Raises:
        InputError: petab.v2 cannot read the problem or its validation finds errors.
        NotSupportedError: v2 features without a v1 equivalent (see module docstring).
    """
    import petab.v2 as v2

    from sbmlhybrid.problem.load import SolverSettings, _finish, _load_sbml

    where = str(path)
    model_info = _sbml_model_entry(config, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p2 = v2.Problem.from_yaml(path)
            result = p2.validate()
    except Exception as err:  # pydantic / pandas errors: report them as input errors
        raise InputError(Issue(f"cannot read PEtab v2 problem: {err}", where)) from err
    errors = [str(e) for e in result if "Error" in type(e).__name__]
    if result.has_errors():
        raise InputError([Issue(e, where) for e in errors] or [Issue("invalid", where)],
                         header=f"Invalid PEtab v2 problem {path}")
    if not p2.measurements:  # the v1 conversion below needs rows; say why instead
        files = [str(path.parent / f) for f in config.get("measurement_files") or []]
        raise InputError([Issue("measurement table has no rows", f) for f in files or [where]],
                         header=f"Invalid PEtab v2 problem {path}")
    sbml_path = path.parent / str(model_info["location"])
    bad_maps = [m.petab_id for m in p2.mappings if m.model_id and m.model_id != m.petab_id]
    if bad_maps:
        raise NotSupportedError(Issue(f"mapping-table entries {bad_maps} point at entities "
                                      "outside the SBML model (extensions)", where))
    doc = _load_sbml(sbml_path)
    model = doc.getModel()
    par_ids = {p.id for p in p2.parameters}
    changes = {c.id: [(ch.target_id, ch.target_value) for ch in c.changes]
               for c in p2.conditions}
    condition_df, exp_map = experiments_to_conditions(p2.experiments, changes, model,
                                                      par_ids, where)
    measurement_df = measurements_to_v1(p2.measurements, exp_map)
    used = set(measurement_df[petab.SIMULATION_CONDITION_ID])
    if petab.PREEQUILIBRATION_CONDITION_ID in measurement_df:
        used |= set(measurement_df[petab.PREEQUILIBRATION_CONDITION_ID].dropna())
    condition_df = condition_df.loc[[c for c in condition_df.index if c in used]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem = petab.Problem(
            sbml_model=model, sbml_document=doc,
            condition_df=condition_df,
            measurement_df=petab.get_measurement_df(measurement_df),
            observable_df=observables_to_v1(p2.observables, where),
            parameter_df=parameters_to_v1(p2.parameters, where),
        )
    settings = solver or SolverSettings(**((config.get("sbmlhybrid") or {}).get("solver") or {}))
    base = path.parent
    files: dict[str, str | None] = {"sbml": str(sbml_path)}
    for kind, key in (("condition", "condition_files"), ("measurement", "measurement_files"),
                      ("observable", "observable_files"), ("parameter", "parameter_files"),
                      ("experiment", "experiment_files")):
        entries = config.get(key) or []
        files[kind] = str(base / entries[0]) if entries else None
    stem = path.stem
    name = path.parent.name + stem[len("problem"):] if stem.startswith("problem") else stem
    out = _finish(problem, name.strip("_") or "problem", path, files, settings)
    out.experiments = exp_map
    return out


def simulation_table_to_v2(table: pd.DataFrame,
                           experiments: dict[str, tuple[str | None, str]]) -> pd.DataFrame:
    """A v1 simulation table (`ModelObjective.simulate`) with v2 ``experimentId`` column.

    Args:
        table: Rows with ``simulationConditionId`` (and ``preequilibrationConditionId``).
        experiments: `Problem.experiments` of a v2-loaded problem.

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


__all__ = ["DEFAULT_CONDITION", "NOISE_V2_TO_V1", "experiments_to_conditions", "load_v2",
           "measurements_to_v1", "observables_to_v1", "parameters_to_v1",
           "simulation_table_to_v2"]
