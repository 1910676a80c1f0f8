"""Checks against the official PEtab v2 test suite (SBML cases; hand-written).

Each case folder ``NNNN`` has ``_NNNN.yaml`` and ``_NNNN_solution.yaml`` with the reference
``llh``, ``chi2`` and simulation tables, for prior cases also ``log_prior`` (per parameter)
and ``unnorm_log_posterior``, and absolute tolerances ``tol_llh``, ``tol_chi2``,
``tol_simulations``, ``tol_log_prior``, ``tol_unnorm_log_posterior``. `check_v2_case` reports
one `Check` per reference value the case has, with the case's tolerance (a case passes when
every error is within its tolerance: asserted in ``tests/test_petab_v2.py``). Problems go
through the same path as any v2 problem: `load_problem` -> compile cache -> AMICI's native
v2 import and simulation (`sbmlhybrid.objective.petab_v2`). A `NotSupportedError` (e.g. a
PySB case) is reported as outcome ``not_supported``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from sbmlhybrid.errors import NotSupportedError, SbmlHybridError
from sbmlhybrid.objective import create_objective
from sbmlhybrid.problem import load_problem
from sbmlhybrid.testing.results import CaseResult, Check

#: Solver tolerances of the checks (the suite's references are exact to ~1e-10).
RTOL, ATOL = 1e-10, 1e-12


def _simulation_error(sim: pd.DataFrame, ref: pd.DataFrame) -> float:
    """Largest absolute simulation difference; rows matched by (observable, experiment,
    time) in table order, so replicates pair up in measurement-table order."""
    keys = ["observableId", "experimentId", "time"]
    tables = []
    for table in (sim, ref):
        table = table.assign(experimentId=table["experimentId"].fillna("").astype(str),
                             time=table["time"].astype(float))
        tables.append(table.sort_values(keys, kind="stable").reset_index(drop=True))
    sim, ref = tables
    if len(sim) != len(ref) or not (sim[keys] == ref[keys]).all(axis=None):
        return math.inf
    return float(np.max(np.abs(sim["simulation"].to_numpy(float)
                               - ref["simulation"].to_numpy(float))))


def _checks(values: dict[str, float], sol: dict[str, Any]) -> list[Check]:
    """`values` against the solution's references, with the solution's tolerances."""
    checks = []
    for name, value in values.items():
        ref = sol[name]
        tol = sol[f"tol_{name}"]
        if name == "log_prior":
            ref = sum(ref.values())  # the per-parameter tolerance, summed
            tol = tol * len(sol[name])
        checks.append(Check(name, abs(value - ref), float(tol)))
    return checks


def check_v2_case(folder: str | Path) -> CaseResult:
    """Load, compile (cached), simulate and compare one case.

    Returns:
        A `CaseResult` (suite ``petab_v2``): checks ``llh``, ``chi2``, ``simulations``
        (largest absolute difference) and, where the case has them, ``log_prior`` and
        ``unnorm_log_posterior``; values ``llh``, ``llh_ref``, ``chi2``, ``chi2_ref``;
        ``seconds`` is the whole check, compile or cache lookup included.
    """
    start = time.perf_counter()
    folder = Path(folder)
    case = folder.name
    try:
        problem = load_problem(folder / f"_{case}.yaml")
        problem.solver.rtol, problem.solver.atol = RTOL, ATOL
        objective = create_objective(problem)
    except NotSupportedError as err:
        return CaseResult("petab_v2", case, "not_supported", message=" ".join(str(err).split()),
                          seconds=time.perf_counter() - start)
    except SbmlHybridError as err:
        return CaseResult("petab_v2", case, "error", message=f"{type(err).__name__}: {err}",
                          seconds=time.perf_counter() - start)
    sol = yaml.safe_load((folder / f"_{case}_solution.yaml").read_text())
    ev = objective.evaluate(gradient=False, return_rdatas=True, raise_on_failure=False)
    values = {"llh": -ev.fval, "chi2": float(sum(r.chi2 for r in ev.rdatas or []))}
    if "log_prior" in sol:
        values["log_prior"] = objective.log_prior()
    if "unnorm_log_posterior" in sol:
        values["unnorm_log_posterior"] = values["llh"] + objective.log_prior()
    ref = pd.concat(pd.read_csv(folder / f, sep="\t") for f in sol["simulation_files"])
    checks = _checks(values, sol)
    checks.append(Check("simulations", _simulation_error(objective.simulate(), ref),
                        float(sol["tol_simulations"])))
    return CaseResult("petab_v2", case, "ran", checks,
                      values={"llh": values["llh"], "llh_ref": sol["llh"],
                              "chi2": values["chi2"], "chi2_ref": sol["chi2"]},
                      seconds=time.perf_counter() - start)


def run_v2_suite(suite_dir: str | Path) -> list[CaseResult]:
    """Every case folder of the suite, in name order."""
    return [check_v2_case(p) for p in sorted(p for p in Path(suite_dir).iterdir() if p.is_dir())]
