"""One unit of work for every method; polish; start-point resampling; threads; CLI checks.

The work counter (`sbmlhybrid.objective.work`, inside pyPESTO's calculator) is checked against
an independent count taken one level lower, at `amici.sim.sundials.run_simulations`.
Problem: tests/data/minibatch_blowup (6 conditions; `cboom` explodes when g > k1).
"""

from __future__ import annotations

import contextlib
import logging

import amici.sim.sundials as asd
import numpy as np
import pytest
from pypesto.history import HistoryOptions
from pypesto.optimize import OptimizeOptions

from sbmlhybrid.cli.main import main
from sbmlhybrid.objective import create_objective
from sbmlhybrid.optimize import (
    MiniBatchOptimizer,
    make_optimizer,
    start_points,
    start_points_and_redraws,
)
from sbmlhybrid.problem import load_problem
from tests.conftest import REPO

BLOWUP = REPO / "tests" / "data" / "minibatch_blowup" / "problem.yaml"
X0 = np.log10([0.3, 0.6, 1.0, 0.1])


@pytest.fixture(scope="module")
def blowup():
    return create_objective(load_problem(BLOWUP))


@pytest.fixture
def amici_count(monkeypatch):
    """Conditions AMICI actually ran, by sensitivity order: {"sensitivity": n, "forward": m}."""
    seen = {"sensitivity": 0, "forward": 0}
    run = asd.run_simulations

    def counting(model, solver, edatas, *args, **kwargs):
        rdatas = run(model, solver, edatas, *args, **kwargs)
        key = "forward" if int(solver.get_sensitivity_order()) == 0 else "sensitivity"
        seen[key] += sum(int(r.status) != asd.AMICI_NOT_RUN for r in rdatas)
        return rdatas

    monkeypatch.setattr(asd, "run_simulations", counting)
    return seen


def _minimize(objective, optimizer, x0=X0):
    return optimizer.minimize(problem=objective.pypesto_problem, x0=np.asarray(x0), id="0",
                              history_options=HistoryOptions(),
                              optimize_options=OptimizeOptions(allow_failed_starts=True))


def _check(objective, amici_count) -> None:
    assert objective.work.count.sensitivity == amici_count["sensitivity"]
    assert objective.work.count.forward == amici_count["forward"]


def test_single_evaluations_count_their_conditions(blowup, amici_count) -> None:
    blowup.work.reset()
    blowup.evaluate(X0)  # 6 conditions with gradient
    blowup.evaluate(X0, gradient=False)  # 6 forward
    blowup.evaluate(X0, conditions=[0, 3])  # 2 with gradient
    blowup.pypesto_problem.objective(X0, sensi_orders=(0, 1, 2))  # FIM: 6 with sensitivities
    assert (blowup.work.count.sensitivity, blowup.work.count.forward) == (14, 6)
    _check(blowup, amici_count)


@pytest.mark.parametrize("name", ["fides", "lbfgsb"])
def test_fullbatch_optimizers_count_every_trial(blowup, amici_count, name) -> None:
    blowup.work.reset()
    result = _minimize(blowup, make_optimizer(name, 30))
    assert blowup.work.count.sensitivity >= 6 * result.n_grad > 0
    _check(blowup, amici_count)


def test_minibatch_with_rescue_and_monitoring_counts_everything(blowup, amici_count) -> None:
    blowup.work.reset()
    opt = MiniBatchOptimizer(method="adam", batch_size=2, epochs=6, seed=1, learning_rate=0.5,
                             full_gradient=False)
    r = _minimize(blowup, opt)
    assert r["n_relaxed_retries"] > 0  # failed conditions were re-simulated: counted too
    assert r["work_sensitivity"] == blowup.work.count.sensitivity
    assert r["work_forward"] == 7 * 6  # monitoring: start + every epoch, forward only
    _check(blowup, amici_count)


