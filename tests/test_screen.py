"""Screened polish: which starts are polished, their values and work, resume, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pypesto.history import HistoryOptions
from pypesto.optimize import OptimizeOptions

from sbmlhybrid.cli.main import main
from sbmlhybrid.errors import InputError
from sbmlhybrid.objective import create_objective
from sbmlhybrid.optimize import (
    CountedOptimizer,
    FitSettings,
    MiniBatchOptimizer,
    fit,
    make_optimizer,
    screen_starts,
)
from sbmlhybrid.optimize.multistart import read_work
from sbmlhybrid.problem import load_problem
from tests.conftest import REPO

BLOWUP = REPO / "tests" / "data" / "minibatch_blowup" / "problem.yaml"


@pytest.fixture(scope="module")
def blowup():
    return create_objective(load_problem(BLOWUP))


def test_screen_starts_keeps_values_within_the_relative_margin() -> None:
    assert screen_starts([10.0, 10.005, 11.0, None, float("nan"), np.inf], 1e-3) == [0, 1]
    assert screen_starts([-100.0, -99.95, -99.0], 1e-3) == [0, 1]  # margin on |best|
    assert screen_starts([5.0, 5.0, 5.0 + 1e-9], 0.0) == [0, 1]
    assert screen_starts([None, np.inf], 1e-3) == []
    with pytest.raises(InputError, match="margin"):
        screen_starts([1.0], -1.0)
    with pytest.raises(InputError, match="screen_margin"):
        FitSettings(screen_margin=float("nan"))
    with pytest.raises(InputError, match="screen_optimizer"):
        FitSettings(screen_margin=0.1, screen_optimizer="bfgs")


def test_fit_polishes_only_screened_starts_and_counts_both_phases(blowup, tmp_path: Path
                                                                 ) -> None:
    problem = blowup.pypesto_problem
    minibatch = MiniBatchOptimizer(batch_size=2, epochs=2, seed=0)  # short: not converged
    plain = {r.id: r for r in fit(blowup, FitSettings(n_starts=4, optimizer=minibatch,
                                                      seed=2), progress=False)
             .optimize_result.list}
    margin = 0.5  # wide enough to keep more than one of these unconverged starts
    chosen = {str(i) for i in screen_starts([plain[str(i)].fval for i in range(4)], margin)}
    assert 1 <= len(chosen) < 4
    out = tmp_path / "screened.hdf5"
    settings = FitSettings(n_starts=4, optimizer=minibatch, seed=2, screen_margin=margin,
                           max_iter=50)
    screened = {r.id: r for r in fit(blowup, settings, output=out, progress=False)
                .optimize_result.list}
    fides = CountedOptimizer(make_optimizer("fides", 50))
    for sid, r in screened.items():
        p = plain[sid]
        if sid not in chosen:
            assert not r.get("screened_polish")
            assert r.fval == p.fval and r["work_sensitivity"] == p["work_sensitivity"]
            continue
        assert r["screened_polish"] and r.fval < p.fval
        # a full-objective value at its x
        fval, _ = problem.objective(np.asarray(r.x)[problem.x_free_indices],
                                    sensi_orders=(0, 1))
        assert r.fval == pytest.approx(float(fval), rel=1e-12)
        # work = the mini-batch start's + the same polish run alone from its end point
        alone = fides.minimize(problem=problem, x0=np.asarray(p.x)[problem.x_free_indices],
                               id=sid, history_options=HistoryOptions(),
                               optimize_options=OptimizeOptions())
        assert r["work_sensitivity"] == p["work_sensitivity"] + alone["work_sensitivity"]
        assert r.fval == pytest.approx(alone.fval, rel=1e-12)
    work = read_work(out)
    resumed = fit(blowup, settings, output=out, progress=False)  # nothing polished twice
    assert read_work(out) == work
    assert {r.id: r["work_sensitivity"] for r in resumed.optimize_result.list} == \
        {sid: r["work_sensitivity"] for sid, r in screened.items()}


def test_cli_fit_with_screened_polish(tmp_path: Path) -> None:
    out = tmp_path / "fit"
    code = main(["fit", str(BLOWUP), "--optimizer", "adam", "--batch-size", "2", "--epochs",
                 "2", "--polish", "fides", "--polish-screen", "0.5", "--max-iter", "30",
                 "--starts", "3", "--seed", "2", "--output", str(out), "--no-progress"])
    assert code == 0
    import pypesto.store

    stored = pypesto.store.read_result(str(out / "result.hdf5"), optimize=True)
    messages = [str(r.message) for r in stored.optimize_result.list]
    assert any(m.startswith("screened fides polish") for m in messages)
