"""Benchmark: pool-based medium-optimisation campaign replay on the real CFPS tables.

Writes ``benchmarks/results/media_campaign.json`` from one record per (method, seed) under
``benchmarks/results/media_campaign/`` (resumable; a run with other settings refuses the
folder). Protocol (``_media_replay``): the METIS lysate table (203 distinct formulations,
replicates merged) is the pool; 12 start formulations by Latin hypercube (nearest pool rows),
then 6 rounds of 12 proposals, "measured" by revealing the pool's yield; 20 seeds, the same
start design for every method. Methods: random; GP-EI (sklearn ARD Matern-5/2 GP, 12
marginal-likelihood optimisations); the sbmlhybrid ensemble (TransferMLPRegressor, 5 members)
from scratch and with LP-FT transfer from the Borkowski table (1,017 formulations). Every model
picks by expected improvement over the best yield measured so far, with the library's greedy
diverse batch selection (``select_batch``, min RMS distance 0.2 in [0, 1]-scaled units: the
pool's median nearest-neighbour distance is 0.17, the median pairwise one 0.39).

Metrics: rounds until a top-5 % (and top-1 %) formulation is measured (0 = in the start design;
7 = not within 6 rounds, censored), best yield after every round; means with 95 % bootstrap
intervals over seeds, paired differences (same seed) of the transfer ensemble vs the others.

Usage:
    python benchmarks/media_campaign.py [--workers 2] [--seeds 20]
    python benchmarks/media_campaign.py --smoke        # tiny, writes under /tmp only
    python benchmarks/media_campaign.py --plan-only | --report-only
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, git_commit, load1, write_json  # noqa: E402
from _media_baselines import GP_RESTARTS  # noqa: E402
from _media_records import (  # noqa: E402
    Task,
    check_settings,
    command_line,
    common_arguments,
    complete_records,
    one_thread,
    output_paths,
    print_plan,
    records_summary,
    run_tasks,
    settings_key,
    stamp,
)
from _media_replay import METHODS  # noqa: E402
from _media_stats import mean_ci, paired_mean_diff  # noqa: E402
from media_transfer import COST_S, PRETRAIN_KW, SMOKE_DIR, TRANSFER_KW, prepare_real  # noqa: E402

NAME = "media_campaign"
TOP_FRACTIONS = {"top5": 0.05, "top1": 0.01}
_CTX: dict[str, Any] = {}


def settings(smoke: bool) -> dict[str, Any]:
    """Everything a record depends on (not the number of seeds)."""
    st = {"protocol": 1, "start": 12, "batch": 12, "rounds": 6, "acquisition": "ei",
          "min_distance": 0.2, "gp_restarts": GP_RESTARTS, "transfer_kw": TRANSFER_KW,
          "pretrain_kw": PRETRAIN_KW, "transfer_strategy": "lp-ft", "top": TOP_FRACTIONS,
          "smoke": smoke}
    if smoke:
        st.update(rounds=2, gp_restarts=2,
                  transfer_kw=dict(TRANSFER_KW, max_epochs=15, patience=5),
                  pretrain_kw=dict(PRETRAIN_KW, max_epochs=30, patience=10))
    return st


def _context(root: str) -> dict[str, Any]:
    """The pool (merged METIS table), its scaling, top sets and the source model."""
    if root not in _CTX:
        from _common import SHARED
        from _media_replay import merged_pool, top_set, unit_scale_pool, unit_space

        from sbmlhybrid.media.datasets import load_cfps_pair
        from sbmlhybrid.media.modelfile import load_model

        _, _, xt, yt = load_cfps_pair(SHARED)
        x, y = merged_pool(xt, yt)
        _CTX[root] = {"x": x, "y": y, "z": unit_scale_pool(x), "space": unit_space(x.shape[1]),
                      **{k: top_set(y, f) for k, f in TOP_FRACTIONS.items()},
                      "source": load_model(Path(root) / "source_real.zip")}
    return _CTX[root]


def run_one(args: tuple) -> dict[str, Any]:
    """Worker entry: one (method, seed) replay, stamped."""
    from _media_replay import replay

    warnings.filterwarnings("ignore")
    logging.getLogger("sbmlhybrid.media").setLevel(logging.ERROR)
    t0, c0, l0 = time.perf_counter(), time.process_time(), load1()
    root, st, method, seed = args
    return stamp(replay(method, seed, _context(root), st), settings_key(st), t0, c0, l0)


def _est(method: str, st: dict[str, Any]) -> tuple[float, int]:
    """(CPU seconds, model fits) of one replay, from the benchmark's per-fit costs."""
    ns = [st["start"] + st["batch"] * r for r in range(st["rounds"])]
    if method == "random":
        return 0.1, 0
    if method == "gp_ei":
        scale = (st["gp_restarts"] + 1) / (GP_RESTARTS + 1)
        return sum(COST_S["gp"](n) * scale for n in ns), len(ns) * (st["gp_restarts"] + 1)
    per_fit = {n: 0.1 + 0.002 * n for n in ns}  # one LP-FT / scratch fit (5 members)
    return sum(per_fit.values()), len(ns)


