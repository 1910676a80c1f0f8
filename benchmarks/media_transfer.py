"""Benchmark: transfer-learned culture-medium predictors vs target-only baselines.

Writes ``benchmarks/results/media_transfer.json``. Two studies, learning curves
n_target in {10, 20, 50, 100, 200}, seeded repeats, splits by formulation:

1. real pair: Borkowski CFPS (1,017 rows) -> METIS lysate (240 rows), columns mapped
   by ``sbmlhybrid.media.datasets.CFPS_COLUMN_MAP``; per repeat the target's
   distinct formulations are split into a test set (>= 36 rows) and a training
   pool (n = 200 is capped at the pool size, recorded as ``n_effective``);
   outcomes on the raw yield scale.
2. synthetic CHO (``SyntheticMediumBenchmark``: 24 components acting on the kinetics of
   the compiled AMICI CHO fed-batch model, 14-day fed batch): 1,200 source rows,
   per repeat a fresh 200-row target pool, a fixed 1,000-row test set per rho in
   {0.2, 0.5, 0.9}; every method models log(titer), metrics on g/L.

Methods: head, lpft, full, surgical, scratch (TransferMLPRegressor), lpft_guarded
(LP-FT with the source-hurts guard; ``guard_fired_fraction``), baselines on the
same target rows: gp (ARD Matern 5/2), gbm (grid-tuned), rf, pooled (source +
target with a task indicator, GBM). Usage:
    python benchmarks/media_transfer.py [--repeats 20] [--quick] [--speed-only]
    # or as single-threaded shards (e.g. on a shared machine), then merged:
    python benchmarks/media_transfer.py --studies real --out real.json   # etc.
    python benchmarks/media_transfer.py --merge real.json ... --out results/media_transfer.json
    # a study whose inputs did not change can be taken over from an earlier merged result
    # (recorded under "reused_studies"; its CPU time is not in cpu_seconds_total):
    python benchmarks/media_transfer.py --merge syn*.json --reuse git:REV:benchmarks/results/\
        media_transfer.json:real --note "why" --out ...
``--source-check`` adds the pretrained synthetic model's error on fresh source-line
formulations (``synthetic_source_line_check``). Every shard runs one torch/BLAS thread;
``cpu_seconds_total`` sums the shards' CPU time, i.e. the run time on one core.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from sbmlhybrid.media.datasets import load_cfps_pair
from sbmlhybrid.media.estimator import TransferMLPRegressor
from sbmlhybrid.media.metrics import Z90, regression_report
from sbmlhybrid.media.synthetic import SyntheticMediumBenchmark

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "media_transfer.json"
N_TARGETS = (10, 20, 50, 100, 200)
RHOS = (0.2, 0.5, 0.9)
NN_METHODS = ("head", "lpft", "full", "surgical", "scratch")
BASELINES = ("gp", "gbm", "rf", "pooled")
TRANSFER_KW = dict(max_epochs=80, patience=10, surgical_depths=(0, 2, 4), cv_folds=3)
PRETRAIN_KW = dict(batch_size=64, max_epochs=400, patience=40, weight_decay=1e-3, lr=2e-3)


def _lbfgs(obj_func, initial_theta, bounds):
    """GP hyperparameter optimiser: L-BFGS-B capped at 20 iterations (time budget)."""
    res = minimize(obj_func, initial_theta, method="L-BFGS-B", jac=True, bounds=bounds,
                   options={"maxiter": 20})
    return res.x, res.fun


def _unit_scale(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (x - lo) / np.where(hi > lo, hi - lo, 1.0)


def fit_baselines(x_tr, y_tr, x_te, pooled_src, seed: int) -> dict[str, tuple]:
    """Baselines on the target rows; returns {name: (mean, std or None)} on x_te."""
    lo, hi = x_tr.min(0), x_tr.max(0)
    xs_tr, xs_te = _unit_scale(x_tr, lo, hi), _unit_scale(x_te, lo, hi)
    out = {}
    d = x_tr.shape[1]
    kern = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(np.ones(d), (1e-2, 1e3), nu=2.5) + \
        WhiteKernel(0.1, (1e-5, 1e1))
    gp = GaussianProcessRegressor(kern, normalize_y=True, random_state=seed, optimizer=_lbfgs)
    gp.fit(xs_tr, y_tr)
    out["gp"] = gp.predict(xs_te, return_std=True)
    cv = min(3, len(y_tr))
    gbm = GridSearchCV(GradientBoostingRegressor(n_estimators=100, subsample=0.8,
                                                 random_state=seed),
                       {"max_depth": [2, 3], "learning_rate": [0.1]}, cv=cv,
                       scoring="neg_mean_squared_error")
    gbm.fit(x_tr, y_tr)
    out["gbm"] = (gbm.predict(x_te), None)
    rf = RandomForestRegressor(n_estimators=60, min_samples_leaf=2, random_state=seed)
    rf.fit(x_tr, y_tr)
    per_tree = np.stack([t.predict(x_te) for t in rf.estimators_])
    out["rf"] = (per_tree.mean(0), per_tree.std(0))
    xs_src, y_src = pooled_src
    xp = np.vstack([np.c_[xs_src, np.zeros(len(xs_src))], np.c_[x_tr, np.ones(len(x_tr))]])
    yp = np.r_[y_src, y_tr]
    pooled = GradientBoostingRegressor(n_estimators=40, max_depth=3, subsample=0.8,
                                       random_state=seed)
    pooled.fit(xp, yp)
    out["pooled"] = (pooled.predict(np.c_[x_te, np.ones(len(x_te))]), None)
    return out


def fit_nn(source: TransferMLPRegressor, x_tr: pd.DataFrame, y_tr, x_te, seed: int) -> dict:
    """Transfer strategies + guarded LP-FT; returns {name: (mean, std)} and guard info."""
    out, info = {}, {}
    guarded = TransferMLPRegressor(source=source, strategy="lp-ft", guard=True,
                                   random_state=seed, **TRANSFER_KW).fit(x_tr, y_tr)
    out["lpft_guarded"] = guarded.predict(x_te, return_std=True)
    info["guard_fired"] = bool(guarded.guard_fired_)
    info["out_of_range_fraction"] = guarded.out_of_range_fraction_
    for name in NN_METHODS:
        if name == "lpft" and not guarded.guard_fired_:
            out[name] = out["lpft_guarded"]  # the guarded model *is* an LP-FT fit
            continue
        strat = {"lpft": "lp-ft"}.get(name, name)
        est = TransferMLPRegressor(source=source, strategy=strat, random_state=seed,
                                   **TRANSFER_KW).fit(x_tr, y_tr)
        out[name] = est.predict(x_te, return_std=True)
        if name == "surgical":
            info["freeze_depth"] = int(est.freeze_depth_)
    return {"pred": out, "info": info}


def evaluate(y_te, preds: dict, log_scale: bool) -> dict:
    """Metrics per method; log-scale predictions are mapped back (median, interval)."""
    res = {}
    for name, (mean, std) in preds.items():
        if std is None:
            lo = hi = None
        else:
            lo, hi = mean - Z90 * std, mean + Z90 * std
        if log_scale:
            mean = np.exp(mean)
            lo, hi = (None, None) if lo is None else (np.exp(lo), np.exp(hi))
        res[name] = regression_report(y_te, mean, lo, hi)
    return res


def formulation_split(x: pd.DataFrame, rng, test_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Split rows so that identical formulations (replicates) never straddle."""
    groups = pd.factorize(pd.util.hash_pandas_object(x.round(9), index=False))[0]
    order = rng.permutation(groups.max() + 1)
    test, count = [], 0
    for g in order:
        if count >= test_rows:
            break
        rows = np.flatnonzero(groups == g)
        test.append(rows)
        count += len(rows)
    test = np.concatenate(test)
    pool = np.setdiff1d(np.arange(len(x)), test)
    return rng.permutation(pool), test