def test_polished_result_is_a_full_objective_optimum(blowup, amici_count) -> None:
    problem = blowup.pypesto_problem
    plain = _minimize(blowup, MiniBatchOptimizer(method="adam", batch_size=2, max_steps=20,
                                                 full_eval_every=0, seed=2))
    blowup.work.reset()
    amici_count.update(sensitivity=0, forward=0)
    polished = _minimize(blowup, MiniBatchOptimizer(method="adam", batch_size=2, max_steps=20,
                                                    full_eval_every=0, seed=2,
                                                    polish="fides", polish_max_iter=100))
    assert "fides" in polished.message and polished["n_iterations"] == 20
    assert polished["work_sensitivity"] == blowup.work.count.sensitivity
    _check(blowup, amici_count)
    fval, grad = problem.objective(polished.x[problem.x_free_indices], sensi_orders=(0, 1))
    assert polished.fval == pytest.approx(float(fval), rel=1e-12)
    assert polished.fval < plain.fval - 1e-3
    assert np.linalg.norm(grad) < 1e-3 * np.linalg.norm(
        problem.objective(plain.x[problem.x_free_indices], sensi_orders=(0, 1))[1])


def test_start_points_with_a_non_finite_objective_are_resampled(blowup) -> None:
    raw = start_points(blowup, 12, seed=3, resample=False)
    finite = np.array([np.isfinite(blowup.evaluate(x, gradient=False,
                                                   raise_on_failure=False).fval) for x in raw])
    assert 0 < finite.sum() < len(raw)  # some starts lie where `cboom` explodes
    fixed = start_points(blowup, 12, seed=3)
    assert all(np.isfinite(blowup.evaluate(x, gradient=False, raise_on_failure=False).fval)
               for x in fixed)
    np.testing.assert_array_equal(fixed[finite], raw[finite])  # finite starts kept
    np.testing.assert_array_equal(start_points(blowup, 12, seed=3), fixed)  # reproducible
    again, redraws = start_points_and_redraws(blowup, 12, seed=3)
    np.testing.assert_array_equal(again, fixed)
    assert [r > 0 for r in redraws] == list(~finite)  # redrawn exactly where not finite
    assert np.all(fixed >= blowup.pypesto_problem.lb) and np.all(fixed <= blowup.pypesto_problem.ub)


def test_threaded_evaluation_equals_serial(blowup) -> None:
    blowup.n_threads = 1
    serial = blowup.evaluate(X0)
    blowup.n_threads = 2
    try:
        threaded = blowup.evaluate(X0)
    finally:
        blowup.n_threads = 1
    assert threaded.fval == pytest.approx(serial.fval, rel=1e-12)
    np.testing.assert_allclose(threaded.grad, serial.grad, rtol=1e-12, atol=0)


@pytest.mark.parametrize("args, option", [
    (["--optimizer", "adam", "--batch-size", "0"], "--batch-size"),
    (["--optimizer", "adam", "--epochs", "0"], "--epochs"),
    (["--optimizer", "rmsprop", "--learning-rate", "-0.1"], "--learning-rate"),
    (["--optimizer", "rmsprop", "--learning-rate", "0"], "--learning-rate"),
    (["--optimizer", "adamw"], "--optimizer"),
    (["--optimizer", "adam", "--schedule", "cosine"], "schedule"),
    (["--optimizer", "adam", "--polish", "bfgs"], "--polish"),
    (["--optimizer", "adam", "--polish-screen", "1e-3"], "--polish-screen needs --polish"),
    (["--optimizer", "fides", "--polish-screen", "1e-3"], "--polish-screen only applies"),
    (["--optimizer", "adam", "--polish", "fides", "--polish-screen", "-1"], "--polish-screen"),
    (["--optimizer", "fides", "--batch-size", "8"], "--batch-size"),
    (["--threads", "0"], "--threads"),
    (["--threads", "2", "--engine", "process"], "--threads"),
])
def test_cli_refuses_bad_minibatch_options(args, option, tmp_path, capsys) -> None:
    code = main(["fit", str(BLOWUP), "--output", str(tmp_path / "out"), "--no-progress", *args])
    assert code == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_cli_minibatch_fit_with_polish_and_threads(blowup, tmp_path) -> None:
    out = tmp_path / "fit"
    code = main(["fit", str(BLOWUP), "--optimizer", "adam", "--batch-size", "2", "--epochs",
                 "3", "--polish", "fides", "--max-iter", "30", "--threads", "2", "--starts",
                 "2", "--seed", "5", "--output", str(out), "--no-progress"])
    assert code == 0
    import pypesto.store

    from sbmlhybrid.optimize.multistart import read_work

    stored = pypesto.store.read_result(str(out / "result.hdf5"), optimize=True)
    problem = blowup.pypesto_problem
    for r in stored.optimize_result.list:
        assert "fides" in str(r.message)
        # a full-objective value (with sensitivities: their error control changes the
        # trajectory at the tolerance level, so compare like with like)
        fval, _ = problem.objective(np.asarray(r.x)[problem.x_free_indices],
                                    sensi_orders=(0, 1))
        assert r.fval == pytest.approx(float(fval), rel=1e-12)
    work = read_work(out / "result.hdf5")
    assert sorted(work) == ["0", "1"] and all(w[0] > 0 for w in work.values())