def build_tasks(root: Path, st: dict[str, Any], seeds: int) -> list[Task]:
    """One Task per (method, seed): root/method/seedSS.json."""
    tasks = []
    for m in METHODS:
        est, fits = _est(m, st)
        tasks += [Task(root / m / f"seed{s:02d}.json", f"{m} seed {s}", (str(root), st, m, s),
                       est, fits, m) for s in range(seeds)]
    return tasks


def _describe(rec: dict[str, Any]) -> str:
    return (f"best by round {[round(b, 2) for b in rec['best_by_round']]}, top-5 % at round "
            f"{rec['rounds_to_top5']}")


def _by_method(recs: list[dict[str, Any]], key: str) -> dict[str, np.ndarray]:
    out: dict[str, list] = {}
    for r in sorted(recs, key=lambda r: r["seed"]):
        out.setdefault(r["method"], []).append(r[key])
    return {m: np.asarray(v, float) for m, v in out.items()}


def _rounds_summary(rounds: np.ndarray, start_missed: np.ndarray, n_rounds: int
                    ) -> dict[str, Any]:
    found = rounds <= n_rounds
    return {**mean_ci(rounds), "median": float(np.median(rounds)),
            "found_fraction": float(found.mean()), "censored_value": n_rounds + 1,
            "when_start_missed": (mean_ci(rounds[start_missed]) if start_missed.any()
                                  else None)}


def summarise(recs: list[dict[str, Any]], st: dict[str, Any]) -> dict[str, Any]:
    """The acceptance metrics and paired comparisons from all records."""
    n_rounds = st["rounds"]
    best = _by_method(recs, "best_by_round")  # (seeds, rounds + 1)
    pool_max = recs[0]["pool_max"]
    out: dict[str, Any] = {}
    for top in TOP_FRACTIONS:
        r = _by_method(recs, f"rounds_to_{top}")
        missed = r["random"] > 0  # the start design is shared: same for every method
        out[f"rounds_to_{top}_by_method"] = {m: _rounds_summary(v, missed, n_rounds)
                                             for m, v in r.items()}
        out[f"seeds_whose_start_had_a_{top}"] = int((~missed).sum())
        out[f"paired_rounds_to_{top}"] = {
            f"ensemble_transfer_vs_{m}": paired_mean_diff(r["ensemble_transfer"], r[m])
            for m in r if m != "ensemble_transfer"}
    out[f"best_after_{n_rounds}_rounds_by_method"] = {
        m: {**mean_ci(v[:, -1]), "fraction_of_pool_max": float(v[:, -1].mean() / pool_max)}
        for m, v in best.items()}
    out[f"paired_best_after_{n_rounds}_rounds"] = {
        f"ensemble_transfer_vs_{m}": paired_mean_diff(best["ensemble_transfer"][:, -1],
                                                      best[m][:, -1])
        for m in best if m != "ensemble_transfer"}
    out["best_by_round_by_method"] = {
        m: [{"round": i, **mean_ci(v[:, i])} for i in range(v.shape[1])]
        for m, v in best.items()}
    r5 = out["rounds_to_top5_by_method"]
    out["goal_transfer_top5_in_half_the_rounds_of_random"] = bool(
        r5["ensemble_transfer"]["mean"] <= 0.5 * r5["random"]["mean"])
    out["goal_transfer_top5_no_later_than_gp_ei"] = bool(
        r5["ensemble_transfer"]["mean"] <= r5["gp_ei"]["mean"])
    return out


def report(root: Path, st: dict[str, Any], tasks: list[Task], out: Path, seeds: int) -> bool:
    """Write the JSON when every record exists; False otherwise."""
    recs = complete_records(tasks)
    if recs is None:
        return False
    ctx = _context(str(root))
    result = {
        **summarise(recs, st), "commit": git_commit(), "command": command_line(),
        "settings": st, "seeds": seeds, "methods": list(METHODS),
        "pool": {"formulations": int(len(ctx["y"])), "pool_max": float(ctx["y"].max()),
                 **{f"{k}_rows": int(len(ctx[k])) for k in TOP_FRACTIONS},
                 **{f"{k}_threshold": float(ctx["y"][ctx[k]].min()) for k in TOP_FRACTIONS}},
        **records_summary(recs),
    }
    write_json(str(out), result)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(ap, SMOKE_DIR)
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args(argv)
    st = settings(args.smoke)
    root, out = output_paths(args, NAME, SMOKE_DIR, RESULTS)
    seeds = 2 if args.smoke else args.seeds
    check_settings(root, st)
    one_thread()
    tasks = build_tasks(root, st, seeds)
    print_plan(tasks, args.workers, f"{NAME} ({root})")
    if args.plan_only:
        return 0
    prepare_real(root, st)
    failed = [] if args.report_only else run_tasks(tasks, run_one, args.workers, _describe)
    ok = report(root, st, tasks, out, seeds)
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
