"""Official PEtab v2 test suite (SBML cases) through AMICI's native v2 import and simulation.

Every SBML case must pass: llh, chi2, simulations (and, for prior cases, log-prior and
unnormalized log-posterior) within the case's own tolerances; a NotSupportedError fails the
test. PySB cases need pysb (not installed) and must raise NotSupportedError naming it.
The default run checks a subset that covers the v2 features beyond PEtab v1; all cases are
`slow` (and run in benchmarks/petab_sciml_conformance.py).
"""

from __future__ import annotations

import copy
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sbmlhybrid.errors import InputError, NotSupportedError
from sbmlhybrid.objective import create_objective
from sbmlhybrid.problem import load_problem
from sbmlhybrid.problem.v2_to_v1 import experiments_to_conditions
from sbmlhybrid.testing import ATOL, RTOL, check_v2_case
from tests.conftest import SHARED, fd_gradient
from tests.suite_results import assert_within_tolerance

SUITE = SHARED / "petab_test_suite" / "v2.0.0" / "sbml"
PYSB = SUITE.parent / "pysb"
# One AMICI build each: 0006 timepoint-specific overrides (flattened), 0016 three periods and
# a mapping table, 0018 pre-equilibration then t0 = 10, 0024 all eleven priors, 0027
# expression-valued condition changes over two experiments (also used below).
DEFAULT_CASES = {"0006", "0016", "0018", "0024", "0027"}
CASES = [pytest.param(c, marks=() if c in DEFAULT_CASES else pytest.mark.slow)
         for c in sorted(p.name for p in SUITE.iterdir())] if SUITE.exists() else []
needs_suite = pytest.mark.skipif(not SUITE.exists(),
                                 reason=f"{SUITE} absent (../shared not checked out)")


@needs_suite
@pytest.mark.parametrize("case", CASES)
def test_v2_case(case: str) -> None:
    assert_within_tolerance(check_v2_case(SUITE / case))


@needs_suite
def test_suite_has_31_sbml_cases() -> None:
    assert len(CASES) == 31


@needs_suite
def test_pysb_cases_are_not_supported_and_name_pysb() -> None:
    cases = sorted(p for p in PYSB.iterdir() if p.is_dir())
    assert cases
    for case in cases:
        with pytest.raises(NotSupportedError, match="model language 'pysb'.*pysb package"):
            load_problem(case / f"_{case.name}.yaml")


@needs_suite
def test_empty_measurement_table_names_file(tmp_path: Path) -> None:
    folder = shutil.copytree(SUITE / "0001", tmp_path / "0001")
    table = folder / "_measurements.tsv"
    table.write_text(table.read_text().splitlines()[0] + "\n")  # header only
    with pytest.raises(InputError) as info:
        load_problem(folder / "_0001.yaml")
    assert f"{table}: measurement table has no rows" in str(info.value)


@needs_suite
def test_table_errors_name_file_row_and_column(tmp_path: Path) -> None:
    folder = shutil.copytree(SUITE / "0002", tmp_path / "0002")
    table = folder / "_measurements.tsv"
    lines = table.read_text().splitlines()
    lines[2] = lines[2].replace("0.1", "inf")  # TSV row 3
    lines[5] = lines[5].replace("obs_b", "obs_zz")
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        load_problem(folder / "_0002.yaml")
    text = str(info.value)
    assert f"{table}, row 3, column measurement: measurement inf is not finite" in text
    assert f"{table}: Observable obs_zz is used in the measurement table" in text
    (folder / "_parameters.tsv").write_text(
        (folder / "_parameters.tsv").read_text().replace("\t0.6\t", "\tzz\t"))
    with pytest.raises(InputError, match=r"_parameters.tsv: cannot read PEtab v2 problem"):
        load_problem(folder / "_0002.yaml")


