"""Adjoint gradient time vs CVODES step cap and linear solver (CHO gray box, stiff UDE).

Why: AMICI calls ``CVodeAdjInit(mem, max_steps + 1, ...)``, so the step cap is also the
number of steps between adjoint checkpoints, and CVODES allocates one interpolation vector
per step of that interval for every simulated condition (perf: ``CVApolynomialMalloc`` ->
``N_VClone`` and ``CVodeAdjFree`` are a visible share of a CHO gray-box adjoint gradient).
This script measures that cost: the same adjoint objective (rtol 1e-6, 1 thread) at
several step caps, with AMICI's sparse KLU and its dense linear solver, timed alternately.

Writes ``benchmarks/results/adjoint_max_steps.json``: per setting the median seconds of one
value + gradient, the gradient's max relative difference to the first setting, and the
1-minute load before and after the timings (valid at load <= 2).

    .venv/bin/python benchmarks/adjoint_max_steps.py --problems cho stiff
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _ude_problems as P  # noqa: E402
from _common import alternated_times, git_commit, load1, write_json  # noqa: E402


def objectives_of(up, caps: list[int], solvers: list[str], rtol: float) -> dict:
    """Adjoint objectives of `up`, keyed by (step cap, linear solver name)."""
    import amici.sim.sundials as asd

    objectives = {}
    for cap in caps:
        for name in solvers:
            obj = P.amici_objective(up, rtol, "adjoint", 1, max_steps=cap)
            obj.amici_objective.amici_solver.set_linear_solver(getattr(asd.LinearSolver, name))
            objectives[(cap, name)] = obj
    return objectives


def measure(problem: str, caps: list[int], solvers: list[str], rtol: float,
            repeats: int) -> list[dict]:
    """Median s per value + gradient of each setting (settings alternated `repeats` times)."""
    up = P.load(problem)
    objectives = objectives_of(up, caps, solvers, rtol)
    first = {k: o.evaluate(up.x) for k, o in objectives.items()}  # warm-up, reference
    ref = next(iter(first.values())).grad
    load_before = load1()
    times = alternated_times({k: functools.partial(o.evaluate, up.x)
                              for k, o in objectives.items()}, repeats)
    load_after = load1()
    return [{"problem": problem, "max_steps": cap, "linear_solver": name, "rtol": rtol,
             "seconds": round(float(np.median(times[(cap, name)])), 4),
             "seconds_all": [round(t, 4) for t in times[(cap, name)]],
             "fval": float(first[(cap, name)].fval),
             "grad_max_rel_diff_to_first": float(
                 np.max(np.abs(first[(cap, name)].grad - ref)) / np.max(np.abs(ref))),
             "loadavg_1min_before": load_before, "loadavg_1min_after": load_after}
            for cap, name in objectives]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="*", default=["cho", "stiff"])
    ap.add_argument("--max-steps", type=int, nargs="*", default=[20_000, 10_000, 2_000, 500])
    ap.add_argument("--linear-solvers", nargs="*", default=["KLU", "dense"])
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    runs = []
    for problem in args.problems:
        for r in measure(problem, args.max_steps, args.linear_solvers, args.rtol, args.repeats):
            print(r["problem"], r["max_steps"], r["linear_solver"], r["seconds"], flush=True)
            runs.append(r)
    write_json("adjoint_max_steps.json", {
        "commit": git_commit(), "command": " ".join(sys.argv), "runs": runs,
        "note": "seconds = median wall s of one value + gradient, adjoint sensitivities, "
                "1 AMICI thread; max_steps is also AMICI's number of steps between adjoint "
                "checkpoints (CVodeAdjInit)"})


if __name__ == "__main__":
    main()
