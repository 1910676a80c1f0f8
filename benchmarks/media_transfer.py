"""Benchmark: transfer-learned culture-medium predictors vs tuned target-only baselines.

Writes ``benchmarks/results/media_transfer.json`` from one record per (study, n, repeat) under
``benchmarks/results/media_transfer/`` (resumable: present records are skipped; a run with
other settings refuses the folder). Studies (details in ``_media_studies``):

1. ``real``: Borkowski CFPS (1,017 source rows) -> METIS lysate (240 rows, 203 formulations),
   repeated grouped 3-fold CV on the target (every row predicted once per repeat),
   n in {10, 20, 50, 100, 150} training rows per fold, 20 repeats; raw yield.
2. ``synthetic_rho02/05/09``: the AMICI CHO medium generator; the source set is enlarged along
   ``SOURCE_LADDER`` until the pretrained model's MAPE on fresh source formulations is within
   1.5x of the noise floor (or the ladder ends); fresh 200-row target pool per repeat,
   n in {10, 20, 50, 100, 200}, fixed 1,000-row test set; log(titer) modelled, g/L scored.

Methods: the strategies head, lp-ft, staged, full, surgical, scratch; lpft_guarded (LP-FT
with the source-hurts guard); lpft_mi (LP-FT on the 10 of 14 inputs with the highest mutual
information: 30 % fewer inputs); baselines gp (ARD Matern 5/2, 12 marginal-likelihood
optimisations), gbm and rf (4-point grids, 3-fold CV: 12 fits, the budget of the nets'
surgical depth search), pooled (GBM on source + target rows with a task indicator).
Paired intervals: ``_media_stats`` (two-way bootstrap over repeats and rows).

Usage:
    python benchmarks/media_transfer.py [--workers 2] [--repeats 20] [--studies real,...]
    python benchmarks/media_transfer.py --smoke        # tiny, writes under /tmp only
    python benchmarks/media_transfer.py --plan-only    # print the CPU budget and stop
    python benchmarks/media_transfer.py --report-only  # rebuild the JSON from the records
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
from _media_baselines import (  # noqa: E402
    CV_BUDGET,
    CV_FOLDS,
    GBM_GRID,
    GP_RESTARTS,
    RF_GRID,
    RF_TREES,
)
from _media_records import (  # noqa: E402
    Task,
    check_settings,
    command_line,
    common_arguments,
    complete_records,
    one_thread,
    output_paths,
    print_plan,
    read_record,
    records_summary,
    run_tasks,
    stamp,
)
from _media_studies import NET_TRAININGS  # noqa: E402

NAME = "media_transfer"
N_REAL = (10, 20, 50, 100, 150)
N_SYN = (10, 20, 50, 100, 200)
RHOS = (0.2, 0.5, 0.9)
SOURCE_LADDER = (1200, 4800, 19200)
STUDIES = ("real", "synthetic_rho02", "synthetic_rho05", "synthetic_rho09")
TRANSFER_KW: dict[str, Any] = dict(max_epochs=80, patience=10, cv_folds=CV_FOLDS)
PRETRAIN_KW: dict[str, Any] = dict(batch_size=64, max_epochs=400, patience=40,
                                   weight_decay=1e-3, lr=2e-3)
SMOKE_DIR = Path("/tmp/sbmlhybrid_smoke")
#: CPU seconds per fit at n training rows (one thread), measured on the shared 2-core box at
#: load ~2 with the full settings: nets (all 8 methods, one fold), GP (12 optimisations, d = 14;
#: its cost grows with the d + 2 hyper-parameters: x 26/16 for the 24 synthetic components),
#: GBM + forest grids (13 fits each), pooled GBM; replaced by the records' own timings
#: as soon as a record of the same study and n exists.
COST_S = {"nets": lambda n: 1.3 + 0.03 * n, "gp": lambda n: 0.5 + 0.0154 * n ** 1.54,
          "grids": lambda n: 8.0 + 0.01 * n, "pooled": lambda n: 0.2}
#: simulating (7 ms) and pretraining (~12 ms) one synthetic source row
LADDER_S_PER_ROW = 0.02


def settings(smoke: bool) -> dict[str, Any]:
    """Everything the records depend on (not the n grid or the repeat count)."""
    st = {"protocol": 1, "transfer_kw": TRANSFER_KW, "pretrain_kw": PRETRAIN_KW,
          "folds": CV_FOLDS, "cv_budget": CV_BUDGET, "gp_restarts": GP_RESTARTS,
          "gbm_grid": GBM_GRID, "rf_grid": RF_GRID, "rf_trees": RF_TREES,
          "mi_fraction_dropped": 0.3,
          "source_ladder": list(SOURCE_LADDER), "source_check_rows": 1000,
          "source_fit_goal": 1.5, "synthetic_pool": 200, "synthetic_test": 1000,
          "candidates": 1_000_000, "smoke": smoke}
    if smoke:
        st.update(transfer_kw=dict(TRANSFER_KW, max_epochs=15, patience=5),
                  pretrain_kw=dict(PRETRAIN_KW, max_epochs=30, patience=10), gp_restarts=2,
                  gbm_grid={"max_depth": [2, 4], "n_estimators": [25, 100]}, rf_trees=50,
                  source_ladder=[200, 400], source_check_rows=200, candidates=20_000,
                  synthetic_test=200)
    return st


def _pretrain(x, y, st: dict[str, Any]):
    from sbmlhybrid.media.estimator import TransferMLPRegressor

    return TransferMLPRegressor(random_state=0, **st["pretrain_kw"]).pretrain(x, y)


def prepare_real(root: Path, st: dict[str, Any]) -> None:
    """Pretrain on the Borkowski table once (saved as ``source_real.zip``)."""
    path = root / "source_real.zip"
    if path.exists():
        return
    from _common import SHARED

    from sbmlhybrid.media.datasets import load_cfps_pair
    from sbmlhybrid.media.modelfile import save_model

    c0 = time.process_time()
    xs, ys, _, _ = load_cfps_pair(SHARED)
    save_model(_pretrain(xs, ys, st), path)
    print(f"pretrained the real source model ({time.process_time() - c0:.0f} CPU-s)",
          flush=True)


def source_check(model, bench, n: int) -> dict[str, float]:
    """Pretrained model vs n fresh source-line formulations (titer, %): its MAPE against the
    measured and the noise-free titer, the noise floor and ratio = measured / floor."""
    x, y = bench.sample(n, bench.source_line, np.random.default_rng((4, 0)))
    clean = bench.outcomes(x.to_numpy(), bench.source_line)[:, 0]
    pred = np.exp(model.predict(x))
    out = {"n": n, "mape_vs_measured": float(100 * np.mean(np.abs(pred - y[:, 0]) / y[:, 0])),
           "mape_vs_noise_free": float(100 * np.mean(np.abs(pred - clean) / clean)),
           "noise_floor_mape": float(100 * np.mean(np.abs(y[:, 0] - clean) / y[:, 0]))}
    return out | {"ratio": out["mape_vs_measured"] / out["noise_floor_mape"]}


def prepare_synthetic(root: Path, st: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """Walk the source ladder (pretrain, save, check) until the fit is within the goal.

    Returns (chosen source rows, the checks); every step is a file, so it resumes too.
    """
    from _media_records import write_record
    from _media_studies import synthetic_source

    from sbmlhybrid.media.modelfile import save_model
    from sbmlhybrid.media.synthetic import SyntheticMediumBenchmark

    bench, checks = None, []
    for rows in st["source_ladder"]:
        model_path = root / "synthetic_source" / f"rows{rows}.zip"
        check_path = model_path.with_suffix(".json")
        if not check_path.exists():
            bench = bench or SyntheticMediumBenchmark(seed=0)
            c0 = time.process_time()
            xs, ys = synthetic_source(bench, rows)
            model = _pretrain(xs, np.log(ys[:, 0]), st)
            save_model(model, model_path)
            rec = source_check(model, bench, st["source_check_rows"]) | {
                "source_rows": rows, "cpu_s": time.process_time() - c0}
            write_record(check_path, rec)
            print(f"synthetic source {rows} rows: MAPE {rec['mape_vs_measured']:.1f} % vs "
                  f"noise floor {rec['noise_floor_mape']:.1f} % ({rec['cpu_s']:.0f} CPU-s)",
                  flush=True)
        checks.append(read_record(check_path))
        if checks[-1]["ratio"] <= st["source_fit_goal"]:
            break
    return checks[-1]["source_rows"], checks


def _est(study: str, n: int, st: dict[str, Any], measured: dict[tuple[str, int], float]
         ) -> tuple[float, int]:
    """(estimated CPU seconds, fits) of one record."""
    folds = st["folds"] if study == "real" else 1
    fits = folds * (sum(NET_TRAININGS.values()) + st["gp_restarts"] + 1 + 2 * (CV_BUDGET + 1)
                    + 1)
    if (study, n) in measured:
        return measured[(study, n)], fits
    scale = st["transfer_kw"]["max_epochs"] / TRANSFER_KW["max_epochs"]
    dims = 14 if study == "real" else 24  # GP hyper-parameters: d + 2
    gp = COST_S["gp"](n) * (st["gp_restarts"] + 1) / (GP_RESTARTS + 1) * (dims + 2) / 16
    grids = COST_S["grids"](n) * st["rf_trees"] / RF_TREES
    per_fold = COST_S["nets"](n) * scale + gp + grids + COST_S["pooled"](n)
    return folds * per_fold + (0 if study == "real" else 1.5), fits


def _measured(root: Path) -> dict[tuple[str, int], float]:
    """Median CPU seconds of the existing records per (study, n)."""
    cpu: dict[tuple[str, int], list[float]] = {}
    for p in root.glob("*/n*/rep*.json"):
        rec = read_record(p)
        cpu.setdefault((rec["study"], rec["n"]), []).append(rec["cpu_s"])
    return {k: float(np.median(v)) for k, v in cpu.items()}


def build_tasks(root: Path, st: dict[str, Any], studies: list[str], repeats: int,
                ns: dict[str, tuple[int, ...]], rows: int | None) -> list[Task]:
    """One Task per (study, n, repeat); records live at root/study/nNNN/repRR.json."""
    measured = _measured(root)
    tasks = []
    for study in studies:
        for n in ns[study]:
            est, fits = _est(study, n, st, measured)
            for rep in range(repeats):
                path = root / study / f"n{n:03d}" / f"rep{rep:02d}.json"
                if study == "real":
                    args: tuple = ("real", str(root), st, n, rep)
                else:
                    args = ("syn", str(root), st, int(study[-2:]) / 10, rows, n, rep)
                tasks.append(Task(path, f"{study} n={n} rep {rep}", args, est, fits, study))
    return tasks


def run_one(args: tuple) -> dict[str, Any]:
    """Worker entry: one record (stamped with settings key, commit, times, loads)."""
    from _media_records import settings_key
    from _media_studies import real_record, synthetic_record

    warnings.filterwarnings("ignore")
    logging.getLogger("sbmlhybrid.media").setLevel(logging.ERROR)
    t0, c0, l0 = time.perf_counter(), time.process_time(), load1()
    kind, root, st, *rest = args
    rec = real_record(root, st, *rest) if kind == "real" else synthetic_record(root, st, *rest)
    return stamp(rec, settings_key(st), t0, c0, l0)


def _describe(rec: dict[str, Any]) -> str:
    m = rec["metrics"]
    keys = ("lp-ft", "staged", "full", "scratch", "gp", "gbm", "rf")
    return "RMSE " + " ".join(f"{k} {m[k]['rmse']:.3g}" for k in keys if k in m)


def candidate_speed(root: Path, rows: int, n: int) -> dict[str, Any]:
    """Generate and score n candidates with the chosen synthetic source model (CPU time is
    what one free core needs; wall time undercounts on a shared machine). Stored once a
    measurement started at a 1-minute load <= 2 (a loaded one is taken again next run)."""
    from _media_records import write_record
    from _media_studies import _load_model

    from sbmlhybrid.media.candidates import SearchSpace, generate_candidates, score_candidates
    from sbmlhybrid.media.synthetic import SyntheticMediumBenchmark

    path = root / "candidate_scoring.json"
    stored = read_record(path) if path.exists() else None
    if stored is not None and stored.get("load1_before", 99.0) <= 2.0:
        return stored
    one_thread()
    bench = SyntheticMediumBenchmark(seed=0)
    model = _load_model(root / "synthetic_source" / f"rows{rows}.zip")
    space = SearchSpace.from_table(bench.search_space())
    xs, ys = bench.sample(200, bench.source_line, np.random.default_rng(5))
    top = xs.to_numpy()[np.argsort(-ys[:, 0])[:20]]
    rng = np.random.default_rng(0)
    load_before = load1()
    t0, c0 = time.perf_counter(), time.process_time()
    cands = generate_candidates(space, n, rng, top=top)
    mean, std = score_candidates(model, cands, space.components)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rec = {"n_candidates": int(len(cands)), "seconds_total": wall, "cpu_seconds_total": cpu,
           "candidates_per_s": len(cands) / wall, "candidates_per_cpu_s": len(cands) / cpu,
           "finite": bool(np.isfinite(mean).all() and np.isfinite(std).all()),
           "load1_before": load_before, "load1": load1()}
    write_record(path, rec)
    return rec


def report(root: Path, st: dict[str, Any], tasks: list[Task], extra: dict[str, Any],
           out: Path) -> bool:
    """Write the JSON from the records when every task's record exists; False otherwise."""
    from _media_summary import headline, summarise_real, summarise_synthetic

    flat = complete_records(tasks)
    if flat is None:
        return False
    recs: dict[str, list[dict[str, Any]]] = {}
    for t, r in zip(tasks, flat):
        recs.setdefault(t.group, []).append(r)
    studies: dict[str, Any] = {}
    if "real" in recs:
        studies["real"] = summarise_real(recs["real"])
    for s in (s for s in recs if s.startswith("synthetic")):
        studies[s] = summarise_synthetic(recs[s])
    result = {
        **headline(studies.get("real"), studies.get("synthetic_rho09"),
                   extra.get("synthetic_source_check")),
        "commit": git_commit(), "command": command_line(), "settings": st,
        "repeats": extra["repeats"], "n_targets": extra["ns"],
        **records_summary(flat),
        **{k: v for k, v in extra.items() if k not in ("repeats", "ns")},
        "studies": studies,
    }
    write_json(str(out), result)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(ap, SMOKE_DIR)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--studies", default=",".join(STUDIES))
    args = ap.parse_args(argv)
    studies = [s.strip() for s in args.studies.split(",") if s.strip()]
    if set(studies) - set(STUDIES):
        ap.error(f"unknown studies {sorted(set(studies) - set(STUDIES))}; choose from {STUDIES}")
    st = settings(args.smoke)
    root, out = output_paths(args, NAME, SMOKE_DIR, RESULTS)
    repeats = 2 if args.smoke else args.repeats
    ns = {s: ((10, 50) if s == "real" else (200,)) if args.smoke else
          (N_REAL if s == "real" else N_SYN) for s in studies}
    if args.smoke:
        studies = [s for s in studies if s in ("real", "synthetic_rho09")]
    check_settings(root, st)
    one_thread()
    extra: dict[str, Any] = {"repeats": repeats, "ns": {s: list(ns[s]) for s in studies}}
    synthetic = any(s.startswith("synthetic") for s in studies)
    print_plan(build_tasks(root, st, studies, repeats, ns, None), args.workers,
               f"{NAME} ({root})")
    if synthetic:
        todo = [r for r in st["source_ladder"]
                if not (root / "synthetic_source" / f"rows{r}.json").exists()]
        print(f"  + synthetic source ladder {todo}: at most {sum(todo)} rows simulated and "
              f"pretrained, ~{LADDER_S_PER_ROW * sum(todo):.0f} CPU-s (stops at the first "
              f"within {st['source_fit_goal']}x of the noise floor)", flush=True)
    if args.plan_only:
        return 0
    rows = None
    if "real" in studies:
        prepare_real(root, st)
    if synthetic:
        rows, checks = prepare_synthetic(root, st)
        extra |= {"synthetic_source_ladder": checks, "synthetic_source_check": checks[-1],
                  "candidate_scoring": candidate_speed(root, rows, st["candidates"])}
        extra["candidates_per_s"] = extra["candidate_scoring"]["candidates_per_s"]
    tasks = build_tasks(root, st, studies, repeats, ns, rows)
    failed = [] if args.report_only else run_tasks(tasks, run_one, args.workers, _describe)
    ok = report(root, st, tasks, extra, out)
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
