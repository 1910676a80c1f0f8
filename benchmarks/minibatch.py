"""Mini-batch (Adam, RMSProp) vs full-batch (fides, L-BFGS-B) multi-start on Isensee_JCB2018.

Reproduces the set-up of Stapor et al. (Nat. Commun. 2022) at a budget that fits a loaded
2-core machine: the same start points for every method, work = number of simulated
conditions (x-axis), also wall time. Each full-batch objective call simulates all conditions
(work n_conditions); a mini-batch run's work is its batch simulations (incl. rescue
re-simulations). The full objective that the mini-batch optimizers evaluate after every
epoch for monitoring (forward simulation only, no sensitivities) is reported separately
(`*_incl_monitor`).

Target = full-batch best + 1 % of (median start objective - full-batch best). Work to target
of a method = work of its starts run one after the other in start order until the running
best first reaches the target (inf if never); for the mini-batch optimizers the best
configuration (method, batch size) is the headline, all are listed.

Writes benchmarks/results/minibatch.json and benchmarks/results/minibatch.png.
Run: nice -n 10 .venv/bin/python benchmarks/minibatch.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pypesto  # noqa: E402
import pypesto.optimize as optimize  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, SHARED, write_json  # noqa: E402

from sbmlhybrid.objective import create_objective  # noqa: E402
from sbmlhybrid.optimize import start_points  # noqa: E402
from sbmlhybrid.optimize.minibatch import TRACE_COLUMNS, MiniBatchOptimizer  # noqa: E402
from sbmlhybrid.problem import load_problem  # noqa: E402

ISENSEE = SHARED / "benchmark_models" / "Isensee_JCB2018" / "Isensee_JCB2018.yaml"
CHO = REPO / "petab_problems" / "cho_fedbatch" / "problem.yaml"


def running_best(values: np.ndarray) -> np.ndarray:
    vals = np.where(np.isfinite(values), values, np.inf)
    return np.minimum.accumulate(vals) if len(vals) else vals


def work_to_target(curves: list[tuple[np.ndarray, np.ndarray]], target: float) -> float:
    """Work of sequential starts until the running best first reaches `target`.

    Args:
        curves: Per start (cumulative work, objective) at each recorded point.
        target: Objective value to reach.
    """
    offset = 0.0
    for work, fval in curves:
        hit = np.nonzero(running_best(fval) <= target)[0]
        if len(hit):
            return float(offset + work[hit[0]])
        offset += float(work[-1]) if len(work) else 0.0
    return float("inf")


def run_fullbatch(problem: pypesto.Problem, name: str, x0s: np.ndarray, n_cond: int,
                  max_iter: int) -> dict[str, Any]:
    if name == "fides":
        opt = optimize.FidesOptimizer(verbose=logging.WARNING, options={"maxiter": max_iter})
    else:
        opt = optimize.ScipyOptimizer(method="L-BFGS-B", options={"maxiter": max_iter})
    problem.set_x_guesses(np.array([problem.get_full_vector(x) for x in x0s]))
    t0 = time.perf_counter()
    res = optimize.minimize(problem, optimizer=opt, n_starts=len(x0s),
                            ids=[str(i) for i in range(len(x0s))], progress_bar=False,
                            history_options=pypesto.HistoryOptions(trace_record=True))
    wall = time.perf_counter() - t0
    by_id = {r.id: r for r in res.optimize_result.list}
    starts = []
    for i in range(len(x0s)):
        r = by_id[str(i)]
        fvals = np.asarray(r.history.get_fval_trace(), dtype=float)
        times = np.asarray(r.history.get_time_trace(), dtype=float)
        times = times - times[0] if len(times) else times
        starts.append({"work": (np.arange(1, len(fvals) + 1) * n_cond).tolist(),
                       "wall_s": times.tolist(), "fval": fvals.tolist(),
                       "best_fval": float(r.fval), "n_fval": int(r.n_fval),
                       "time_s": float(r.time), "exitflag": int(r.exitflag)})
    return {"optimizer": name, "max_iter": max_iter, "wall_s": wall, "starts": starts}


def run_minibatch(problem: pypesto.Problem, method: str, batch_size: int, x0s: np.ndarray,
                  epochs: int, seed: int, lr: tuple[float, float] | None = None
                  ) -> dict[str, Any]:
    rates = {} if lr is None else {"learning_rate": lr[0], "learning_rate_end": lr[1],
                                   "schedule": "logarithmic"}
    opt = MiniBatchOptimizer(method=method, batch_size=batch_size, epochs=epochs, seed=seed,
                             full_eval_every=1, full_gradient=False, **rates)
    problem.set_x_guesses(np.array([problem.get_full_vector(x) for x in x0s]))
    t0 = time.perf_counter()
    res = optimize.minimize(problem, optimizer=opt, n_starts=len(x0s),
                            ids=[str(i) for i in range(len(x0s))], progress_bar=False)
    wall = time.perf_counter() - t0
    by_id = {r.id: r for r in res.optimize_result.list}
    col = {c: k for k, c in enumerate(TRACE_COLUMNS)}
    starts = []
    for i in range(len(x0s)):
        r = by_id[str(i)]
        tr = np.asarray(r["minibatch_trace"])
        starts.append({"work": tr[:, col["work"]].tolist(),
                       "work_incl_monitor": (tr[:, col["work"]]
                                             + tr[:, col["work_monitor"]]).tolist(),
                       "wall_s": tr[:, col["wall_s"]].tolist(),
                       "fval": tr[:, col["fval"]].tolist(), "best_fval": float(r.fval),
                       "time_s": float(r.time), "exitflag": int(r.exitflag),
                       "rescue": {k: int(r[k]) for k in (
                           "n_failed_simulations", "n_relaxed_rescued", "n_failed_batches",
                           "n_step_shrinks", "n_resets", "n_skipped_batches")}})
    return {"optimizer": f"{method}-b{batch_size}", "method": method,
            "batch_size": batch_size, "epochs": epochs, "wall_s": wall,
            "learning_rate": list(opt.options.rates()), "starts": starts}


def curves(run: dict[str, Any], key: str = "work") -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(s[key], float), np.asarray(s["fval"], float)) for s in run["starts"]]


def plot(runs: list[dict[str, Any]], target: float, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, run in enumerate(runs):
        for j, s in enumerate(run["starts"]):
            best = running_best(np.asarray(s["fval"], float))
            label = run["optimizer"] if j == 0 else None
            style = "-" if "method" in run else "--"
            axes[0].plot(s["work"], best, style, color=colors[k % len(colors)], label=label,
                         alpha=0.8)
            axes[1].plot(s["wall_s"], best, style, color=colors[k % len(colors)], alpha=0.8)
    finite = [v for run in runs for s in run["starts"] for v in s["fval"] if np.isfinite(v)]
    for ax, xlabel in zip(axes, ("work (simulated conditions)", "wall time per start (s)")):
        ax.axhline(target, color="k", lw=0.8, ls=":", label="target" if ax is axes[0] else None)
        ax.set_xscale("symlog", linthresh=100.0 if ax is axes[0] else 1.0)  # start at x = 0
        ax.set_xlim(left=0)
        if min(finite) > 0:
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=1e3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("best full objective so far")
    axes[0].legend(fontsize=8)
    fig.suptitle("Isensee_JCB2018: mini-batch (solid) vs full-batch (dashed), per start")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run on the CHO problem")
    ap.add_argument("--starts", type=int, default=2)
    ap.add_argument("--full-iter", type=int, default=5, help="fides / L-BFGS-B iterations")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--configs", nargs="+", default=["adam-8", "adam-32", "rmsprop-8"],
                    help="mini-batch runs as method-batchsize")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--learning-rate", type=float, nargs=2, metavar=("START", "END"),
                    help="mini-batch rates (logarithmic schedule); default per method")
    ap.add_argument("--reuse-fullbatch", type=Path,
                    help="take the full-batch runs from this earlier JSON (same starts)")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw the PNG from the existing JSON")
    args = ap.parse_args()
    name = "minibatch_quick" if args.quick else "minibatch"
    if args.replot:
        data = json.loads((RESULTS / f"{name}.json").read_text())
        plot(data["runs"], data["target"], RESULTS / f"{name}.png")
        return
    warnings.filterwarnings("ignore")
    logging.getLogger("amici").setLevel(logging.ERROR)
    path = CHO if args.quick else ISENSEE
    t_all = time.perf_counter()
    objective = create_objective(load_problem(path))
    problem = objective.pypesto_problem
    n_cond = len(objective.conditions)
    x0s = start_points(objective, args.starts, args.seed)
    t0 = time.perf_counter()
    f_start = [float(problem.objective(x, sensi_orders=(0,))) for x in x0s]
    t_fval = (time.perf_counter() - t0) / len(x0s)
    print(f"{objective.problem.name}: {n_cond} conditions, {len(objective.x_free_ids)} "
          f"parameters; start objectives {np.round(f_start, 1)}", flush=True)

    settings = {
        "problem": objective.problem.name, "n_conditions": n_cond,
        "n_parameters": len(objective.x_free_ids), "n_starts": args.starts,
        "seed": args.seed, "start_fvals": f_start, "start_median_fval": float(np.median(f_start)),
        "fullbatch_max_iter": args.full_iter, "minibatch_epochs": args.epochs,
        "minibatch_configs": args.configs, "sensitivity_method": objective.sensitivity_method,
        "seconds_per_full_fval": t_fval,
    }
    full_runs: list[dict[str, Any]] = []
    mini_runs: list[dict[str, Any]] = []
    # fides first (it sets the target), then the mini-batch runs, L-BFGS-B last; the JSON is
    # rewritten after every run, so an interrupted benchmark still leaves its numbers
    plan = [("full", "fides")] + [("mini", c) for c in args.configs] + [("full", "lbfgsb")]
    reused: dict[str, dict[str, Any]] = {}
    if args.reuse_fullbatch:
        old = json.loads(args.reuse_fullbatch.read_text())
        if old["start_fvals"] != f_start or old["fullbatch_max_iter"] != args.full_iter:
            raise SystemExit("--reuse-fullbatch: the earlier run used other starts/settings")
        reused = {r["optimizer"]: r for r in old["runs"] if "method" not in r}
        settings["fullbatch_reused_from"] = old["machine"]["date"]
        settings["previous_minibatch_runs"] = {
            r["optimizer"]: {"best_fval": r["best_fval"], "learning_rate": r["learning_rate"],
                             "work_to_target": r["work_to_target"]}
            for r in old["runs"] if "method" in r}
    settings["minibatch_learning_rate"] = args.learning_rate or "per-method default"
    for kind, what in plan:
        if kind == "full":
            run = reused.get(what) or run_fullbatch(problem, what, x0s, n_cond, args.full_iter)
            full_runs.append(run)
        else:
            method, bs = what.rsplit("-", 1)
            run = run_minibatch(problem, method, int(bs), x0s, args.epochs, args.seed,
                                args.learning_rate)
            mini_runs.append(run)
        print(f"{run['optimizer']}: best {min(s['best_fval'] for s in run['starts']):.2f} "
              f"({run['wall_s']:.0f} s)", flush=True)
        if full_runs and mini_runs:
            result = summarize(settings, full_runs, mini_runs)
            result["completed_runs"] = [r["optimizer"] for r in full_runs + mini_runs]
            result["complete"] = len(result["completed_runs"]) == len(plan)
            result["total_wall_s"] = time.perf_counter() - t_all
            write_json(f"{name}.json", result)
            plot(full_runs + mini_runs, result["target"], RESULTS / f"{name}.png")
    print(f"target {result['target']:.2f}: work full {result['work_fullbatch_to_target']:g}, "
          f"mini {result['work_minibatch_to_target']:g} ({result['best_minibatch_config']}), "
          f"ratio {result['work_ratio']:.3g}; total {result['total_wall_s']:.0f} s")


def summarize(settings: dict[str, Any], full_runs: list[dict[str, Any]],
              mini_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Target, work to target and the acceptance fields from the runs so far."""

    def best_of(runs: list[dict[str, Any]]) -> float:
        return float(min(min(running_best(np.asarray(s["fval"], float)).min(initial=np.inf)
                             for s in run["starts"]) for run in runs))

    fb_best, mb_best = best_of(full_runs), best_of(mini_runs)
    median_start = settings["start_median_fval"]
    target = fb_best + 0.01 * (median_start - fb_best)
    for run in full_runs + mini_runs:
        run["work_to_target"] = work_to_target(curves(run), target)
        run["best_fval"] = best_of([run])
        run["wall_to_target_s"] = work_to_target(curves(run, "wall_s"), target)
        if "method" in run:
            run["work_to_target_incl_monitor"] = work_to_target(
                curves(run, "work_incl_monitor"), target)
    w_full = min(r["work_to_target"] for r in full_runs)
    best_mini = min(mini_runs, key=lambda r: (r["work_to_target"], r["best_fval"]))
    w_mini = best_mini["work_to_target"]
    w_mini_mon = best_mini["work_to_target_incl_monitor"]
    return settings | {
        "target": target,
        "fullbatch_best_fval": fb_best, "minibatch_best_fval": mb_best,
        "work_fullbatch_to_target": w_full, "work_minibatch_to_target": w_mini,
        "work_ratio": w_full / w_mini if np.isfinite(w_mini) and w_mini > 0 else 0.0,
        "work_minibatch_to_target_incl_monitor": w_mini_mon,
        "work_ratio_incl_monitor": (w_full / w_mini_mon if np.isfinite(w_mini_mon) else 0.0),
        "best_minibatch_config": best_mini["optimizer"],
        "best_fullbatch_optimizer": min(full_runs, key=lambda r: r["work_to_target"])[
            "optimizer"],
        "work_to_target_by_optimizer": {r["optimizer"]: r["work_to_target"]
                                        for r in full_runs + mini_runs},
        "best_fval_by_optimizer": {r["optimizer"]: r["best_fval"]
                                   for r in full_runs + mini_runs},
        "wall_to_target_s_by_optimizer": {r["optimizer"]: r["wall_to_target_s"]
                                          for r in full_runs + mini_runs},
        "runs": full_runs + mini_runs,
    }


if __name__ == "__main__":
    main()