def run_study(name, source, pool_fn, ns, repeats, log_scale, pooled_src, bar) -> dict:
    """All repeats of one study; pool_fn(rep) -> (x_pool, y_pool, x_te, y_te)."""
    records = []
    for rep in range(repeats):
        x_pool, y_pool, x_te, y_te = pool_fn(rep)
        for n in ns:
            n_eff = min(n, len(y_pool))
            x_tr, y_tr = x_pool.iloc[:n_eff], y_pool[:n_eff]
            yt = np.log(y_tr) if log_scale else y_tr
            seed = 1000 * rep + n
            t0 = time.perf_counter()
            nn = fit_nn(source, x_tr, yt, x_te, seed)
            t1 = time.perf_counter()
            base = fit_baselines(x_tr.to_numpy(), yt, x_te.to_numpy(), pooled_src, seed)
            t2 = time.perf_counter()
            metrics = evaluate(y_te, {**nn["pred"], **base}, log_scale)
            records.append({"repeat": rep, "n": n, "n_effective": n_eff, "metrics": metrics,
                            **nn["info"], "seconds_nn": t1 - t0, "seconds_baselines": t2 - t1})
            bar.update(1)
            bar.set_postfix(study=name, rep=rep, n=n)
    return summarise(records, ns)


def summarise(records: list[dict], ns) -> dict:
    """Mean/sd over repeats per method and n, plus the guard firing rate."""
    curves: dict = {}
    methods = list(records[0]["metrics"])
    for m in methods:
        curves[m] = {}
        for n in ns:
            rows = [r["metrics"][m] for r in records if r["n"] == n]
            entry = {}
            for key in rows[0]:
                vals = [r[key] for r in rows if r[key] is not None]
                if vals:
                    entry[key] = float(np.mean(vals))
                    entry[key + "_sd"] = float(np.std(vals))
            curves[m][str(n)] = entry
    guard = {str(n): float(np.mean([r["guard_fired"] for r in records if r["n"] == n]))
             for n in ns}
    n_eff = {str(n): float(np.mean([r["n_effective"] for r in records if r["n"] == n]))
             for n in ns}
    depth = {str(n): [r.get("freeze_depth") for r in records if r["n"] == n] for n in ns}
    return {"learning_curves": curves, "guard_fired_fraction": guard, "n_effective": n_eff,
            "surgical_freeze_depth": depth,
            "out_of_range_fraction": float(np.mean([r["out_of_range_fraction"] for r in records])),
            "seconds_nn": float(np.sum([r["seconds_nn"] for r in records])),
            "seconds_baselines": float(np.sum([r["seconds_baselines"] for r in records]))}


