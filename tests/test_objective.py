"""Objective: reference likelihoods, gradients vs finite differences, exact subset evaluation."""

from __future__ import annotations

import amici.sim.sundials as asd
import numpy as np
import pandas as pd
import pytest

from sbmlhybrid.errors import InputError, SimulationError
from sbmlhybrid.objective import create_objective
from sbmlhybrid.problem import SolverSettings, load_problem, solver_settings
from tests.conftest import PROBLEMS, REPO, fd_gradient, shared_path

TINY = REPO / "tests" / "data" / "tiny" / "problem.yaml"


def _reference(name: str) -> float:
    table = pd.read_csv(shared_path("benchmark_models", "reference_values.tsv"), sep="\t")
    return float(table.set_index("problem").loc[name, "llh_at_nominal"])


@pytest.fixture(scope="module")
def tiny():
    return create_objective(load_problem(TINY))


@pytest.mark.parametrize(
    "name", ["Boehm_JProteomeRes2014", "Fujita_SciSignal2010", "Isensee_JCB2018"])
def test_benchmark_reference_llh(name: str) -> None:
    folder = shared_path("benchmark_models", name)
    objective = create_objective(load_problem(folder / f"{name}.yaml"))
    assert objective.llh() == pytest.approx(_reference(name), abs=1e-3)


@pytest.mark.parametrize("method", ["forward", "adjoint"])
def test_boehm_gradient_matches_finite_differences(method: str) -> None:
    folder = shared_path("benchmark_models", "Boehm_JProteomeRes2014")
    problem = load_problem(folder / "Boehm_JProteomeRes2014.yaml")
    problem.solver.rtol, problem.solver.atol = 1e-12, 1e-14
    objective = create_objective(problem, sensitivity_method=method)
    # away from the optimum (the nominal point), so that gradients are well above FD noise
    x = objective.x_nominal_free + np.random.default_rng(1).normal(scale=0.1, size=9)
    grad = objective.evaluate(x).grad
    fd = fd_gradient(objective, x, 1e-5)
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())


@pytest.mark.parametrize("method", ["forward", "adjoint"])
def test_cho_gradient_matches_finite_differences(method: str) -> None:
    problem = load_problem(PROBLEMS / "cho_fedbatch" / "problem.yaml")
    problem.solver.rtol, problem.solver.atol = 1e-12, 1e-12
    objective = create_objective(problem, sensitivity_method=method)
    rng = np.random.default_rng(3)
    x = objective.x_nominal_free + rng.normal(scale=0.05, size=len(objective.x_free_ids))
    grad = objective.evaluate(x).grad
    fd = fd_gradient(objective, x, 1e-5)
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())


def test_subset_evaluation_is_exact(cho_objective) -> None:
    x = cho_objective.x_nominal_free + 0.03
    full = cho_objective.evaluate(x)
    parts = [cho_objective.evaluate(x, [i]) for i in range(len(cho_objective.conditions))]
    assert sum(p.fval for p in parts) == pytest.approx(full.fval, rel=1e-10)
    np.testing.assert_allclose(sum(p.grad for p in parts), full.grad, rtol=1e-10, atol=1e-9)
    by_id = cho_objective.evaluate(x, ["batch", "fed_high"])
    by_index = cho_objective.evaluate(x, [0, 2])
    assert by_id.fval == pytest.approx(by_index.fval, rel=1e-12)


def test_tiny_llh_matches_analytic(tiny) -> None:
    # data are exact at k1=0.8, k2=0.3, scale=2 -> residuals 0, llh = -sum log(sqrt(2 pi) sigma)
    x = np.log10([0.8, 0.3, 2.0])
    n = len(tiny.problem.petab_problem.measurement_df)
    expected = -n * np.log(np.sqrt(2 * np.pi) * 0.05)
    assert tiny.llh(x) == pytest.approx(expected, abs=1e-5)
    assert np.abs(tiny.evaluate(x).grad).max() < 1e-3


def test_solver_settings_reach_the_optimized_objective() -> None:
    problem = load_problem(TINY)
    problem.solver.rtol, problem.solver.max_steps = 1e-11, 4321
    objective = create_objective(problem)
    inner = objective.pypesto_problem.objective
    inner = getattr(inner, "_objectives", [inner])[0]
    assert inner is objective.amici_objective
    assert inner.amici_solver.get_relative_tolerance() == 1e-11
    assert inner.amici_solver.get_max_steps() == 4321


def test_adams_adjoint_with_quadrature_tolerances_matches_finite_differences() -> None:
    """Adams-Moulton with functional iteration and adjoint quadratures at their own
    tolerances: the settings reach the solver and the gradient is still right."""
    problem = load_problem(PROBLEMS / "cho_fedbatch" / "problem.yaml")
    problem.solver = SolverSettings(rtol=1e-12, atol=1e-12, multistep="adams",
                                    nonlinear_iteration="fixedpoint", quadrature_rtol=1e-10,
                                    quadrature_atol=1e-10)
    objective = create_objective(problem, sensitivity_method="adjoint")
    solver = objective.amici_objective.amici_solver
    assert solver.get_linear_multistep_method() == asd.LinearMultistepMethod.adams
    assert solver.get_non_linear_solver_iteration() == asd.NonlinearSolverIteration.fixedpoint
    assert solver.get_relative_tolerance_quadratures() == 1e-10
    assert solver.get_absolute_tolerance_quadratures() == 1e-10
    x = objective.x_nominal_free + np.random.default_rng(3).normal(
        scale=0.05, size=len(objective.x_free_ids))
    grad = objective.evaluate(x).grad
    fd = fd_gradient(objective, x, 1e-5)
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-6 * np.abs(fd).max())


@pytest.mark.parametrize("given, message", [
    ({"multistep": "rk4"}, "solver.multistep must be one of bdf, adams"),
    ({"nonlinear_iteration": "picard"}, "nonlinear_iteration must be one of newton"),
    ({"quadrature_atol": 0}, "quadrature_atol must be positive"),
    ({"rtl": 1e-6}, r"unknown solver setting\(s\) \['rtl'\]"),
    ([1e-6], "must be a mapping"),
])
def test_bad_solver_settings_name_the_key(given, message) -> None:
    with pytest.raises(InputError, match=message):
        solver_settings({"sbmlhybrid": {"solver": given}})


def test_simulation_table_and_subsets(tiny) -> None:
    table = tiny.simulate(None, ["c1"])
    assert set(table["simulationConditionId"]) == {"c1"}
    assert len(table) == 12
    with pytest.raises(InputError, match="unknown condition 'c7'"):
        tiny.evaluate(None, ["c7"])
    with pytest.raises(InputError, match="shape"):
        tiny.evaluate(np.zeros(5))


def test_failed_integration_names_condition() -> None:
    problem = load_problem(TINY)  # own objective: the module-scoped `tiny` stays untouched
    problem.solver.max_steps = 3  # too few for either condition
    objective = create_objective(problem)
    with pytest.raises(SimulationError, match=r"condition\(s\) \['c0', 'c1'\] at"):
        objective.evaluate(None)
    with pytest.raises(SimulationError, match=r"condition\(s\) \['c1'\] at"):
        objective.evaluate(None, ["c1"])  # names the failing condition of the subset only
    ev = objective.evaluate(None, raise_on_failure=False)
    assert ev.fval == np.inf and np.isnan(ev.grad).all()