@needs_suite
def test_subsets_gradient_copies_and_pypesto_problem() -> None:
    """0027 (two experiments, estimated parameters inside condition expressions): subsets
    sum to the whole, the gradient matches finite differences, copies (thread engines) and
    pickles (process engines) evaluate alike, and pyPESTO's objective is the same value."""
    problem = load_problem(SUITE / "0027" / "_0027.yaml")
    problem.solver.rtol, problem.solver.atol = 1e-12, 1e-14
    objective = create_objective(problem)
    assert objective.conditions == ["e1", "e2"]
    x = objective.x_nominal_free * 1.1
    full = objective.evaluate(x)
    parts = [objective.evaluate(x, [c]) for c in objective.conditions]
    np.testing.assert_allclose(sum(p.fval for p in parts), full.fval, rtol=1e-12)
    np.testing.assert_allclose(sum(p.grad for p in parts), full.grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(full.grad, fd_gradient(objective, x, 1e-5), rtol=1e-5,
                               atol=1e-7)
    assert np.any(np.abs(full.grad) > 1e-3)  # the check is not vacuous
    for other in (copy.deepcopy(objective), pickle.loads(pickle.dumps(objective))):
        assert other.amici_model is not objective.amici_model
        np.testing.assert_allclose(other.evaluate(x).fval, full.fval, rtol=1e-12)
    fval, grad = objective.pypesto_problem.objective(x, sensi_orders=(0, 1))
    np.testing.assert_allclose(fval, full.fval, rtol=1e-12)  # no priors: likelihood only
    np.testing.assert_allclose(grad, full.grad, rtol=1e-12)


@needs_suite
def test_priors_enter_pypesto_objective_with_gradient() -> None:
    """0024: the pyPESTO objective is -llh - log prior (suite value), gradient by FD."""
    import yaml

    problem = load_problem(SUITE / "0024" / "_0024.yaml")
    problem.solver.rtol, problem.solver.atol = RTOL, ATOL
    objective = create_objective(problem)
    sol = yaml.safe_load((SUITE / "0024" / "_0024_solution.yaml").read_text())
    x = objective.x_nominal_free
    fval = objective.pypesto_problem.objective(x)
    assert abs(-fval - sol["unnorm_log_posterior"]) <= sol["tol_unnorm_log_posterior"]
    x = x * 0.9  # off the nominal point, inside all bounds and prior supports
    grad = objective.pypesto_problem.objective(x, sensi_orders=(1,))
    eps = 1e-6
    fd = [(objective.pypesto_problem.objective(x + eps * e)
           - objective.pypesto_problem.objective(x - eps * e)) / (2 * eps)
          for e in np.eye(len(x))]
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


@needs_suite
def test_simulation_table_is_petab_v2() -> None:
    problem = load_problem(SUITE / "0016" / "_0016.yaml")
    table = create_objective(problem).simulate()
    measurements = pd.read_csv(SUITE / "0016" / "_measurements.tsv", sep="\t")
    assert "simulation" in table and "experimentId" in table
    assert len(table) == len(measurements)


def test_preequilibration_parameter_persists() -> None:
    """v2 -> v1 helper of the SciML importer: a parameter set before t0 keeps its value in
    the main period (v2 semantics)."""
    import libsbml
    import petab.v2 as v2

    doc = libsbml.SBMLDocument(3, 2)
    model = doc.createModel()
    for pid in ("k1", "k2"):
        p = model.createParameter()
        p.setId(pid)
        p.setValue(1.0)
        p.setConstant(True)
    exp = v2.core.Experiment(id="e0", periods=[
        v2.core.ExperimentPeriod(time=float("-inf"), condition_ids=["pre"]),
        v2.core.ExperimentPeriod(time=0.0, condition_ids=["main"])])
    df, exp_map = experiments_to_conditions([exp], {"pre": [("k1", 0.3), ("k2", 2.0)],
                                                    "main": [("k1", 0.8)]}, model, set())
    assert exp_map == {"e0": ("e0__preeq", "e0")}
    assert df.loc["e0", "k1"] == 0.8 and df.loc["e0", "k2"] == 2.0
    assert df.loc["e0__preeq", "k1"] == 0.3


@pytest.mark.skipif(not SUITE.exists(), reason="../shared/petab_test_suite not found")
def test_cli_fits_a_v2_problem(tmp_path: Path) -> None:
    from sbmlhybrid.cli.main import main

    yaml_file = SUITE / "0027" / "_0027.yaml"
    out = tmp_path / "fit"
    assert main(["fit", str(yaml_file), "--starts", "2", "--output", str(out),
                 "--no-progress"]) == 0
    best = pd.read_csv(out / "best_parameters.tsv", sep="\t")
    objective = create_objective(load_problem(yaml_file))
    x = best.set_index("parameterId").loc[objective.x_free_ids, "estimate_scaled"].to_numpy()
    nominal = objective.pypesto_problem.objective(objective.x_nominal_free)
    fitted, grad = objective.pypesto_problem.objective(x, sensi_orders=(0, 1))
    assert fitted <= nominal + 1e-9  # the fit is no worse than the nominal parameters
    assert np.linalg.norm(grad) < 1e-3  # and it is a stationary point
