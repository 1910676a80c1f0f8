"""Mini-batch vs full-batch optimizers on problems with 64, 256, 1024 conditions, and Isensee.

The protocol of Stapor et al. (Nat. Commun. 2022) with one unit of work for every method
(`sbmlhybrid.objective.work`: one condition simulated with sensitivities = 1 unit; counted in
pyPESTO's AMICI calculator, so start evaluations, line-search trials, rescue retries and
monitoring evaluations all count; work starts at 0 for every method):

* Problems: `petab_problems/boehm_doses` with N = 64, 256, 1024 conditions (synthetic data from
  known truth) and Isensee_JCB2018 (123 conditions, real data).
* The same start points for every method (`sbmlhybrid.optimize.start_points`, seed 0, starts
  whose objective is not finite resampled): 20 starts for N <= 256 and Isensee, 10 at 1024.
* Full batch: fides and L-BFGS-B to convergence (their own stopping rules, 1000 iterations at
  most), on the full objective with the mini-batch methods' integration rescue
  (`sbmlhybrid.optimize.rescued`: a failed condition re-simulated alone at relaxed tolerances),
  so that both meet failing conditions the same way. Mini-batch: balanced Adam and RMSProp at
  batch sizes 1, 2, 4 and 8, each alone (one full evaluation at the end) and followed by a short
  fides polish (``polish="fides"``, `POLISH_MAX_ITER` iterations; composed from the run's
  record, see `polished`), and each followed by a screened polish (``+screen``: fides to
  convergence only from the end points within `SCREEN_REL` of the best end value of all starts,
  see `screened`). Their learning rate and step budget are chosen on N = 64 with separate tuning
  starts (`_minibatch_tune.tune`), for each of the three families separately, and then frozen
  for every problem.
* A start converged when its final objective <= f* + delta (f* = best of all runs on that
  problem; delta = 1, also 0.1 and 10). Headline: expected work per converged start
  W = total work of all starts / converged starts; ``work_ratio`` = W of the best full-batch
  method / W of the best mini-batch configuration.

Resumable: every (problem, method, start) record is written to
``benchmarks/results/minibatch_scale/`` as soon as it is done, and skipped when rerun, so a
run can span sessions; the JSON and PNGs are rebuilt from the records at the end of each call
(`_minibatch_report`). Work counts do not depend on machine load; timings (forward-cost
ratio, batch cost ratio, threads) come from `benchmarks/batch_cost.py`, run alone on an idle
machine, which records the load.

Run: ``.venv/bin/python benchmarks/minibatch_scale.py [--problems n64 n256 n1024 isensee]
[--methods ...] [--workers 2] [--report-only]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, SHARED, git_commit, load1  # noqa: E402

RECORDS = RESULTS / "minibatch_scale"
BUILD = REPO / "build" / "minibatch_scale"
ISENSEE = SHARED / "benchmark_models" / "Isensee_JCB2018" / "Isensee_JCB2018.yaml"
PROBLEMS = {"n64": 64, "n256": 256, "n1024": 1024, "isensee": None}
N_STARTS = {"n64": 20, "n256": 20, "n1024": 10, "isensee": 20}
SEED, TUNE_SEED, N_TUNE_STARTS = 0, 1, 4
BATCH_SIZES = (1, 2, 4, 8)
FULLBATCH = ("fides", "lbfgsb")
#: Tuning grid on N = 64 (batch size 8, no polish): start learning rate (decays
#: logarithmically to `LR_END_FACTOR` times it) x batch updates. A first grid with rates
#: 0.1 and 0.03 and 100 or 300 steps left most tuning starts at objectives of 1e7 to 1e13:
#: starts lie up to 5 decades from the optimum on log10 scale, so larger rates are needed.
#: A second grid, rates 1.0, 0.3, 0.1 x 300 or 1000 steps, chose 1000 steps for both methods
#: (rate 1.0 for Adam, 0.3 for RMSProp) and rate 0.1 never converged: so rates 1.0 and 0.3 x
#: 1000 or 3000 steps.
TUNE_GRID = [(lr, steps) for lr in (1.0, 0.3) for steps in (1000, 3000)]
#: The screened family (see `SCREEN_REL`) only has to bring one start into the best basin, so
#: its grid adds shorter runs.
TUNE_GRID_SCREEN = TUNE_GRID + [(lr, 300) for lr in (1.0, 0.3)]
LR_END_FACTOR = 1e-3
DELTAS = (0.1, 1.0, 10.0)
#: Iterations of the fides polish after a mini-batch phase (a short polish: its cost is N per
#: iteration, the mini-batch phase's is independent of N).
POLISH_MAX_ITER = 10
#: Screened polish (``+screen`` methods): after the mini-batch runs of all starts of a problem,
#: fides runs to convergence (its own stopping rules, `SCREEN_MAX_ITER` iterations at most)
#: only from the end points whose full objective is within `SCREEN_REL` x |best end value| of
#: the best end value; the other starts keep their end value. On N = 64 the end values of one
#: basin jitter by <= 6e-5 relative (8934.67-8935.17) and the two basins are 1.5 % apart, so
#: 1e-3 keeps a basin whole and drops the worse one.
SCREEN_REL = 1e-3
SCREEN_MAX_ITER = 1000
#: Integration-rescue counters of a start (`sbmlhybrid.optimize.minibatch_eval`), recorded for
#: every method: full-batch optimizers run with the same rescue (`optimize.rescued`).
RESCUE_COUNTERS = ("n_failed_simulations", "n_relaxed_retries", "n_relaxed_rescued",
                   "n_failed_batches")


def problem_yaml(key: str) -> Path:
    """Problem file of `key` (generated for the Boehm-dose problems)."""
    if key == "isensee":
        return ISENSEE
    sys.path.insert(0, str(REPO / "petab_problems" / "boehm_doses"))
    from make_problem import make

    out = BUILD / key
    if not (out / "problem.yaml").exists():
        make(out, PROBLEMS[key])
    return out / "problem.yaml"


def objective_of(key: str):
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import load_problem

    logging.getLogger("amici").setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore")
    return create_objective(load_problem(problem_yaml(key)))


def _minibatch(method: str, b: int, setting: dict[str, float]) -> dict[str, Any]:
    lr = setting["learning_rate"]
    return {"kind": "minibatch", "method": method, "batch_size": b, "learning_rate": lr,
            "learning_rate_end": lr * LR_END_FACTOR, "schedule": "logarithmic",
            "max_steps": int(setting["max_steps"]), "epochs": 10**6, "full_eval_every": 0,
            "full_gradient": False}


def _polish(base: str) -> dict[str, Any]:
    return {"kind": "polish", "base": base, "polish": "fides",
            "polish_max_iter": POLISH_MAX_ITER}


def _screen(base: str, n_starts: int | None = None) -> dict[str, Any]:
    """Screened polish of the runs `base` (over `n_starts` starts; default: the problem's)."""
    return {"kind": "screen", "base": base, "polish": "fides",
            "polish_max_iter": SCREEN_MAX_ITER, "margin_rel": SCREEN_REL, "n_starts": n_starts}


def methods(tuned: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Method name -> settings, mini-batch ones with the frozen tuned hyper-parameters.

    ``tuned["plain"]`` holds the settings of the mini-batch runs alone, ``tuned["polished"]``
    those of the runs followed by a polish (each family tuned for itself, see `tune`). A
    polished run continues the plain run's record when both families chose the same
    settings, else a ``base-`` record of its own (not a method of the report); so does a
    screened one (``tuned["screened"]``).
    """
    out: dict[str, dict[str, Any]] = {name: {"kind": name} for name in FULLBATCH}
    for method in ("adam", "rmsprop"):
        for b in BATCH_SIZES:
            plain = _minibatch(method, b, tuned["plain"][method])
            polished = _minibatch(method, b, tuned["polished"][method])
            screened = _minibatch(method, b, tuned["screened"][method])
            out[f"{method}-b{b}"] = plain
            base = f"{method}-b{b}" if polished == plain else f"base-{method}-b{b}"
            out[base] = polished
            out[f"{method}-b{b}+fides"] = _polish(base)
            s = tuned["screened"][method]
            base_s = next((n for n in (f"{method}-b{b}", base) if out[n] == screened),
                          f"base-{method}-b{b}-lr{s['learning_rate']}-s{s['max_steps']}")
            out[base_s] = screened
            out[f"{method}-b{b}+screen"] = _screen(base_s)
    return out


def make_optimizer(cfg: dict[str, Any]):
    from sbmlhybrid.optimize import MiniBatchOptimizer
    from sbmlhybrid.optimize import make_optimizer as full

    if cfg["kind"] in FULLBATCH:
        return full(cfg["kind"], 1000)
    if cfg["kind"] in ("polish", "screen"):
        return full(cfg["polish"], cfg["polish_max_iter"])
    opts = {k: v for k, v in cfg.items() if k != "kind"}
    return MiniBatchOptimizer(seed=SEED, **opts)


def run_start(objective, cfg: dict[str, Any], x0: np.ndarray, start: int) -> dict[str, Any]:
    """One start of one method: final value, work, objective-vs-work curve."""
    from pypesto.history import HistoryOptions
    from pypesto.optimize import OptimizeOptions

    problem = objective.pypesto_problem
    objective.work.reset(trace=True)
    load_before, t0 = load1(), time.perf_counter()
    res = make_optimizer(cfg).minimize(
        problem=problem, x0=np.asarray(x0, float), id=str(start),
        history_options=HistoryOptions(),
        optimize_options=OptimizeOptions(allow_failed_starts=True))
    wall = time.perf_counter() - t0
    tr = objective.work.trace_array()
    objective.work.trace = None
    full = tr[tr[:, 4] == 1] if len(tr) else tr
    fvals = np.where(np.isfinite(full[:, 3]), full[:, 3], np.inf) if len(full) else full
    best = np.minimum.accumulate(fvals) if len(fvals) else fvals
    keep = np.unique(np.linspace(0, len(full) - 1, min(len(full), 200)).astype(int)) \
        if len(full) else []
    fval = float(res.fval) if res.fval is not None and np.isfinite(res.fval) else None
    x_end = None if res.x is None else np.asarray(res.x)[problem.x_free_indices].tolist()
    return {"start": start, "fval": fval, "x": x_end, "exitflag": int(res.exitflag or 0),
            "message": str(res.message)[:200],
            "work_sensitivity": int(objective.work.count.sensitivity),
            "work_forward": int(objective.work.count.forward),
            "n_iterations": int(res.get("n_iterations") or res.n_grad or 0),
            "rescue": {k: int(res.get(k) or 0) for k in RESCUE_COUNTERS},
            "curve_work_sensitivity": full[keep, 0].tolist() if len(full) else [],
            "curve_work_forward": full[keep, 1].tolist() if len(full) else [],
            "curve_best_fval": [float(v) if np.isfinite(v) else None for v in
                                (best[keep] if len(full) else [])],
            "wall_s": round(wall, 2), "load1_before": load_before, "load1_after": load1(),
            "commit": git_commit()}


def record_path(key: str, name: str, start: int) -> Path:
    return RECORDS / key / name / f"start{start:02d}.json"


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


_WORKER: dict[str, Any] = {}


def _joined(head: dict[str, Any], rec: dict[str, Any], drop_last: bool) -> dict[str, Any]:
    """The record of `rec` run from the end point of `head`: work, wall time, curves added.

    `head` holds the work counted before `rec` started; with `drop_last` the last point of
    its curve (the final full evaluation that the continued run replaces) is left out.
    """
    out = rec | {"work_sensitivity": head["work_sensitivity"] + rec["work_sensitivity"],
                 "work_forward": head["work_forward"] + rec["work_forward"],
                 "wall_s": round(head["wall_s"] + rec["wall_s"], 2)}
    cut = -1 if drop_last else None
    for part in ("sensitivity", "forward"):
        out[f"curve_work_{part}"] = head[f"curve_work_{part}"][:cut] + [
            head[f"work_{part}"] + w for w in rec[f"curve_work_{part}"]]
    best_head = [v for v in head["curve_best_fval"][:cut] if v is not None]
    floor = min(best_head) if best_head else None
    out["curve_best_fval"] = head["curve_best_fval"][:cut] + [
        v if floor is None else (floor if v is None else min(v, floor))
        for v in rec["curve_best_fval"]]
    return out


def polished(objective, key: str, cfg: dict[str, Any], start: int) -> dict[str, Any]:
    """A mini-batch run followed by a polish, composed from the run's own record.

    `MiniBatchOptimizer` with ``polish`` runs the same (seeded, deterministic) batch steps and
    then the polish from their end point, skipping the one forward-only full evaluation that
    ends a run without polish; so the composed record is that run, counted the same way,
    without simulating the batch steps twice. The curve continues the base run's.
    """
    base = json.loads(record_path(key, cfg["base"], start).read_text())
    n = len(objective.amici_objective.edatas)  # one full evaluation
    head = {"work_sensitivity": base["work_sensitivity"],
            "work_forward": base["work_forward"] - n}  # without the final full evaluation
    if base["x"] is None:  # the batch steps ended where the model does not integrate
        return base | head | {"fval": None, "message": "no finite end point to polish"}
    rec = run_start(objective, cfg, np.asarray(base["x"]), start)
    return _joined(base | head, rec, drop_last=True)


def screened(objective, key: str, cfg: dict[str, Any], start: int) -> dict[str, Any]:
    """A plain mini-batch run, polished to convergence only if it passed the screen.

    The screen (`sbmlhybrid.optimize.screen_starts`, the rule `fit` applies with
    ``screen_margin``) compares the run's end value (its one full evaluation, counted in the
    plain record) with the best end value of all starts of the problem, which all exist when
    screen tasks run (`run_tasks` runs them after the plain runs). A screened-out start is the
    plain record itself: its work counts, it did not converge.
    """
    from sbmlhybrid.optimize import screen_starts

    base_recs = [json.loads(record_path(key, cfg["base"], i).read_text())
                 for i in range(cfg.get("n_starts") or N_STARTS[key])]
    base = base_recs[start]
    if start not in screen_starts([r["fval"] for r in base_recs], cfg["margin_rel"]):
        return base | {"screened_out": True, "message": f"screened out: end value "
                       f"{base['fval']} not within {cfg['margin_rel']:g} x |best| of the best"}
    rec = run_start(objective, cfg, np.asarray(base["x"]), start)
    return _joined(base, rec, drop_last=False) | {"screened_out": False}


def _task(args: tuple[str, str, dict[str, Any], list[float], int]) -> str:
    key, name, cfg, x0, start = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if _WORKER.get("key") != key:
        _WORKER.update(key=key, objective=objective_of(key))
    objective = _WORKER["objective"]
    run = {"polish": polished, "screen": screened}.get(cfg["kind"])
    rec = run(objective, key, cfg, start) if run else \
        run_start(objective, cfg, np.asarray(x0), start)
    rec |= {"method": name, "settings": cfg}
    _write(record_path(key, name, start), rec)
    fv = rec["fval"]
    return f"{key} {name} start {start}: fval {fv if fv is None else round(fv, 3)} " \
           f"work {rec['work_sensitivity']} + {rec['work_forward']} fwd ({rec['wall_s']} s)"


def starts_of(key: str, n: int, seed: int) -> tuple[np.ndarray, int]:
    """(start points, number of resampled draws) stored once per problem and seed."""
    path = RECORDS / key / f"start_points_seed{seed}.json"
    if path.exists():
        data = json.loads(path.read_text())
        if len(data["x0"]) >= n:
            return np.asarray(data["x0"])[:n], data["n_resampled"]
    from sbmlhybrid.optimize import multistart

    objective = objective_of(key)
    x0, redraws = multistart.start_points_and_redraws(objective, n, seed)
    draws = sum(1 for r in redraws if r)  # starts that were resampled
    _write(path, {"x0": x0.tolist(), "x_ids": objective.x_free_ids,
                  "n_resampled": draws, "seed": seed})
    return x0, draws


def run_tasks(tasks: list[tuple], workers: int) -> None:
    """Run the missing records; polish tasks after the runs they continue."""
    todo = [t for t in tasks if not record_path(t[0], t[1], t[4]).exists()]
    print(f"{len(tasks) - len(todo)} of {len(tasks)} records done; running {len(todo)}",
          flush=True)
    for phase in (False, True):
        part = [t for t in todo if (t[2]["kind"] in ("polish", "screen")) == phase]
        if workers <= 1:
            for t in part:
                print(_task(t), flush=True)
            continue
        with get_context("spawn").Pool(workers, maxtasksperchild=None) as pool:
            for line in pool.imap_unordered(_task, part):
                print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="*", default=list(PROBLEMS))
    ap.add_argument("--methods", nargs="*", default=None, help="default: all")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    from _minibatch_report import report
    from _minibatch_tune import tune

    if not args.report_only:
        tuned = tune(args.workers)
        all_methods = methods(tuned)
        for key in args.problems:
            x0s, _ = starts_of(key, N_STARTS[key], SEED)
            names = args.methods or list(all_methods)
            names += [all_methods[m]["base"] for m in names  # the runs polished ones continue
                      if all_methods[m]["kind"] in ("polish", "screen")
                     and all_methods[m]["base"] not in names]
            tasks = [(key, name, all_methods[name], x0.tolist(), i)
                     for name in names for i, x0 in enumerate(x0s)]
            run_tasks(tasks, args.workers)
    report(" ".join(sys.argv))


if __name__ == "__main__":
    main()
