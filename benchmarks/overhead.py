"""Toolkit objective+gradient vs the bare AMICI call it makes, on Isensee_JCB2018 (123 conditions).

The bare call is `amici.sim.sundials.run_simulations` on the same ExpData (parameters already
filled in) with the same solver; the toolkit call is `ModelObjective.evaluate` (parameter
mapping, pyPESTO's AmiciObjective, aggregation). Timings are medians of interleaved repeats.
Also times forward vs adjoint sensitivities (the basis of the `auto` choice).
Writes benchmarks/results/overhead.json (field `ratio`: the worse of the two methods; goal <= 1.05).
"""

from __future__ import annotations

import statistics
import sys
import time

import amici.sim.sundials as asd
import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import SHARED, load1, write_json  # noqa: E402

from sbmlhybrid.objective import create_objective  # noqa: E402
from sbmlhybrid.problem import load_problem  # noqa: E402

REPEATS = 5


def main() -> None:
    name = "Isensee_JCB2018"
    problem = load_problem(SHARED / "benchmark_models" / name / f"{name}.yaml")
    results = {}
    for method in ("forward", "adjoint"):
        objective = create_objective(problem, sensitivity_method=method)
        x = objective.x_nominal_free
        obj = objective.amici_objective
        ev = objective.evaluate(x)  # warm-up; fills parameters into the ExpData
        solver = obj.amici_solver
        solver.set_sensitivity_order(asd.SensitivityOrder.first)
        solver.set_return_data_reporting_mode(asd.RDataReporting.likelihood)
        toolkit, bare = [], []
        load_before = load1()
        for _ in range(REPEATS):
            t = time.perf_counter()
            objective.evaluate(x)
            toolkit.append(time.perf_counter() - t)
            t = time.perf_counter()
            rdatas = asd.run_simulations(obj.amici_model, solver, obj.edatas, num_threads=1)
            bare.append(time.perf_counter() - t)
        load_after = load1()
        bare_llh = sum(r.llh for r in rdatas)
        assert np.isclose(-bare_llh, ev.fval, rtol=1e-8), (bare_llh, ev.fval)
        results[method] = {"toolkit_s": statistics.median(toolkit),
                           "bare_amici_s": statistics.median(bare),
                           "ratio": statistics.median(toolkit) / statistics.median(bare),
                           "fval": ev.fval, "n_threads_toolkit": objective.n_threads,
                           "loadavg_1min_before": load_before,
                           "loadavg_1min_after": load_after}
        print(method, results[method])
    write_json("overhead.json", {
        "problem": name, "n_conditions": len(objective.conditions),
        "n_estimated": len(objective.x_free_ids), "repeats": REPEATS,
        "ratio": max(r["ratio"] for r in results.values()),
        "ratio_forward": results["forward"]["ratio"],
        "ratio_adjoint": results["adjoint"]["ratio"],
        "fval_grad_forward_s": results["forward"]["toolkit_s"],
        "fval_grad_adjoint_s": results["adjoint"]["toolkit_s"], "detail": results,
        "goal": "ratio <= 1.05",
    })


if __name__ == "__main__":
    main()
