"""Which shared Isensee start points of `minibatch_scale.py` have a finite full gradient.

For every start point (seed 0; resampled only on a non-finite objective, as `fit` does): the
objective without sensitivities, the value and adjoint gradient over all 123 conditions, and,
where that fails, the first failing condition (AMICI stops a call at its first failure, so
later conditions are not run) and the smallest tolerance factor (rtol and atol x 100, 1e4,
1e6; rtol capped at 1e-2, the mini-batch rescue's ladder) at which that condition alone gives
a finite value and gradient. Counts only, no timings.
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

FACTORS = (1e2, 1e4, 1e6)


def _finite(ev) -> bool:
    return bool(np.isfinite(ev.fval) and ev.grad is not None and np.all(np.isfinite(ev.grad)))


def repair_factor(objective, x: np.ndarray, condition: int) -> float | None:
    """Smallest tolerance factor at which `condition` alone has a finite value and gradient."""
    solver = objective.amici_objective.amici_solver
    rtol, atol = solver.get_relative_tolerance(), solver.get_absolute_tolerance()
    try:
        for factor in FACTORS:
            solver.set_relative_tolerance(min(rtol * factor, 1e-2))
            solver.set_absolute_tolerance(atol * factor)
            if _finite(objective.evaluate(x, conditions=[condition], raise_on_failure=False)):
                return factor
    finally:
        solver.set_relative_tolerance(rtol)
        solver.set_absolute_tolerance(atol)
    return None


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
            failed = [k for k, r in enumerate(ev.rdatas) if int(r.status) not in (0, -1001)]
            row["first_failed_condition"] = objective.conditions[failed[0]][1] if failed else None
            row["status"] = int(ev.rdatas[failed[0]].status) if failed else None
            row["repair_tolerance_factor"] = repair_factor(objective, x, failed[0]) \
                if failed else None
        starts.append(row)
        print(row, flush=True)
    failed = [r for r in starts if not r["gradient_finite"]]
    write_json("isensee_start_gradients.json", {
        "n_starts": len(starts), "n_gradient_failed": len(failed),
        "n_forward_only_finite": sum(bool(np.isfinite(r["fval_forward_only"])) for r in starts),
        "repaired_at_factor": {str(f): sum(r.get("repair_tolerance_factor") == f for r in failed)
                               for f in FACTORS},
        "starts": starts})


if __name__ == "__main__":
    main()
