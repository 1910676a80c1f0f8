"""Screened polish of a multi-start: a full-batch optimizer from the best end points only.

Mini-batch starts are cheap (their cost does not grow with the number of conditions) but end
near, not at, a local optimum; a full-batch polish costs the number of conditions per
iteration. On problems with several basins most starts end in a worse basin, and polishing
them buys nothing. The screen polishes only the starts whose end value lies within
``rel_margin`` x |best end value| of the best end value, to convergence (the optimizer's own
stopping rules); the others keep their mini-batch result. Hand-written; reused: pyPESTO's
`minimize` (engines, x guesses) and the full-batch optimizers of `fullbatch`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pypesto
import pypesto.optimize as optimize

from sbmlhybrid.errors import InputError
from sbmlhybrid.optimize.counted import CountedOptimizer
from sbmlhybrid.optimize.fullbatch import make_optimizer

__all__ = ["screen_starts", "screened_polish"]

#: Result field marking a start that the screen polished (so a resumed fit does not polish
#: it twice).
POLISHED = "screened_polish"


def screen_starts(fvals: Sequence[float | None], rel_margin: float) -> list[int]:
    """Indices of the end values within `rel_margin` x |best| of the best finite one.

    Args:
        fvals: End value of each start (None or non-finite: failed, never selected).
        rel_margin: Relative margin (>= 0).
    """
    if not (np.isfinite(rel_margin) and rel_margin >= 0):
        raise InputError(f"the screen's relative margin must be >= 0, got {rel_margin}")
    values = np.array([np.inf if v is None else float(v) for v in fvals])
    finite = np.isfinite(values)
    if not finite.any():
        return []
    best = values[finite].min()
    return [int(i) for i in np.flatnonzero(finite & (values <= best + rel_margin * abs(best)))]


def screened_polish(objective, result: pypesto.Result, rel_margin: float = 1e-3,
                    optimizer: str = "fides", max_iter: int = 1000,
                    engine: pypesto.engine.Engine | None = None) -> pypesto.Result:
    """Polish the starts of `result` that pass the screen; `result` updated in place.

    Args:
        objective: The objective the starts were fitted with (its pyPESTO problem).
        result: A multi-start result (e.g. of mini-batch starts).
        rel_margin: See `screen_starts`.
        optimizer: Full-batch optimizer (`fullbatch.make_optimizer`).
        max_iter: Its iteration limit.
        engine: pyPESTO engine for the polishes (default: single core).

    Returns:
        `result`, where each polished start's entry holds the polish's optimum (kept only when
        it is no worse), its work summed with the mini-batch work, and ``screened_polish``
        set to True; sorted by objective value.
    """
    problem = objective.pypesto_problem
    runs = result.optimize_result.list  # the result's own list: entries replaced in place
    todo = [i for i in screen_starts([r.fval for r in runs], rel_margin)
            if not runs[i].get(POLISHED)]
    if not todo:
        return result
    problem.set_x_guesses(np.array([np.asarray(runs[i].x, float) for i in todo]))
    try:
        polished = optimize.minimize(
            problem, optimizer=CountedOptimizer(make_optimizer(optimizer, max_iter)),
            n_starts=len(todo), ids=[str(runs[i].id) for i in todo],
            engine=engine or pypesto.engine.SingleCoreEngine(), progress_bar=False)
    finally:
        problem.set_x_guesses(np.zeros((0, problem.dim_full)))
    by_id = {str(r.id): r for r in polished.optimize_result.list}
    for i in todo:
        old, new = runs[i], by_id[str(runs[i].id)]
        work = {k: int(old.get(k) or 0) + int(new.get(k) or 0)
                for k in ("work_sensitivity", "work_forward")}
        if new.fval is not None and np.isfinite(new.fval) and not new.fval > old.fval:
            new.message = f"screened {optimizer} polish after {old.optimizer}: {new.message}"
            new.time = float(old.time or 0) + float(new.time or 0)
            runs[i] = new
        runs[i].update(work)
        runs[i][POLISHED] = True
    result.optimize_result.sort()
    return result
