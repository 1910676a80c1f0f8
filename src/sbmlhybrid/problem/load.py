"""Loading of PEtab v1/v2 problems (YAML) and of bare SBML files with a measurement table.

PEtab's own loader raises on the first missing file or unreadable table and never mentions
SBML line numbers; here every failure becomes an `InputError` listing file, row and column,
then `validate.validate_problem` adds the linter's findings and the checks it misses.
PEtab v2 YAMLs load as `sbmlhybrid.problem.v2.ProblemV2`, for AMICI's native v2 path.
Bare SBML: observables, conditions and parameters are derived (documented in
`problem_from_sbml`), so `sbmlhybrid fit model.xml --measurements data.tsv` just works.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import libsbml
import pandas as pd
import petab.v1 as petab
import yaml
from petab.v1.models.sbml_model import SbmlModel

from sbmlhybrid.errors import InputError, Issue, NotSupportedError
from sbmlhybrid.problem._common import (
    SolverSettings,
    load_sbml,
    problem_name,
    read_tsv,
    solver_settings,
)
from sbmlhybrid.problem.validate import duplicate_ids, validate_problem

if TYPE_CHECKING:
    from sbmlhybrid.problem.v2 import ProblemV2

# Table kind -> its id column, whose values must be unique.
_ID_COLUMNS = {"condition": petab.CONDITION_ID, "observable": petab.OBSERVABLE_ID,
               "parameter": petab.PARAMETER_ID}


@dataclass
class Problem:
    """A validated PEtab v1 problem and where it came from.

    Attributes:
        petab_problem: The petab.v1 problem (tables as DataFrames).
        name: Short identifier (YAML stem or SBML model id), used for cache and output names.
        source: The YAML or SBML file loaded.
        files: Table kind -> file path (for error messages).
        solver: Solver settings of this problem.
        unflattened: The problem as given, when `petab_problem` had to be flattened
            (timepoint-specific observable/noise parameter overrides).
        experiments: For PEtab v2 input: experiment id -> (pre-equilibration condition id
            or None, simulation condition id) of the v1 tables; None for v1 input.
        notes: The defaults the loader applied, one line each (a bare SBML model: derived
            condition, observables, noise parameters, estimated parameters); empty for
            complete PEtab input.
    """

    petab_problem: petab.Problem
    name: str
    source: Path | None
    files: dict[str, str | None] = field(default_factory=dict)
    solver: SolverSettings = field(default_factory=SolverSettings)
    unflattened: petab.Problem | None = None
    experiments: dict[str, tuple[str | None, str]] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def sbml_text(self) -> str:
        return libsbml.writeSBMLToString(self.petab_problem.sbml_document)

    @property
    def condition_ids(self) -> list[str]:
        """Simulation conditions with data, in measurement-table order of first use."""
        return list(dict.fromkeys(self.petab_problem.measurement_df[petab.SIMULATION_CONDITION_ID]))


def _read_table(path: Path, kind: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(Issue(f"{kind} file not found", file=str(path)))
    try:
        return read_tsv(path)
    except Exception as err:
        raise InputError(Issue(f"cannot read {kind} table: {err}", file=str(path))) from err


def _read_tables(files: dict[str, str | None], source: Path) -> dict[str, pd.DataFrame]:
    """The four PEtab v1 tables as read from their TSVs (kind -> DataFrame); InputError for
    repeated ids, checked here because petab's table readers name neither file nor row."""
    tables = {kind: _read_table(Path(str(files[kind])), kind)
              for kind in ("condition", "measurement", "observable", "parameter")}
    duplicates = [issue for kind, column in _ID_COLUMNS.items()
                  for issue in duplicate_ids(tables[kind], column, files[kind])]
    if duplicates:
        raise InputError(duplicates, header=f"Invalid PEtab problem {source}")
    return tables


def _unsupported(problem: petab.Problem, files: dict[str, str | None]) -> list[Issue]:
    """Features valid in PEtab that AMICI cannot simulate."""
    issues = []
    model = problem.sbml_model
    if problem.condition_df is not None:
        for col in problem.condition_df.columns:
            comp = model.getCompartment(col)
            if comp is not None:
                issues.append(
                    Issue(
                        f"setting the initial size of compartment {col!r} per condition is not "
                        "supported by AMICI",
                        files.get("condition"), 1, col, col,
                    )
                )
    return issues


