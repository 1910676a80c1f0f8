"""Mini-batch optimizers: exact batch gradients, descent, rescue, reproducibility, results.

Problem: tests/data/minibatch_blowup (6 conditions, a prior on `scale`, and a condition whose
integration fails for large `g`; see its make_problem.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pypesto
import pypesto.optimize as optimize
import pypesto.store
import pytest

from sbmlhybrid.cli.core import _minibatch_optimizer
from sbmlhybrid.errors import InputError
from sbmlhybrid.objective import create_objective
from sbmlhybrid.optimize import FitSettings, fit
from sbmlhybrid.optimize.minibatch import TRACE_COLUMNS, MiniBatchOptimizer
from sbmlhybrid.optimize.minibatch_eval import BatchEvaluator
from sbmlhybrid.optimize.minibatch_rules import METHODS, UpdateRule, learning_rate
from sbmlhybrid.problem import load_problem
from tests.conftest import REPO

BLOWUP = REPO / "tests" / "data" / "minibatch_blowup" / "problem.yaml"
X0 = np.log10([0.3, 0.6, 1.0, 0.1])  # k1, k2, scale, g: far from the optimum, integrable
# plain SGD / momentum steps scale with the gradient (~1e4 here); the others are scale-free
LR = {"sgd": 1e-6, "momentum": 1e-6}


@pytest.fixture(scope="module")
def blowup():
    return create_objective(load_problem(BLOWUP))


def _run(problem: pypesto.Problem, optimizer: optimize.Optimizer, x0: np.ndarray = X0,
         **kwargs) -> pypesto.result.OptimizerResult:
    problem.set_x_guesses(problem.get_full_vector(x0)[None, :])
    res = optimize.minimize(problem, optimizer=optimizer, n_starts=1, progress_bar=False,
                            **kwargs)
    problem.set_x_guesses(np.zeros((0, problem.dim_full)))
    return res.optimize_result.list[0]


def _full(problem: pypesto.Problem, x: np.ndarray) -> tuple[float, np.ndarray]:
    fval, grad = problem.objective(np.asarray(x)[problem.x_free_indices], sensi_orders=(0, 1))
    return float(fval), np.asarray(grad)


def test_batch_gradients_over_an_epoch_sum_to_full_gradient(blowup) -> None:
    problem = blowup.pypesto_problem
    assert type(problem.objective).__name__ == "AggregatedObjective"  # has a prior
    x = np.log10([0.7, 0.35, 1.5, 0.3])
    f_full, g_full = problem.objective(x, sensi_orders=(0, 1))
    perm = np.random.default_rng(3).permutation(6)
    with BatchEvaluator(problem) as ev:
        f_sum, g_sum = 0.0, np.zeros_like(g_full)
        for idx in (perm[:4], perm[4:]):  # batch sizes 4 and 2: weights differ
            f, g = ev.batch(x, idx)
            f_sum += len(idx) * f
            g_sum += len(idx) * g
        prior, _ = ev.global_value(x)
    assert prior != 0.0
    assert abs(f_sum - f_full) <= 1e-10 * abs(f_full)
    np.testing.assert_allclose(g_sum, g_full, rtol=1e-10, atol=1e-10 * np.abs(g_full).max())


def test_threads_give_the_same_batch_values(blowup) -> None:
    problem = blowup.pypesto_problem
    idx = [0, 2, 3, 5]
    with BatchEvaluator(problem, n_threads=1) as ev:
        f1, g1 = ev.batch(X0, idx)
    with BatchEvaluator(problem, n_threads=2) as ev:
        f2, g2 = ev.batch(X0, idx)
    assert f1 == pytest.approx(f2, rel=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_every_optimizer_decreases_the_objective(blowup, method: str) -> None:
    problem = blowup.pypesto_problem
    f0, _ = _full(problem, problem.get_full_vector(X0))
    opt = MiniBatchOptimizer(method=method, batch_size=2, epochs=6, seed=1,
                             learning_rate=LR.get(method))
    r = _run(problem, opt)
    assert r.exitflag == 0
    assert r.fval < 0.9 * f0, (method, r.fval, f0)
    assert r["n_iterations"] == 6 * 3
    # no failures at these settings: 6 epochs x 6 conditions in batches, plus 7 monitoring
    # evaluations (start + every epoch) of all 6 conditions with gradients
    assert r["n_simulations"] == 6 * 6
    assert r["work_sensitivity"] == 6 * 6 + 7 * 6 and r["work_forward"] == 0


def test_rescue_after_failed_integrations_and_run_finishes(blowup) -> None:
    problem = blowup.pypesto_problem
    f0, _ = _full(problem, problem.get_full_vector(X0))
    # a large Adam step drives g above k1, where condition `cboom` explodes in finite time
    opt = MiniBatchOptimizer(method="adam", batch_size=2, epochs=10, seed=1, learning_rate=0.5)
    r = _run(problem, opt)
    assert r["n_failed_simulations"] > 0
    assert r["n_relaxed_retries"] > 0  # failed conditions were retried with relaxed tolerances
    assert r["n_failed_batches"] > 0
    assert r["n_step_shrinks"] > 0
    assert r["n_resets"] > 0
    assert r.exitflag == 0 and r["n_epochs"] == 10
    assert np.isfinite(r.fval) and r.fval < 0.5 * f0
    assert np.all(r.x >= problem.lb_full - 1e-12) and np.all(r.x <= problem.ub_full + 1e-12)
    trace = r["minibatch_trace"]
    assert trace.shape == (11, len(TRACE_COLUMNS))  # x0 + one full evaluation per epoch


def test_relaxed_tolerances_rescue_a_condition_hitting_max_steps(blowup) -> None:
    problem = blowup.pypesto_problem
    solver = BatchEvaluator(problem).amici_objective.amici_solver
    with BatchEvaluator(problem) as ev:
        f_ref, g_ref = ev.nllh_sum(X0, range(6))
    max_steps, rtol = solver.get_max_steps(), solver.get_relative_tolerance()
    solver.set_max_steps(175)  # rtol 1e-8 needs ~150-200 steps, 100x looser ~70-100
    try:
        with BatchEvaluator(problem) as ev:
            f, g = ev.nllh_sum(X0, range(6))
            counters = ev.counters
        assert solver.get_relative_tolerance() == rtol  # restored after the retries
    finally:
        solver.set_max_steps(max_steps)
    assert counters.n_failed_simulations > 0
    assert counters.n_relaxed_rescued > 0 and counters.n_failed_batches == 0
    assert f == pytest.approx(f_ref, rel=1e-4)
    np.testing.assert_allclose(g, g_ref, rtol=1e-2, atol=1e-3 * np.abs(g_ref).max())


def test_same_seed_same_trajectory(blowup) -> None:
    problem = blowup.pypesto_problem
    runs = [_run(problem, MiniBatchOptimizer(method="rmsprop", batch_size=2, epochs=4,
                                             seed=s)) for s in (7, 7, 8)]
    col = TRACE_COLUMNS.index("fval")
    np.testing.assert_array_equal(runs[0].x, runs[1].x)
    np.testing.assert_array_equal(runs[0]["minibatch_trace"][:, col],
                                  runs[1]["minibatch_trace"][:, col])
    assert not np.array_equal(runs[0]["minibatch_trace"][:, col],
                              runs[2]["minibatch_trace"][:, col])


@pytest.mark.parametrize("history_beats_optimizer", [True, False])
def test_result_is_the_full_objective_at_x(blowup, history_beats_optimizer: bool) -> None:
    problem = blowup.pypesto_problem
    opt = MiniBatchOptimizer(method="adam", batch_size=1, epochs=3, seed=0)
    r = _run(problem, opt, options=optimize.OptimizeOptions(
        history_beats_optimizer=history_beats_optimizer))
    f_full, g_full = _full(problem, r.x)
    assert r.fval == pytest.approx(f_full, rel=1e-12)
    np.testing.assert_allclose(r.grad[problem.x_free_indices], g_full, rtol=1e-10)
    # the model objective (nllh, problem's own solver settings) plus the prior agrees too
    x_free = np.asarray(r.x)[problem.x_free_indices]
    with BatchEvaluator(problem) as ev:
        prior, _ = ev.global_value(x_free, gradient=False)
    assert r.fval == pytest.approx(blowup.evaluate(x_free).fval + prior, rel=1e-6)
    # single-condition batch values are far from the full value: the trap is real
    with BatchEvaluator(problem) as ev:
        f_batch, _ = ev.batch(x_free, [0])
    assert abs(f_batch - r.fval) > 1.0
    # only full evaluations reach the history: x0 + one per epoch
    assert r.n_fval == 4


def test_line_search_and_time_limit(blowup) -> None:
    problem = blowup.pypesto_problem
    f0, _ = _full(problem, problem.get_full_vector(X0))
    r = _run(problem, MiniBatchOptimizer(method="vanilla", batch_size=3, epochs=4,
                                         line_search_steps=3, learning_rate=0.3))
    assert r["n_line_search_evals"] > 0 and r.fval < f0
    r = _run(problem, MiniBatchOptimizer(method="adam", epochs=10_000, max_time=0.5))
    assert r.exitflag == 2 and r["n_epochs"] < 10_000


def test_plateau_stops_early(blowup) -> None:
    problem = blowup.pypesto_problem
    r = _run(problem, MiniBatchOptimizer(method="adam", batch_size=6, epochs=200,
                                         learning_rate=1e-9, ftol=1e-6, patience=2))
    assert r.exitflag == 1 and r["n_epochs"] == 2 and "plateau" in r.message


def test_learning_rate_schedules() -> None:
    assert learning_rate("constant", 0.1, 1e-3, 5, 10) == 0.1
    assert learning_rate("linear", 1.0, 0.0 + 1e-9, 9, 10) == pytest.approx(1e-9)
    assert learning_rate("linear", 1.0, 0.5, 1, 3) == pytest.approx(0.75)
    assert learning_rate("inverse-linear", 1.0, 0.25, 1, 3) == pytest.approx(0.4)
    assert learning_rate("logarithmic", 1.0, 1e-2, 1, 3) == pytest.approx(0.1)
    for schedule in ("linear", "inverse-linear", "logarithmic"):  # one epoch: no 0-division
        assert learning_rate(schedule, 0.3, 1e-3, 0, 1) == 0.3
    with pytest.raises(InputError):
        learning_rate("cosine", 0.1, 0.1, 0, 2)


def test_update_rules() -> None:
    g = np.array([3.0, -4.0])
    np.testing.assert_allclose(UpdateRule.create("vanilla").step(g, 0.5), [-0.3, 0.4])
    np.testing.assert_allclose(UpdateRule.create("sgd").step(g, 0.1), [-0.3, 0.4])
    # bias-corrected Adam: first step is -lr * sign(g)
    np.testing.assert_allclose(UpdateRule.create("adam").step(g, 0.1), [-0.1, 0.1], rtol=1e-6)
    rule = UpdateRule.create("momentum")
    rule.step(g, 0.1)
    np.testing.assert_allclose(rule.step(g, 0.1), [-0.3 * 1.9, 0.4 * 1.9])
    rule.reset()
    np.testing.assert_allclose(rule.step(g, 0.1), [-0.3, 0.4])
    classic = UpdateRule.create("adam-classic")
    assert (classic.beta1, classic.beta2) == (0.9, 0.999)


def test_cli_and_fit_with_a_minibatch_optimizer(blowup, tmp_path: Path) -> None:
    base = dict(batch_size=None, epochs=None, max_steps=None, learning_rate=None,
                schedule=None, polish=None, seed=4, max_iter=1000, threads=1)
    ns = argparse.Namespace(**(base | dict(optimizer="adam", batch_size=2, epochs=3,
                                           learning_rate=0.05)))
    opt = _minibatch_optimizer(ns)
    assert isinstance(opt, MiniBatchOptimizer)
    assert (opt.options.batch_size, opt.options.epochs, opt.options.seed) == (2, 3, 4)
    assert opt.options.rates() == (0.05, 0.05, "constant")
    assert _minibatch_optimizer(argparse.Namespace(**(base | {"optimizer": "fides"}))) is None
    with pytest.raises(InputError, match="--optimizer"):
        _minibatch_optimizer(argparse.Namespace(**(base | {"optimizer": "bogus"})))
    result = fit(blowup, FitSettings(n_starts=2, optimizer=opt, seed=1),
                 output=tmp_path / "r.hdf5", progress=False)
    stored = pypesto.store.read_result(str(tmp_path / "r.hdf5"), optimize=True)
    assert len(stored.optimize_result.list) == 2
    best = result.optimize_result.list[0]
    assert best.fval == pytest.approx(_full(blowup.pypesto_problem, best.x)[0], rel=1e-12)


def test_multistart_with_thread_engine_matches_single_core(blowup) -> None:
    from pypesto.engine import MultiThreadEngine, SingleCoreEngine

    problem = blowup.pypesto_problem
    guesses = np.array([problem.get_full_vector(X0 + d) for d in (0.0, 0.1)])
    results = []
    for engine in (SingleCoreEngine(), MultiThreadEngine(n_threads=2)):
        problem.set_x_guesses(guesses)
        res = optimize.minimize(problem, optimizer=MiniBatchOptimizer(batch_size=3, epochs=3),
                                n_starts=2, ids=["a", "b"], engine=engine, progress_bar=False)
        results.append({r.id: r for r in res.optimize_result.list})
    problem.set_x_guesses(np.zeros((0, problem.dim_full)))
    for key in ("a", "b"):
        assert results[0][key].fval == pytest.approx(results[1][key].fval, rel=1e-12)
    assert results[0]["a"].fval != results[0]["b"].fval


def test_start_that_fails_a_batch_skips_it_and_reports_failure(blowup) -> None:
    problem = blowup.pypesto_problem
    x0 = np.log10([0.3, 0.6, 1.0, 5.0])  # g > k1: `cboom` explodes at the start already
    r = _run(problem, MiniBatchOptimizer(batch_size=2, epochs=2), x0=x0)
    assert r["n_skipped_batches"] == 2  # one batch holds cboom in each epoch
    assert r.exitflag == -1 and r.x is None and r.fval == np.inf