def candidate_speed(model: TransferMLPRegressor, space: pd.DataFrame, top: np.ndarray,
                    n: int = 1_000_000) -> dict:
    """Generate and score n candidates (LHS + mixtures of ``top`` + level permutations)."""
    from sbmlhybrid.media.candidates import SearchSpace, generate_candidates, score_candidates

    ss = SearchSpace.from_table(space)
    rng = np.random.default_rng(0)
    t0, c0 = time.perf_counter(), time.process_time()
    cands = generate_candidates(ss, n, rng, top=top)
    t1, c1 = time.perf_counter(), time.process_time()
    mean, std = score_candidates(model, cands, ss.components)
    t2, c2 = time.perf_counter(), time.process_time()
    # wall clock on a shared machine undercounts; CPU time is what one free core needs
    return {"n_candidates": int(len(cands)), "seconds_generate": t1 - t0,
            "seconds_score": t2 - t1, "seconds_total": t2 - t0,
            "cpu_seconds_generate": c1 - c0, "cpu_seconds_score": c2 - c1,
            "cpu_seconds_total": c2 - c0,
            "candidates_per_cpu_s": float(len(cands) / (c2 - c0)),
            "candidates_per_s": float(len(cands) / (t2 - t0)),
            "finite": bool(np.isfinite(mean).all() and np.isfinite(std).all())}