def problem_from_tables(problem: petab.Problem, name: str, source: Path | None,
                        files: dict[str, str | None], solver: SolverSettings,
                        notes: Sequence[str] = ()) -> Problem:
    """A `Problem` from PEtab v1 tables assembled in memory (the bare-SBML door, the SciML
    importer), checked as a problem file would be.

    Args:
        problem: The petab.v1 problem (model and tables).
        name: The problem's name (build and result names).
        source: The file it came from (errors name it), or None.
        files: Table kind -> file it came from (errors name them; None: built in memory).
        solver: Solver settings.
        notes: Defaults the caller applied (printed by ``sbmlhybrid validate``).

    Raises:
        NotSupportedError: features AMICI cannot simulate.
        InputError: the tables fail validation (file, row and entity named).
    """
    unsupported = _unsupported(problem, files)
    if unsupported:
        raise NotSupportedError(unsupported, header="Problem uses features AMICI cannot simulate")
    issues = validate_problem(problem, files)
    if issues:
        raise InputError(issues, header=f"Invalid PEtab problem {source}")
    original = None
    if petab.lint.measurement_table_has_timepoint_specific_mappings(problem.measurement_df):
        # AMICI compiles one observable per (observable, override) pair; simulation tables
        # are mapped back to the user's ids (ModelObjective.simulate).
        original = copy.deepcopy(problem)
        petab.flatten_timepoint_specific_output_overrides(problem)
    return Problem(problem, name, source, files, solver, original, notes=list(notes))


