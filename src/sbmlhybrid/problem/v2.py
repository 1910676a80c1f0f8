"""PEtab v2 problems, loaded for AMICI's native PEtab v2 path.

Reused: petab.v2 parses and validates the problem (`Problem.from_yaml`, `Problem.validate`);
the model is then built by AMICI's v2 importer (`sbmlhybrid.build.v2`), which encodes every
experiment (periods, t0, expression-valued condition changes) as SBML events, and simulated
by AMICI's v2 experiment manager (`sbmlhybrid.objective.petab_v2`). Nothing is converted to
PEtab v1 tables here (the v2 -> v1 table helpers in `sbmlhybrid.problem.v2_to_v1` serve the
PEtab SciML importer only; they are re-exported below for it).

Hand-written: what petab.v2 leaves out or reports without a file — the model entry must be
one SBML model (PySB models need the pysb package, which is not installed: `NotSupportedError`
naming pysb, checked before petab.v2 would try to import it); SBML read errors with libsbml's
line numbers; validation issues named with the table file their check reads; an empty
measurement table; non-finite measurements and measurements naming an experiment the
experiment table lacks, with their row (petab.v2 only warns about the latter); mapping-table
entries that point outside the SBML model (AMICI cannot map those).
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libsbml
import petab.v2 as v2
import petab.v2.lint

from sbmlhybrid.errors import InputError, Issue, NotSupportedError
from sbmlhybrid.problem._common import load_sbml, problem_name, solver_settings
from sbmlhybrid.problem.v2_to_v1 import (  # noqa: F401  (re-exported for the SciML importer)
    DEFAULT_CONDITION,
    PREEQ_SUFFIX,
    experiments_to_conditions,
    measurements_to_v1,
    simulation_table_to_v2,
    unknown_experiments,
)

#: Experiment id AMICI's v2 importer gives measurements without one (its private
#: ``_DEFAULT_EXPERIMENT_ID``); simulation tables show those rows without an experiment id.
DEFAULT_EXPERIMENT = "__default__"

# petab.v2 validation task -> the table kind it checks (to name the file in the issue)
_TASK_TABLE = {
    "CheckModel": "model",
    "CheckMeasuredObservablesDefined": "measurement",
    "CheckPosLogMeasurements": "measurement",
    "CheckOverridesMatchPlaceholders": "measurement",
    "CheckMeasuredExperimentsDefined": "measurement",
    "CheckMeasurementModelId": "measurement",
    "CheckValidConditionTargets": "condition",
    "CheckUnusedConditions": "condition",
    "CheckInitialChangeSymbols": "condition",
    "CheckExperimentTable": "experiment",
    "CheckExperimentConditionsExist": "experiment",
    "CheckUnusedExperiments": "experiment",
    "CheckUndefinedExperiments": "experiment",
    "CheckObservablesDoNotShadowModelEntities": "observable",
    "CheckAllParametersPresentInParameterTable": "parameter",
    "CheckValidParameterInConditionOrParameterTable": "parameter",
    "CheckPriorDistribution": "parameter",
}
# petab.v2 record type (pydantic model) -> its table kind
_RECORD_TABLE = {"Measurement": "measurement", "Condition": "condition", "Change": "condition",
                 "Experiment": "experiment", "ExperimentPeriod": "experiment",
                 "Observable": "observable", "Parameter": "parameter", "Mapping": "mapping"}
_FILE_KEYS = {"condition": "condition_files", "measurement": "measurement_files",
              "observable": "observable_files", "parameter": "parameter_files",
              "experiment": "experiment_files", "mapping": "mapping_files"}


@dataclass
class ProblemV2:
    """A validated PEtab v2 problem over one SBML model.

    Attributes:
        petab_problem: The problem as petab.v2 read it (not modified afterwards).
        name: Short identifier (YAML stem), used for output names; builds are named after
            the SBML model id instead (`sbmlhybrid.build`).
        source: The problem YAML.
        files: Table kind ("model", "condition", "measurement", ...) -> its files.
        solver: Solver settings (`sbmlhybrid.problem.SolverSettings`).
        unflattened: The problem as given, when `petab_problem` had to be flattened
            (timepoint-specific observable/noise parameter overrides, which AMICI compiles
            as one observable per override); simulation tables are mapped back to it.
    """

    petab_problem: v2.Problem
    name: str
    source: Path
    files: dict[str, list[str]] = field(default_factory=dict)
    solver: Any = None
    unflattened: v2.Problem | None = None

    @property
    def model_id(self) -> str:
        """The SBML model id (``model`` if it has none)."""
        return self.petab_problem.model.sbml_model.getId() or "model"

    @property
    def sbml_text(self) -> str:
        return libsbml.writeSBMLToString(self.petab_problem.model.sbml_model.getSBMLDocument())

    @property
    def condition_ids(self) -> list[str]:
        """Experiments with data, in measurement-table order of first use (the unit of
        simulation; measurements without an experiment: `DEFAULT_EXPERIMENT`)."""
        return list(dict.fromkeys(m.experiment_id or DEFAULT_EXPERIMENT
                                  for m in self.petab_problem.measurements))


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
    language = str(model_info.get("language", "sbml")).lower()
    if language != "sbml":
        hint = " (AMICI imports PySB models only with the pysb package, which is not " \
               "installed)" if language == "pysb" else ""
        raise NotSupportedError(Issue(f"model language {model_info.get('language')!r}; only "
                                      f"SBML is supported{hint}", where))
    return model_info


def _issue_file(task: str | None, files: dict[str, list[str]], where: str) -> str:
    """The one table file a petab.v2 check reads, else the YAML."""
    kind = _TASK_TABLE.get(task or "")
    candidates = files.get(kind or "", [])
    return candidates[0] if len(candidates) == 1 else where


def _measurement_issues(p2: v2.Problem, files: dict[str, list[str]]) -> list[Issue]:
    """Empty measurement tables, non-finite measurements and measurements of experiments
    the experiment table does not define (row = TSV line, header 1)."""
    issues = []
    known = {e.id for e in p2.experiments}
    for path, table in zip(files.get("measurement", []), p2.measurement_tables, strict=False):
        if not table.measurements:
            issues.append(Issue("measurement table has no rows", path))
        for row, m in enumerate(table.measurements, start=2):
            if not math.isfinite(float(m.measurement)):
                issues.append(Issue(f"measurement {m.measurement} is not finite", path, row,
                                    "measurement"))
        issues += unknown_experiments(table.measurements, known, path)
    return issues


def _read(path: Path, files: dict[str, list[str]]) -> v2.Problem:
    """petab.v2's problem, validated; InputError listing its findings with their files."""
    where = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p2 = v2.Problem.from_yaml(path)
            result = p2.validate()
    except Exception as err:  # pydantic / pandas errors: report them as input errors
        # pydantic names the record type it rejected (e.g. "Measurement"): name its table
        candidates = files.get(_RECORD_TABLE.get(str(getattr(err, "title", "")), ""), [])
        raise InputError(Issue(f"cannot read PEtab v2 problem: {err}",
                               candidates[0] if len(candidates) == 1 else where)) from err
    issues = [Issue(e.message, _issue_file(e.task, files, where)) for e in result
              if e.level >= petab.v2.lint.ValidationIssueSeverity.ERROR]
    issues += _measurement_issues(p2, files)
    if issues:
        raise InputError(issues, header=f"Invalid PEtab v2 problem {path}")
    return p2


