"""Cost of a condition inside a mini-batch vs inside a full evaluation; threads; MPI speedup.

Per problem (Boehm-dose N = 256, Isensee_JCB2018 at its nominal parameters), wall seconds
per simulated condition with sensitivities: in a full evaluation, and in the batches of one
epoch (batch sizes 4, 8, 16, through `BatchEvaluator`, the path the mini-batch optimizers
use). ``batch_cost_ratio`` = worst batch size's per-condition time / the full evaluation's.
Also: the forward-only / sensitivity cost ratio, full evaluations with 1 and 2 AMICI
(OpenMP) threads, and a cProfile of the batch epoch (top functions by cumulative time) to
show where the time goes. Timings count only at load average <= 2: the load before and after
each timing is stored. Settings are timed in interleaved rounds and compared by their medians
(`interleaved`).

Run alone on an idle machine: ``.venv/bin/python benchmarks/batch_cost.py [--problems ...]``
-> benchmarks/results/batch_cost.json
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_commit, load1, write_json  # noqa: E402
from minibatch_scale import objective_of  # noqa: E402

BATCH_SIZES = (4, 8, 16)


def interleaved(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, dict[str, Any]]:
    """Median seconds per call of each function, timed in `reps` interleaved rounds.

    One warm-up call each, then round after round every function once: the machine is a
    shared VM whose speed drifts by ~20 % over minutes, and interleaving lets the drift hit
    every setting alike, so ratios of medians are stable where back-to-back blocks were not.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    loads: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            loads[name].append(load1())
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            loads[name].append(load1())
    return {k: {"s": float(np.median(v)), "s_all": [round(t, 4) for t in v],
                "load1_before": loads[k][0], "load1_after": loads[k][-1],
                "load1_max": max(loads[k])} for k, v in times.items()}


def profile_top(fn: Callable[[], Any], n: int = 12) -> list[str]:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(n)
    return [line for line in out.getvalue().splitlines() if line.strip()][-n:]


def measure(key: str, reps: int) -> dict[str, Any]:
    from sbmlhybrid.optimize.minibatch_eval import BatchEvaluator

    objective = objective_of(key)
    x = objective.x_nominal_free
    n = len(objective.conditions)
    rec: dict[str, Any] = {"n_conditions": n, "sensitivity_method": objective.sensitivity_method}
    perm = np.random.default_rng(0).permutation(n)
    with BatchEvaluator(objective.pypesto_problem) as ev:
        def epoch(b: int) -> None:
            for k in range(0, n, b):
                f, _ = ev.batch(x, perm[k:k + b])
                if not np.isfinite(f):
                    raise RuntimeError(f"batch failed at nominal parameters: {perm[k:k + b]}")

        fns: dict[str, Callable[[], Any]] = {
            "full": lambda: objective.evaluate(x),
            "forward": lambda: objective.evaluate(x, gradient=False)}
        fns |= {f"batch{b}": (lambda b=b: epoch(b)) for b in BATCH_SIZES}
        t = interleaved(fns, reps)
        rec["profile_batch8"] = profile_top(lambda: epoch(8))
    rec["full"] = t["full"] | {"s_per_condition": t["full"]["s"] / n}
    rec["forward"] = t["forward"] | {"s_per_condition": t["forward"]["s"] / n}
    rec["forward_cost_ratio"] = t["forward"]["s"] / t["full"]["s"]
    for b in BATCH_SIZES:
        rec[f"batch{b}"] = t[f"batch{b}"] | {"s_per_condition": t[f"batch{b}"]["s"] / n,
                                             "ratio_to_full": t[f"batch{b}"]["s"] / t["full"]["s"]}
    rec["profile_full"] = profile_top(lambda: objective.evaluate(x))
    rec["batch_cost_ratio"] = max(rec[f"batch{b}"]["ratio_to_full"] for b in BATCH_SIZES)

    def threaded(k: int) -> Callable[[], Any]:
        def run() -> None:
            objective.n_threads = k
            objective.evaluate(x)
            objective.n_threads = 1
        return run

    th = interleaved({f"full_threads{k}": threaded(k) for k in (1, 2)}, reps)
    rec |= th
    rec["thread_speedup_2"] = rec["full_threads1"]["s"] / rec["full_threads2"]["s"]
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="*", default=["n256", "isensee"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--output", default="batch_cost.json")
    args = ap.parse_args()
    data: dict[str, Any] = {"command": " ".join(sys.argv), "commit": git_commit(),
                            "problems": {}}
    for key in args.problems:
        data["problems"][key] = measure(key, args.reps)
        print(key, {k: v for k, v in data["problems"][key].items()
                    if k in ("batch_cost_ratio", "forward_cost_ratio", "thread_speedup_2")},
              flush=True)
    data["batch_cost_ratio"] = max(p["batch_cost_ratio"] for p in data["problems"].values())
    data["loads_ok"] = all(
        v["load1_before"] <= 2 and v["load1_after"] <= 2
        for p in data["problems"].values() for v in p.values()
        if isinstance(v, dict) and "load1_before" in v)
    write_json(args.output, data)


if __name__ == "__main__":
    main()
