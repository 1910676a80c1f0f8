"""Tuning of `minibatch_scale.py`'s mini-batch hyper-parameters on N = 64 (separate starts).

Per method and family the (learning rate, steps) of least expected work per converged start
at delta = 1 on `N_TUNE_STARTS` tuning starts (seed `TUNE_SEED`, batch size 8), then frozen
for every problem; the choice and every setting's score are stored in
``benchmarks/results/minibatch_scale/tuned.json``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from _common import git_commit
from _minibatch_report import expected_work, load_records
from minibatch_scale import (
    N_TUNE_STARTS,
    POLISH_MAX_ITER,
    RECORDS,
    SCREEN_MAX_ITER,
    SCREEN_REL,
    TUNE_GRID,
    TUNE_GRID_SCREEN,
    TUNE_SEED,
    _minibatch,
    _polish,
    _screen,
    _write,
    run_tasks,
    starts_of,
)


def _choose(recs: dict[str, list[dict[str, Any]]], suffix: str, f_star: float,
            grid: list[tuple[float, int]] = TUNE_GRID
            ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float | None]]]:
    """Per method the grid setting of least expected work at delta = 1 (ties: median)."""
    choice: dict[str, dict[str, float]] = {}
    scores: dict[str, dict[str, float | None]] = {}
    for method in ("adam", "rmsprop"):
        ranked = []
        for lr, steps in grid:
            name = f"tune-{method}-lr{lr}-s{steps}{suffix}"
            w = expected_work(recs[name], f_star, 1.0)
            median = float(np.median([np.inf if r["fval"] is None else r["fval"]
                                      for r in recs[name]]))
            scores[name] = {"expected_work": w if np.isfinite(w) else None,
                            "median_fval": median}
            ranked.append(((w, median), lr, steps))  # ties (none converged): median value
        _, lr, steps = min(ranked)
        choice[method] = {"learning_rate": lr, "max_steps": steps}
    return choice, scores


def tune(workers: int) -> dict[str, dict[str, dict[str, float]]]:
    """Choose (learning rate, steps) per method on N = 64 with separate tuning starts.

    Three families, each tuned for itself: the mini-batch run alone, the run followed by the
    fides polish (`POLISH_MAX_ITER` iterations, composed from the tuning run's record), and
    the screened polish (`SCREEN_REL`, over the tuning starts). A run that is polished only has
    to end in the right basin, so it may need fewer steps. Families are added to
    ``tuned.json`` as they are introduced; a family once chosen stays frozen.
    """
    path = RECORDS / "tuned.json"
    data = json.loads(path.read_text()) if path.exists() else _tune_first(workers)
    if "screened" not in data["tuned"]:
        data = _tune_screened(workers, data)
    _write(path, data)
    return data["tuned"]


def _tune_tasks(grid: list[tuple[float, int]], follow) -> list[tuple]:
    x0s, _ = starts_of("n64", N_TUNE_STARTS, TUNE_SEED)
    tasks = []
    for method in ("adam", "rmsprop"):
        for lr, steps in grid:
            cfg = _minibatch(method, 8, {"learning_rate": lr, "max_steps": steps})
            name = f"tune-{method}-lr{lr}-s{steps}"
            tasks += [("n64", name, cfg, x0.tolist(), i) for i, x0 in enumerate(x0s)]
            suffix, follow_cfg = follow(name)
            tasks += [("n64", name + suffix, follow_cfg, x0.tolist(), i)
                      for i, x0 in enumerate(x0s)]
    return tasks


def _tune_records() -> tuple[dict[str, list[dict[str, Any]]], float]:
    recs = load_records("n64", prefix="tune-")
    return recs, min(r["fval"] for rs in recs.values() for r in rs if r["fval"] is not None)


def _tune_first(workers: int) -> dict[str, Any]:
    """The plain and the polished family (the first two)."""
    run_tasks(_tune_tasks(TUNE_GRID, lambda name: ("+fides", _polish(name))), workers)
    recs, f_star = _tune_records()
    plain, scores = _choose(recs, "", f_star)
    polished, scores_polished = _choose(recs, "+fides", f_star)
    return {"tuned": {"plain": plain, "polished": polished},
            "expected_work_by_setting": scores | scores_polished,
            "f_star": f_star, "grid": TUNE_GRID, "n_starts": N_TUNE_STARTS,
            "seed": TUNE_SEED, "batch_size": 8, "polish_max_iter": POLISH_MAX_ITER,
            "commit": git_commit()}


def _tune_screened(workers: int, data: dict[str, Any]) -> dict[str, Any]:
    """Add the screened family to the tuning record `data`."""
    run_tasks(_tune_tasks(TUNE_GRID_SCREEN,
                          lambda name: ("+screen", _screen(name, N_TUNE_STARTS))), workers)
    recs, f_star = _tune_records()
    screened, scores = _choose(recs, "+screen", f_star, TUNE_GRID_SCREEN)
    data["tuned"]["screened"] = screened
    data["expected_work_by_setting"] |= scores
    data["screened_family"] = {"grid": TUNE_GRID_SCREEN, "f_star": f_star,
                               "margin_rel": SCREEN_REL, "polish_max_iter": SCREEN_MAX_ITER,
                               "commit": git_commit()}
    return data