@contextlib.contextmanager
def _amici_records():
    """Records of AMICI's per-condition simulation logger, caught at that logger itself
    (other tests and AMICI may change levels or propagation above it)."""
    from sbmlhybrid._logs import _RECORDS

    logger = logging.getLogger(_RECORDS)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def blowup_adjoint():
    return create_objective(load_problem(BLOWUP), sensitivity_method="adjoint")


def _steps(objective, x) -> list[int]:
    """Integration steps per condition at `x` (forward run, full reporting)."""
    rdatas = objective.evaluate(x, gradient=False, return_rdatas=True).rdatas
    return [int(np.max(r.numsteps)) for r in rdatas]


def test_adjoint_calls_repeat_only_the_conditions_over_the_low_cap(
        blowup_adjoint, amici_count, monkeypatch) -> None:
    """With the first cap between the conditions' step counts, the capped evaluation gives
    the uncapped value and gradient exactly; the conditions over the cap (and those a
    fail-fast run skipped after the first of them) are simulated twice and counted twice."""
    import sbmlhybrid.objective._step_cap as step_cap

    obj = blowup_adjoint
    steps = _steps(obj, X0)
    order = sorted(range(len(steps)), key=steps.__getitem__)  # fewest steps first
    ranked = [steps[i] for i in order]
    low = ranked[2] + 1  # the three cheapest conditions fit, the others do not
    assert ranked[3] > low and max(steps) < obj.problem.solver.max_steps
    monkeypatch.setattr(step_cap, "ADJOINT_STEP_CAP", 10**9)  # no first cap: the reference
    ref = obj.evaluate(X0, conditions=order)
    monkeypatch.setattr(step_cap, "ADJOINT_STEP_CAP", low)
    obj.work.reset()
    amici_count.update(sensitivity=0, forward=0)
    with _amici_records() as records:
        capped = obj.evaluate(X0, conditions=order)
    assert records == []  # the repaired failure is not reported
    assert capped.fval == ref.fval and np.array_equal(capped.grad, ref.grad)
    # 3 fit, the 4th runs out of steps, the last 2 are not run; 3 repeated
    assert obj.work.count.sensitivity == 3 + 1 + 3
    assert obj.amici_objective.amici_solver.get_max_steps() == obj.problem.solver.max_steps
    _check(obj, amici_count)


def test_adjoint_call_over_the_users_cap_still_fails(blowup_adjoint, monkeypatch) -> None:
    import sbmlhybrid.objective._step_cap as step_cap

    obj = blowup_adjoint
    steps = _steps(obj, X0)
    solver = obj.amici_objective.amici_solver
    monkeypatch.setattr(step_cap, "ADJOINT_STEP_CAP", 2)
    solver.set_max_steps(max(steps) - 1)
    try:
        with _amici_records() as records:
            ev = obj.evaluate(X0, raise_on_failure=False)
    finally:
        solver.set_max_steps(obj.problem.solver.max_steps)
    assert ev.fval == np.inf and np.isnan(ev.grad).all()
    assert any(r.levelname == "ERROR" for r in records)  # the real failure is reported


@pytest.mark.parametrize("statuses, repeated", [
    ([0, 0, 0], []),
    ([0, asd.AMICI_TOO_MUCH_WORK, asd.AMICI_NOT_RUN], [1, 2]),
    # a preequilibration out of steps fails its steady state: AMICI_ERROR
    ([asd.AMICI_ERROR, asd.AMICI_NOT_RUN, 0], [0, 1]),
    ([0, asd.AMICI_NOT_RUN], []),  # nothing failed: not-run conditions were not requested
])
def test_conditions_repeated_after_the_capped_attempt(statuses, repeated) -> None:
    from sbmlhybrid.objective._step_cap import _to_repeat

    assert _to_repeat(statuses) == repeated
