"""Full-batch optimizers with integration rescue (`sbmlhybrid.optimize.rescued`).

Problem: tests/data/minibatch_blowup (6 conditions, a prior on `scale`). A step cap of 175
makes conditions fail at rtol 1e-8 that succeed 100x looser (as in test_minibatch.py).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pypesto.optimize as optimize
import pytest

from sbmlhybrid.objective import create_objective
from sbmlhybrid.optimize import CountedOptimizer, FitSettings, fit, make_optimizer
from sbmlhybrid.optimize.minibatch_eval import BatchEvaluator
from sbmlhybrid.optimize.rescued import RescuedOptimizer, rescued_problem
from sbmlhybrid.problem import load_problem
from tests.conftest import REPO

BLOWUP = REPO / "tests" / "data" / "minibatch_blowup" / "problem.yaml"
X0 = np.log10([0.3, 0.6, 1.0, 0.1])


@pytest.fixture(scope="module")
def blowup():
    return create_objective(load_problem(BLOWUP))


@contextmanager
def step_cap(objective, n: int):
    solver = objective.amici_objective.amici_solver
    old = solver.get_max_steps()
    solver.set_max_steps(n)
    try:
        yield
    finally:
        solver.set_max_steps(old)


@pytest.mark.parametrize("fixed", [False, True])
def test_values_and_derivatives_equal_the_problem_objective(fixed: bool) -> None:
    blowup = create_objective(load_problem(BLOWUP))
    problem = blowup.pypesto_problem
    x = np.log10([0.7, 0.35, 1.5, 0.3])
    if fixed:  # k2 fixed: vectors of the objective are longer than the free ones
        problem.fix_parameters([1], [x[1]])
        x = np.delete(x, 1)
    orders = (0, 1, 2) if problem.objective.has_hess else (0, 1)
    ref = problem.objective(x, sensi_orders=orders)
    with BatchEvaluator(problem, n_threads=None) as ev:
        wrapped = rescued_problem(problem, ev)
        before = blowup.work.snapshot()
        got = wrapped.objective(x, sensi_orders=orders)
        done = blowup.work.snapshot() - before
    assert wrapped.objective.has_hess == problem.objective.has_hess
    assert got[0] == pytest.approx(ref[0], rel=1e-12)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-10, atol=1e-12)
    if len(orders) == 3:
        np.testing.assert_allclose(got[2], ref[2], rtol=1e-10, atol=1e-12)
    assert (done.sensitivity, done.forward) == (6, 0)  # one call over the 6 conditions
    assert ev.counters.n_failed_simulations == 0


def test_failed_conditions_are_rescued_and_counted(blowup) -> None:
    problem = blowup.pypesto_problem
    ref_f, ref_g = problem.objective(X0, sensi_orders=(0, 1))
    with step_cap(blowup, 175):
        plain = problem.objective(X0, sensi_orders=(0, 1))
        with BatchEvaluator(problem, n_threads=None) as ev:
            before = blowup.work.snapshot()
            f, g = rescued_problem(problem, ev).objective(X0, sensi_orders=(0, 1))
            done = blowup.work.snapshot() - before
    assert not np.isfinite(plain[0])  # the plain full objective fails here
    assert ev.counters.n_relaxed_rescued > 0 and ev.counters.n_failed_batches == 0
    assert f == pytest.approx(ref_f, rel=1e-4)
    np.testing.assert_allclose(g, ref_g, rtol=1e-2, atol=1e-3 * np.abs(ref_g).max())
    # every simulation AMICI ran (batch, re-simulations, retries) is work
    assert done.sensitivity == ev.counters.n_simulations > 6


@pytest.mark.parametrize("name", ["fides", "lbfgsb"])
def test_full_batch_optimizers_go_on_where_the_plain_ones_stop(blowup, name: str) -> None:
    problem = blowup.pypesto_problem
    f0 = float(problem.objective(X0))
    with step_cap(blowup, 175):
        ends = {}
        for rescue in (False, True):
            opt = CountedOptimizer(make_optimizer(name, 200, rescue=rescue))
            problem.set_x_guesses(problem.get_full_vector(X0)[None, :])
            res = optimize.minimize(problem, optimizer=opt, n_starts=1, progress_bar=False,
                                    options=optimize.OptimizeOptions(allow_failed_starts=True))
            problem.set_x_guesses(np.zeros((0, problem.dim_full)))
            ends[rescue] = res.optimize_result.list[0]
    plain, rescued = ends[False], ends[True]
    assert not (plain.fval is not None and plain.fval < 0.5 * f0)  # stuck at the start
    assert rescued.fval < 0.1 * f0
    assert rescued["n_relaxed_rescued"] > 0
    assert rescued["work_sensitivity"] > 0
    # the reported optimum is the rescued full objective at the end point (to the
    # integration error: the optimizer's call had sensitivities, which take other steps)
    with BatchEvaluator(problem, n_threads=None) as ev:
        with step_cap(blowup, 175):
            again = rescued_problem(problem, ev).objective(rescued.x[problem.x_free_indices])
    assert rescued.fval == pytest.approx(float(again), rel=1e-6)


def test_fit_uses_the_rescue_and_results_carry_its_counters(blowup, tmp_path) -> None:
    result = fit(blowup, FitSettings(n_starts=2, optimizer="lbfgsb", max_iter=50, seed=2),
                 output=tmp_path / "fit.hdf5", progress=False)
    for r in result.optimize_result.list:
        assert r["n_failed_batches"] is not None and r["work_sensitivity"] > 0
    opt = make_optimizer("fides", 10)
    assert isinstance(opt, RescuedOptimizer) and "Fides" in repr(opt)


def test_minibatch_polish_goes_on_with_the_rescue(blowup) -> None:
    from sbmlhybrid.optimize import MiniBatchOptimizer

    problem = blowup.pypesto_problem
    f0 = float(problem.objective(X0))
    opt = MiniBatchOptimizer(method="adam", batch_size=2, epochs=2, seed=1, learning_rate=0.05,
                             polish="fides", polish_max_iter=30)
    with step_cap(blowup, 175):  # the plain full objective is infinite along the way
        problem.set_x_guesses(problem.get_full_vector(X0)[None, :])
        res = optimize.minimize(problem, optimizer=opt, n_starts=1, progress_bar=False,
                                options=optimize.OptimizeOptions(allow_failed_starts=True))
        problem.set_x_guesses(np.zeros((0, problem.dim_full)))
    r = res.optimize_result.list[0]
    assert r.fval is not None and np.isfinite(r.fval) and r.fval < 0.1 * f0
    assert r["n_relaxed_rescued"] > 0