def load_problem(
    path: str | Path, measurements: str | Path | None = None, solver: SolverSettings | None = None
) -> Problem | ProblemV2:
    """Load and validate a PEtab v1/v2 problem YAML, or a bare SBML file with measurements.

    Args:
        path: A PEtab v1 or v2 problem YAML, or an SBML file (then `measurements` is required).
        measurements: Measurement TSV for a bare SBML file (PEtab measurement columns).
        solver: Solver settings; default: the YAML's `sbmlhybrid: solver:` entry, else defaults.

    Returns:
        The validated `Problem` (PEtab v2 YAML: `sbmlhybrid.problem.v2.ProblemV2`).

    Raises:
        InputError: listing every problem found, with file, row and column.
        NotSupportedError: the problem uses a feature AMICI cannot simulate.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(Issue("file not found", file=str(path)))
    if path.suffix.lower() in (".xml", ".sbml"):
        if measurements is None:
            raise InputError(Issue("a bare SBML model needs a measurement table "
                                   "(--measurements)", file=str(path)))
        return problem_from_sbml(path, Path(measurements), solver)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(Issue(f"invalid YAML: {err}", str(path),
                               mark.line + 1 if mark else None)) from err
    major = str(config.get("format_version", "1") if isinstance(config, dict) else "1")
    if major.split(".")[0] == "2":
        from sbmlhybrid.problem.v2 import load_v2

        extensions = config.get("extensions") or {}
        if any(k in extensions for k in ("sciml", "petab_sciml")):
            raise InputError(Issue(
                "a PEtab SciML problem (neural networks in the extensions section): load it "
                "with sbmlhybrid.load_problem (the front door for every kind)", str(path)))

        return load_v2(path, config, solver)
    if not isinstance(config, dict) or "problems" not in config:
        raise InputError(Issue("not a PEtab problem YAML (no 'problems' entry)", str(path)))
    major = major.split(".")[0]
    if major != "1":
        raise NotSupportedError(Issue(
            f"PEtab format_version {config.get('format_version')} is not supported here; "
            "this loader reads PEtab v1 and v2", str(path)))
    if len(config["problems"]) != 1:
        raise NotSupportedError(Issue("exactly one entry under 'problems' is supported", str(path)))
    sub = config["problems"][0]
    base = path.parent
    files: dict[str, str | None] = {}
    for kind, key in (("sbml", "sbml_files"), ("condition", "condition_files"),
                      ("measurement", "measurement_files"), ("observable", "observable_files")):
        entries = sub.get(key) or []
        if len(entries) != 1:
            raise InputError(Issue(f"'{key}' must list exactly one file", str(path)))
        files[kind] = str(base / entries[0])
    files["parameter"] = str(base / config.get("parameter_file", ""))
    doc = load_sbml(Path(files["sbml"]))
    tables = _read_tables(files, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            problem = petab.Problem(
                model=SbmlModel(sbml_model=doc.getModel(), sbml_document=doc),
                condition_df=petab.get_condition_df(tables["condition"]),
                measurement_df=petab.get_measurement_df(tables["measurement"]),
                observable_df=petab.get_observable_df(tables["observable"]),
                parameter_df=petab.get_parameter_df(tables["parameter"]),
            )
    except (KeyError, ValueError, AssertionError) as err:
        raise InputError(Issue(f"malformed table: {err}", str(path))) from err
    return problem_from_tables(problem, problem_name(path), path, files,
                               solver or solver_settings(config))


#: Condition of a bare SBML measurement table without a simulationConditionId column.
DEFAULT_CONDITION_ID = "condition1"
#: Estimated sigma of a bare SBML observable without numeric noiseParameters.
SIGMA_DEFAULTS = {petab.PARAMETER_SCALE: petab.LOG10, petab.LOWER_BOUND: 1e-3,
                  petab.UPPER_BOUND: 1e3, petab.NOMINAL_VALUE: 1.0, petab.ESTIMATE: 1}


def _read_bare_measurements(measurements: Path) -> tuple[pd.DataFrame, list[str]]:
    """The measurement table of a bare SBML model, one condition added if it has none."""
    meas = _read_table(measurements, "measurement")
    missing = {petab.OBSERVABLE_ID, petab.TIME, petab.MEASUREMENT} - set(meas.columns)
    if missing:
        raise InputError(Issue(f"missing columns {sorted(missing)}", str(measurements), 1))
    if meas.empty:
        raise InputError(Issue("measurement table has no rows", str(measurements)))
    notes = []
    if petab.SIMULATION_CONDITION_ID not in meas:
        meas.insert(1, petab.SIMULATION_CONDITION_ID, DEFAULT_CONDITION_ID)
        notes.append(f"no {petab.SIMULATION_CONDITION_ID} column: one condition "
                     f"{DEFAULT_CONDITION_ID!r} added for all {len(meas)} measurements "
                     "(it changes nothing in the model)")
    return meas, notes


def _derive_observables(meas: pd.DataFrame, model: libsbml.Model, measurements: Path
                        ) -> tuple[list[dict], list[dict], list[str]]:
    """Observable rows, estimated sigma rows and notes; renames in `meas` an observableId
    that is a model entity id to ``obs_<id>`` (PEtab ids must not shadow model entities)."""
    issues, obs_rows, sigma_rows, notes = [], [], [], []
    used = set(meas[petab.OBSERVABLE_ID])
    for given in dict.fromkeys(meas[petab.OBSERVABLE_ID]):
        oid = given
        if model.getElementBySId(given) is not None and f"obs_{given}" not in used:
            oid = f"obs_{given}"
            meas.loc[meas[petab.OBSERVABLE_ID] == given, petab.OBSERVABLE_ID] = oid
            notes.append(f"observable {given!r} (a model entity) -> observable id {oid!r}, "
                         f"formula {given}")
        entity = next((c for c in (given, oid.removeprefix("obs_"), oid.removeprefix("y_"))
                       if model.getElementBySId(c) is not None), None)
        rows = meas[petab.OBSERVABLE_ID] == oid
        if entity is None:
            issues.append(Issue(f"observable {given!r} matches no SBML entity", str(measurements),
                                int(meas.index[rows][0]) + 2, petab.OBSERVABLE_ID, given))
            continue
        if oid == given:
            notes.append(f"observable {oid!r}: formula {entity} (the model entity)")
        numeric = pd.to_numeric(meas.loc[rows].get(petab.NOISE_PARAMETERS,
                                                   pd.Series(dtype=float)), errors="coerce")
        if len(numeric) and numeric.notna().all():
            sigma = f"noiseParameter1_{oid}"
            notes.append(f"sigma of {oid!r}: the {petab.NOISE_PARAMETERS} column")
        else:
            sigma = f"sigma_{oid}"
            sigma_rows.append({petab.PARAMETER_ID: sigma, **SIGMA_DEFAULTS})
            notes.append(
                f"sigma of {oid!r} estimated: noise parameter {sigma!r} added, normal noise, "
                f"{SIGMA_DEFAULTS[petab.PARAMETER_SCALE]} scale, bounds "
                f"[{SIGMA_DEFAULTS[petab.LOWER_BOUND]:g}, {SIGMA_DEFAULTS[petab.UPPER_BOUND]:g}], "
                f"nominal {SIGMA_DEFAULTS[petab.NOMINAL_VALUE]:g}")
        obs_rows.append({petab.OBSERVABLE_ID: oid, petab.OBSERVABLE_FORMULA: entity,
                         petab.NOISE_FORMULA: sigma, petab.NOISE_DISTRIBUTION: "normal"})
    if issues:
        raise InputError(issues, header="Cannot derive observables")
    return obs_rows, sigma_rows, notes


def _derive_parameters(model: libsbml.Model) -> tuple[list[dict], list[str]]:
    """Parameter rows of every constant SBML parameter without a rule, and notes."""
    ruled = {model.getRule(i).getVariable() for i in range(model.getNumRules())}
    ruled |= {model.getInitialAssignment(i).getSymbol()
              for i in range(model.getNumInitialAssignments())}
    rows, log_ids, lin_ids = [], [], []
    for p in model.getListOfParameters():
        if p.getId() in ruled or not p.getConstant():
            continue
        value = p.getValue()
        log = value > 0
        (log_ids if log else lin_ids).append(p.getId())
        rows.append({petab.PARAMETER_ID: p.getId(),
                     petab.PARAMETER_SCALE: petab.LOG10 if log else petab.LIN,
                     petab.LOWER_BOUND: value / 1000 if log else -10.0,
                     petab.UPPER_BOUND: value * 1000 if log else 10.0,
                     petab.NOMINAL_VALUE: value, petab.ESTIMATE: 1})
    notes = []
    if log_ids:
        notes.append(f"estimated on log10 scale in [nominal/1000, nominal*1000], nominal = "
                     f"the SBML value: {', '.join(log_ids)}")
    if lin_ids:
        notes.append(f"estimated on linear scale in [-10, 10] (SBML value <= 0): "
                     f"{', '.join(lin_ids)}")
    return rows, notes


def problem_from_sbml(sbml: Path, measurements: Path, solver: SolverSettings | None) -> Problem:
    """A PEtab problem from a bare SBML model and a measurement table.

    Required columns: `observableId`, `time`, `measurement`. Derived tables: without a
    `simulationConditionId` column, one condition (`DEFAULT_CONDITION_ID`) for every row;
    one condition per `simulationConditionId`, changing nothing. One observable per
    `observableId`, whose formula is the model entity of that id (or of the id without an
    `obs_`/`y_` prefix) with normal noise; an id that is itself a model entity becomes
    ``obs_<id>``. Sigma is the measurement's `noiseParameters` when numeric, else an
    estimated `sigma_<obs>` (`SIGMA_DEFAULTS`). Every SBML parameter without an assignment
    or rate rule is estimated on log10 scale within [nominal/1000, nominal*1000]
    (non-positive nominal values: linear scale in [-10, 10]). Each default applied is one
    line of the returned problem's `notes` (printed by `sbmlhybrid validate`).
    """
    doc = load_sbml(sbml)
    model = doc.getModel()
    meas, notes = _read_bare_measurements(measurements)
    obs_rows, sigma_rows, obs_notes = _derive_observables(meas, model, measurements)
    cond_ids = list(dict.fromkeys(meas[petab.SIMULATION_CONDITION_ID]))
    if petab.PREEQUILIBRATION_CONDITION_ID in meas:
        cond_ids += [c for c in meas[petab.PREEQUILIBRATION_CONDITION_ID].dropna().unique()
                     if c not in cond_ids]
    par_rows, par_notes = _derive_parameters(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem = petab.Problem(
            model=SbmlModel(sbml_model=model, sbml_document=doc),
            condition_df=petab.get_condition_df(pd.DataFrame({petab.CONDITION_ID: cond_ids})),
            measurement_df=petab.get_measurement_df(meas),
            observable_df=petab.get_observable_df(pd.DataFrame(obs_rows)),
            parameter_df=petab.get_parameter_df(pd.DataFrame(par_rows + sigma_rows)),
        )
    files = {"sbml": str(sbml), "measurement": str(measurements)}
    return problem_from_tables(problem, model.getId() or sbml.stem, sbml, files,
                               solver or SolverSettings(), notes + obs_notes + par_notes)