def load_v2(path: Path, config: dict[str, Any], solver: Any = None) -> ProblemV2:
    """Load and validate a PEtab v2 problem YAML (one SBML model).

    Args:
        path: The problem YAML (``format_version: 2`` / ``2.0.0``).
        config: Its parsed content.
        solver: `SolverSettings`; default: the YAML's ``sbmlhybrid: solver:`` entry.

    Returns:
        The `ProblemV2`.

    Raises:
        InputError: the SBML model, a table or petab.v2's validation has errors (each with
            its file, and row and column where known).
        NotSupportedError: not exactly one SBML model (e.g. PySB), or mapping-table entries
            that point outside the SBML model.
    """
    where = str(path)
    model_info = _sbml_model_entry(config, where)
    base = path.parent
    files = {kind: [str(base / f) for f in config.get(key) or []]
             for kind, key in _FILE_KEYS.items()}
    files["model"] = [str(base / str(model_info["location"]))]
    load_sbml(Path(files["model"][0]))  # InputError with libsbml's line numbers
    p2 = _read(path, files)
    bad_maps = [m.petab_id for m in p2.mappings if m.model_id and m.model_id != m.petab_id
                and p2.model.sbml_model.getElementBySId(m.model_id) is None]
    if bad_maps:
        raise NotSupportedError(Issue(f"mapping-table entries {bad_maps} point at entities "
                                      "outside the SBML model (extensions)",
                                      (files["mapping"] or [where])[0]))
    problem = ProblemV2(p2, problem_name(path), path, files, solver or solver_settings(config))
    _flatten_if_needed(problem)
    return problem


def _flatten_if_needed(problem: ProblemV2) -> None:
    """Flatten timepoint-specific overrides in place, keeping the original (AMICI's helpers).

    Numeric noise overrides that vary per measurement need no flattening: AMICI's experiment
    manager passes them as data sigmas.
    """
    from amici.importers.petab import (
        flatten_timepoint_specific_output_overrides,
        has_timepoint_specific_overrides,
    )

    if has_timepoint_specific_overrides(problem.petab_problem,
                                        ignore_scalar_numeric_noise_parameters=True):
        problem.unflattened = copy.deepcopy(problem.petab_problem)
        flatten_timepoint_specific_output_overrides(problem.petab_problem)


__all__ = ["DEFAULT_CONDITION", "DEFAULT_EXPERIMENT", "ProblemV2", "experiments_to_conditions",
           "load_v2", "measurements_to_v1", "simulation_table_to_v2", "unknown_experiments"]