def source_check(model: TransferMLPRegressor, bench: SyntheticMediumBenchmark,
                 n: int = 1000) -> dict:
    """Pretrained model vs fresh source-line formulations: its own error floor (titer)."""
    x, y = bench.sample(n, bench.source_line, np.random.default_rng((4, 0)))
    clean = bench.outcomes(x.to_numpy(), bench.source_line)[:, 0]  # noise-free
    pred = np.exp(model.predict(x))
    return {"n": n, "mape_vs_measured": float(100 * np.mean(np.abs(pred - y[:, 0]) / y[:, 0])),
            "mape_vs_noise_free": float(100 * np.mean(np.abs(pred - clean) / clean)),
            "noise_floor_mape": float(100 * np.mean(np.abs(y[:, 0] - clean) / y[:, 0]))}


def write_json(obj: dict, path: Path) -> None:
    """Atomic JSON write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=1)
    os.replace(tmp, path)


ALL_STUDIES = ("real", "synthetic_rho02", "synthetic_rho05", "synthetic_rho09")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="2 repeats, n in {10, 50}")
    ap.add_argument("--studies", default=",".join(ALL_STUDIES),
                    help="comma-separated subset (a shard); the shard JSON is merged later")
    ap.add_argument("--merge", type=Path, nargs="+",
                    help="merge shard JSONs (CPU seconds are summed) into --out")
    ap.add_argument("--reuse", action="append", default=[],
                    metavar="[git:REV:]OLD.json:STUDY[,STUDY]",
                    help="with --merge: take these studies from an earlier merged result")
    ap.add_argument("--note", default="", help="with --reuse: why the reuse is valid")
    ap.add_argument("--speed-only", action="store_true",
                    help="only re-measure candidates_per_s and update the JSON")
    ap.add_argument("--source-check", action="store_true",
                    help="only measure the pretrained synthetic model on fresh source-line "
                    "formulations (its own error floor) and update the JSON")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--cache", type=Path, help="folder to share the pretrained synthetic model "
                    "between shards (pretraining is deterministic)")
    args = ap.parse_args(argv)
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        parts += [reused_shard(spec, args.note) for spec in args.reuse]
        write_json(merge(parts), args.out)
        return 0
    torch.set_num_threads(1)
    threadpool_limits(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", module="sklearn")
    logging.getLogger("sbmlhybrid.media").setLevel(logging.ERROR)
    repeats = 2 if args.quick else args.repeats
    ns = (10, 50) if args.quick else N_TARGETS
    wanted = [x.strip() for x in args.studies.split(",") if x.strip()]
    unknown = [w for w in wanted if w not in ALL_STUDIES]
    if unknown:
        ap.error(f"unknown studies {unknown}; choose from {ALL_STUDIES}")
    t_start, cpu_start = time.perf_counter(), time.process_time()
    pre_kw = dict(PRETRAIN_KW, max_epochs=100) if args.quick else PRETRAIN_KW
    bench = SyntheticMediumBenchmark(seed=0)
    xs_syn, ys_syn = bench.sample(1200, bench.source_line, np.random.default_rng(0))
    top_syn = xs_syn.to_numpy()[np.argsort(-ys_syn[:, 0])[:120]]  # best 10 % of the source
    need_syn = args.speed_only or args.source_check or any(
        w.startswith("synthetic") for w in wanted)
    src_syn = None
    if need_syn:
        cache = args.cache / f"src_syn_{int(args.quick)}.pkl" if args.cache else None
        if cache is not None and cache.exists():
            src_syn = pickle.loads(cache.read_bytes())  # written by this script below
        else:
            src_syn = TransferMLPRegressor(random_state=0, **pre_kw).pretrain(
                xs_syn, np.log(ys_syn[:, 0]))
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_bytes(pickle.dumps(src_syn))
    if args.source_check:
        result = json.loads(args.out.read_text())
        result["synthetic_source_line_check"] = source_check(src_syn, bench)
        write_json(result, args.out)
        print(json.dumps(result["synthetic_source_line_check"], indent=1))
        return 0
    if args.speed_only:
        result = json.loads(args.out.read_text())
        speed = candidate_speed(src_syn, bench.search_space(), top_syn)
        result["candidate_scoring"] = speed
        result["candidates_per_s"] = speed["candidates_per_s"]
        result["candidates_per_cpu_s"] = speed["candidates_per_cpu_s"]
        write_json(result, args.out)
        print(json.dumps(speed, indent=1))
        return 0
    studies = {}
    bar = tqdm(total=repeats * len(ns) * len(wanted), desc="media_transfer", file=sys.stderr)
    if "real" in wanted:
        xs_r, ys_r, xt_r, yt_r = load_cfps_pair(REPO.parent / "shared")
        src_real = TransferMLPRegressor(random_state=0, **pre_kw).pretrain(xs_r, ys_r)

        def real_pool(rep):
            r = np.random.default_rng((1, rep))
            pool, test = formulation_split(xt_r, r, test_rows=36)
            return (xt_r.iloc[pool].reset_index(drop=True), yt_r[pool],
                    xt_r.iloc[test].reset_index(drop=True), yt_r[test])

        xs_pooled = xs_r.reindex(columns=xt_r.columns)
        xs_pooled = xs_pooled.fillna(xt_r.mean()).to_numpy()  # target-only: target mean
        studies["real"] = run_study("real", src_real, real_pool, ns, repeats, False,
                                    (xs_pooled, ys_r), bar)
        studies["real"]["source_rows"], studies["real"]["target_rows"] = len(ys_r), len(yt_r)
    for rho in RHOS:
        key = f"synthetic_rho{int(round(rho * 10)):02d}"
        if key not in wanted:
            continue
        line = bench.cell_line(rho, seed=1)
        x_te, y_te = bench.sample(1000, line, np.random.default_rng((2, int(rho * 10))))

        def syn_pool(rep, line=line, x_te=x_te, y_te=y_te, rho=rho):
            x, y = bench.sample(200, line, np.random.default_rng((3, int(rho * 10), rep)))
            return x, y[:, 0], x_te, y_te[:, 0]

        studies[key] = run_study(key, src_syn, syn_pool, ns, repeats, True,
                                 (xs_syn.to_numpy(), np.log(ys_syn[:, 0])), bar)
        studies[key]["rho"] = rho
    bar.close()
    result = {
        "repeats": repeats, "quick": bool(args.quick), "n_targets": list(ns),
        "transfer_settings": TRANSFER_KW, "pretrain_settings": PRETRAIN_KW,
        "synthetic_simulator": "AmiciCHOSimulator: compiled AMICI model of "
        "petab_problems/cho_fedbatch, condition fed_standard, 14 days",
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version()},
        "studies": studies,
    }
    if "synthetic_rho09" in wanted:
        speed = candidate_speed(src_syn, bench.search_space(), top_syn)
        result.update({"candidates_per_s": speed["candidates_per_s"],
                       "candidate_scoring": speed})
    result["seconds_wall_shards"] = [time.perf_counter() - t_start]
    result["cpu_seconds_total"] = time.process_time() - cpu_start
    if set(wanted) == set(ALL_STUDIES):
        result = merge([result])
    write_json(result, args.out)
    print(json.dumps({k: v for k, v in result.items() if k != "studies"}, indent=1))
    return 0


def reused_shard(spec: str, note: str) -> dict:
    """A pseudo-shard with studies taken over from an earlier merged result ("PATH:a,b")."""
    path, _, names = spec.rpartition(":")
    if path.startswith("git:"):  # git:REV:PATH, read from the repository's history
        import subprocess

        old = json.loads(subprocess.run(["git", "-C", str(REPO), "show", path[4:]],
                                        check=True, capture_output=True, text=True).stdout)
    else:
        old = json.loads(Path(path).read_text())
    if old.get("transfer_settings") != json.loads(json.dumps(TRANSFER_KW)) or \
            old.get("pretrain_settings") != PRETRAIN_KW:
        raise SystemExit(f"--reuse {path}: its transfer/pretrain settings differ from this "
                         "script's; rerun the study instead")
    studies = {k: old["studies"][k] for k in names.split(",")}
    return {"repeats": old["repeats"], "studies": studies, "cpu_seconds_total": 0.0,
            "seconds_wall_shards": [], "reused": {k: {"from": path, "note": note,
                                                      "repeats": old["repeats"],
                                                      "transfer_settings":
                                                      old.get("transfer_settings")}
                                                  for k in studies}}


def merge(parts: list[dict]) -> dict:
    """Combine shard results: union of studies, summed CPU seconds, headline fields."""
    out = {k: v for k, v in parts[0].items() if k not in ("studies", "reused")}
    out["studies"] = {}
    out["cpu_seconds_total"] = 0.0
    out["seconds_wall_shards"] = []
    for p in parts:
        out["studies"].update(p["studies"])
        out["cpu_seconds_total"] += p["cpu_seconds_total"]
        out["seconds_wall_shards"] += p["seconds_wall_shards"]
        out.setdefault("reused_studies", {}).update(p.get("reused", {}))
        for key in ("candidates_per_s", "candidate_scoring"):
            if key in p:
                out[key] = p[key]
        if "candidate_scoring" in p:
            out["candidates_per_cpu_s"] = p["candidate_scoring"]["candidates_per_cpu_s"]
        if p["repeats"] != parts[0]["repeats"]:
            raise SystemExit("shards ran different repeat counts")
    missing = [s for s in ALL_STUDIES if s not in out["studies"]]
    if missing:
        raise SystemExit(f"merge: studies missing {missing}")
    out["cpu_minutes_total_single_core"] = out["cpu_seconds_total"] / 60.0
    out["shards"] = len(parts)
    out.update(headline(out["studies"], tuple(out["n_targets"])))
    return out


def headline(studies: dict, ns) -> dict:
    """Acceptance fields (means over repeats)."""
    def get(study, method, n, key):
        return studies[study]["learning_curves"][method].get(str(n), {}).get(key)

    n_mid = 50 if 50 in ns else ns[-1]
    n_big = 200 if 200 in ns else ns[-1]
    base_rmse = {b: get("real", b, n_mid, "rmse") for b in BASELINES}
    best = min(base_rmse, key=base_rmse.get)
    out = {
        "lpft_mape_n200_synthetic_rho09": get("synthetic_rho09", "lpft", n_big, "mape"),
        "lpft_rmse_real_n50": get("real", "lpft", n_mid, "rmse"),
        "full_rmse_real_n50": get("real", "full", n_mid, "rmse"),
        "lpft_vs_full_rmse_ratio_real_n50": get("real", "lpft", n_mid, "rmse")
        / get("real", "full", n_mid, "rmse"),
        "best_baseline_rmse_real_n50": base_rmse[best], "best_baseline_real_n50": best,
    }
    for key in studies:
        for n in ns:
            out[f"lpft_vs_full_rmse_ratio_{key}_n{n}"] = (
                get(key, "lpft", n, "rmse") / get(key, "full", n, "rmse"))
            out[f"lpft_vs_scratch_rmse_ratio_{key}_n{n}"] = (
                get(key, "lpft", n, "rmse") / get(key, "scratch", n, "rmse"))
            out[f"guarded_vs_lpft_rmse_ratio_{key}_n{n}"] = (
                get(key, "lpft_guarded", n, "rmse") / get(key, "lpft", n, "rmse"))
        out[f"guard_fired_fraction_{key}"] = studies[key]["guard_fired_fraction"]
    out["goal_lpft_mape_lt_15_synthetic_rho09_n200"] = bool(
        out["lpft_mape_n200_synthetic_rho09"] < 15.0)
    out["goal_lpft_better_than_full_real_n50"] = bool(out["lpft_vs_full_rmse_ratio_real_n50"] < 1)
    return out


if __name__ == "__main__":
    sys.exit(main())
