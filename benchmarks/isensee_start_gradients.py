"""Which shared Isensee start points of `minibatch_scale.py` have a finite full gradient.

For every start point (seed 0; resampled only on a non-finite objective, as `fit` does): the
objective without sensitivities, the value and adjoint gradient over all 123 conditions, and,
where that fails, the first failing condition (AMICI stops a call at its first failure, so
later conditions are not run) and the same full gradient through the mini-batch optimizers'
rescue (`sbmlhybrid.optimize.minibatch_eval.BatchEvaluator.nllh_sum` over all conditions:
every failed condition re-simulated alone at relaxed tolerances), with its counters.
Counts only, no timings.
Writes benchmarks/results/isensee_start_gradients.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402
from minibatch_scale import RECORDS, objective_of  # noqa: E402


def _finite(ev) -> bool:
    return bool(np.isfinite(ev.fval) and ev.grad is not None and np.all(np.isfinite(ev.grad)))


def rescued(objective, x: np.ndarray) -> dict:
    """The full value and gradient at `x` through the mini-batch rescue, with its counters."""
    from sbmlhybrid.optimize.minibatch_eval import BatchEvaluator

    with BatchEvaluator(objective.pypesto_problem) as evaluator:
        fval, grad = evaluator.nllh_sum(x, range(evaluator.n_conditions), gradient=True)
        c = evaluator.counters
    return {"finite": bool(np.isfinite(fval) and np.all(np.isfinite(grad))),
            "failed_simulations": c.n_failed_simulations,
            "relaxed_retries": c.n_relaxed_retries, "relaxed_rescued": c.n_relaxed_rescued}


def main() -> None:
    objective = objective_of("isensee")
    x0 = np.asarray(json.loads((RECORDS / "isensee" / "start_points_seed0.json")
                               .read_text())["x0"])
    starts = []
    for i, x in enumerate(x0):
        forward = objective.evaluate(x, gradient=False, raise_on_failure=False).fval
        ev = objective.evaluate(x, gradient=True, raise_on_failure=False, return_rdatas=True)
        row = {"start": i, "fval_forward_only": float(forward), "gradient_finite": _finite(ev)}
        if not row["gradient_finite"]:
            bad = [k for k, r in enumerate(ev.rdatas) if int(r.status) not in (0, -1001)]
            row["first_failed_condition"] = objective.conditions[bad[0]][1] if bad else None
            row["status"] = int(ev.rdatas[bad[0]].status) if bad else None
            row["rescue"] = rescued(objective, x)
        starts.append(row)
        print(row, flush=True)
    failed = [r for r in starts if not r["gradient_finite"]]
    write_json("isensee_start_gradients.json", {
        "n_starts": len(starts), "n_gradient_failed": len(failed),
        "n_forward_only_finite": sum(bool(np.isfinite(r["fval_forward_only"])) for r in starts),
        "n_repaired_by_rescue": sum(r["rescue"]["finite"] for r in failed),
        "starts": starts})


if __name__ == "__main__":
    main()
