"""Summaries and acceptance fields of ``media_transfer.json``, built from the records.

Hand-written (numpy). Real study: per n the out-of-fold errors of all repeats form an (R, 240)
matrix per method; RMSE is pooled over repeats and rows, intervals come from the two-way
bootstrap of ``_media_stats.paired_ratio``. Synthetic studies: per repeat one test-set metric;
intervals resample repeats. "Best baseline" at each n is the target-only baseline (GP, GBM,
forest) with the lowest pooled RMSE on the test rows themselves, i.e. chosen after the fact:
this favours the baseline.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from _media_baselines import TARGET_ONLY
from _media_stats import mean_ci, paired_ratio, pooled_ci

#: (name, method a, method b): a / b of the pooled RMSE
PAIRS = (("staged_vs_full", "staged", "full"), ("lpft_vs_full", "lp-ft", "full"),
         ("lpft_vs_scratch", "lp-ft", "scratch"), ("lpft_vs_head", "lp-ft", "head"),
         ("surgical_vs_full", "surgical", "full"), ("mi_vs_all", "lpft_mi", "lp-ft"),
         ("guarded_vs_lpft", "lpft_guarded", "lp-ft"), ("pooled_vs_lpft", "pooled", "lp-ft"))


def _by_n(records: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: (r["n"], r["repeat"])):
        out.setdefault(r["n"], []).append(r)
    return out


def _counts(values: list[Any]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(map(str, values)).items())}


def _real_errors(recs: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Squared and absolute percentage errors (R, N) per method."""
    y = np.array([r["y"] for r in recs], float)
    denom = np.maximum(np.abs(y), 0.05 * np.mean(np.abs(y)))  # as metrics.mape
    se, ape = {}, {}
    for m in recs[0]["pred"]:
        p = np.array([r["pred"][m] for r in recs], float)
        se[m], ape[m] = (p - y) ** 2, 100.0 * np.abs(p - y) / denom
    return se, ape


def _info_summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    info = [r["info"] for r in recs]
    flat = {m: [i for r in info for i in r[m]] for m in info[0]}
    return {
        "guard_fired_fraction": float(np.mean([i["guard_fired"] for i in flat["lpft_guarded"]])),
        "staged_depth_counts": _counts([i.get("staged_depth") for i in flat["staged"]]),
        "surgical_freeze_depth_counts": _counts([i.get("freeze_depth") for i in flat["surgical"]]),
        "gbm_params_counts": _counts([i["params"] for i in flat["gbm"]]),
        "rf_params_counts": _counts([i["params"] for i in flat["rf"]]),
        "mi_selected_counts": dict(Counter(c for i in flat["lpft_mi"]
                                           for c in i.get("mi_selected", [])).most_common()),
        "mi_inputs_kept": sorted({len(i.get("mi_selected", [])) for i in flat["lpft_mi"]}),
    }


def summarise_real(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Learning curves, every method vs the best target-only baseline and vs each baseline,
    named pairs, per n; the selections the tuned methods made."""
    curves: dict[str, dict[str, Any]] = {}
    vs_best: dict[str, dict[str, Any]] = {}
    vs_base: dict[str, dict[str, Any]] = {}
    pairs: dict[str, dict[str, Any]] = {}
    best: dict[str, str] = {}
    info: dict[str, Any] = {}
    for n, recs in _by_n(records).items():
        key = str(n)
        se, ape = _real_errors(recs)
        for m in se:
            c = pooled_ci(se[m])
            curves.setdefault(m, {})[key] = {
                "rmse": c["value"], "rmse_ci95": c["ci95"], "mape": float(ape[m].mean()),
                **{k: float(np.mean([r["metrics"][m][k] for r in recs]))
                   for k in ("spearman", "top10_recall")},
                "coverage90": (None if recs[0]["metrics"][m]["coverage90"] is None else
                               float(np.mean([r["metrics"][m]["coverage90"] for r in recs])))}
        best[key] = min(TARGET_ONLY, key=lambda b: curves[b][key]["rmse"])
        for m in se:
            vs_best.setdefault(m, {})[key] = paired_ratio(se[m], se[best[key]])
            vs_base.setdefault(m, {})[key] = {b: paired_ratio(se[m], se[b]) for b in TARGET_ONLY}
        pairs[key] = {name: paired_ratio(se[a], se[b]) for name, a, b in PAIRS
                      if a in se and b in se}
        info[key] = _info_summary(recs)
        info[key]["repeats"] = len(recs)
        info[key]["n_effective"] = sorted({v for r in recs for v in r["n_effective"]})
    cpu = Counter()
    for r in records:
        cpu.update(r["method_cpu_s"])
    return {"learning_curves": curves, "best_baseline": best, "vs_best_baseline": vs_best,
            "vs_baseline": vs_base, "pairs": pairs, "selections": info,
            "method_cpu_s": dict(cpu), "records": len(records),
            "rows": len(records[0]["y"]) if records else 0}


def summarise_synthetic(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per n: metric means with intervals over repeats; paired RMSE/MAPE ratios vs the best
    target-only baseline and the named pairs (repeats resampled)."""
    curves: dict[str, dict[str, Any]] = {}
    vs_best: dict[str, dict[str, Any]] = {}
    pairs: dict[str, dict[str, Any]] = {}
    best: dict[str, str] = {}
    for n, recs in _by_n(records).items():
        key = str(n)
        mse = {m: np.array([r["metrics"][m]["mse"] for r in recs]) for m in recs[0]["metrics"]}
        ape = {m: np.array([r["metrics"][m]["mape"] for r in recs]) for m in mse}
        for m in mse:
            c, mc = pooled_ci(mse[m]), mean_ci(ape[m])
            curves.setdefault(m, {})[key] = {
                "rmse": c["value"], "rmse_ci95": c["ci95"], "mape": mc["mean"],
                "mape_ci95": mc["ci95"],
                **{k: _mean_or_none([r["metrics"][m][k] for r in recs])
                   for k in ("spearman", "top10_recall", "coverage90", "msle")}}
        best[key] = min(TARGET_ONLY, key=lambda b: curves[b][key]["rmse"])
        for m in mse:
            vs_best.setdefault(m, {})[key] = {
                "rmse": paired_ratio(mse[m], mse[best[key]]),
                "mape": paired_ratio(ape[m], ape[best[key]], root=False)}
        pairs[key] = {name: {"rmse": paired_ratio(mse[a], mse[b]),
                             "mape": paired_ratio(ape[a], ape[b], root=False)}
                      for name, a, b in PAIRS if a in mse and b in mse}
    return {"learning_curves": curves, "best_baseline": best, "vs_best_baseline": vs_best,
            "pairs": pairs, "records": len(records),
            "source_rows": sorted({r["source_rows"] for r in records}),
            "guard_fired_fraction": {str(n): float(np.mean([r["info"]["lpft_guarded"][
                "guard_fired"] for r in recs])) for n, recs in _by_n(records).items()}}


def _mean_or_none(values: list[Any]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def headline(real: dict[str, Any] | None, syn09: dict[str, Any] | None,
             source_check: dict[str, Any] | None) -> dict[str, Any]:
    """The acceptance fields of issue 16 (None where the study was not run)."""
    out: dict[str, Any] = {}
    if real is not None and "50" in real["best_baseline"]:
        v = real["vs_best_baseline"]["lp-ft"]["50"]
        out.update({"lpft_vs_best_baseline_rmse_ratio_real_n50": v["ratio"],
                    "lpft_vs_best_baseline_rmse_ratio_real_n50_ci95": v["ratio_ci95"],
                    "best_baseline_real_n50": real["best_baseline"]["50"]})
        for name, field in (("staged_vs_full", "staged_vs_full"), ("mi_vs_all", "mi")):
            p = real["pairs"]["50"][name]
            out[f"{field}_rmse_ratio_real_n50"] = p["ratio"]
            out[f"{field}_rmse_ratio_real_n50_ci95"] = p["ratio_ci95"]
        out["mi_inputs_kept_of_14"] = real["selections"]["50"]["mi_inputs_kept"]
    if real is not None:
        small = [k for k in real["best_baseline"] if int(k) <= 50]
        per_n = {k: real["vs_best_baseline"]["lp-ft"][k] for k in small}
        out["lpft_vs_best_baseline_rmse_ratio_real_by_n"] = {
            k: {"ratio": v["ratio"], "ci95": v["ratio_ci95"]}
            for k, v in real["vs_best_baseline"]["lp-ft"].items()}
        out["goal_lpft_beats_best_baseline_real_n_le_50"] = bool(small) and all(
            v["ratio_ci95"][1] < 1.0 for v in per_n.values())
        out["methods_beating_best_baseline_real_by_n"] = {
            k: [m for m, by_n in real["vs_best_baseline"].items() if m not in TARGET_ONLY
                and by_n[k]["ratio_ci95"][1] < 1.0] for k in real["best_baseline"]}
    if syn09 is not None and "200" in syn09["best_baseline"]:
        c = syn09["learning_curves"]["lp-ft"]["200"]
        p = syn09["pairs"]["200"]["staged_vs_full"]
        out.update({"lpft_mape_n200_synthetic_rho09": c["mape"],
                    "lpft_mape_n200_synthetic_rho09_ci95": c["mape_ci95"],
                    "staged_vs_full_rmse_ratio_synthetic_rho09_n200": p["rmse"]["ratio"],
                    "staged_vs_full_rmse_ratio_synthetic_rho09_n200_ci95":
                        p["rmse"]["ratio_ci95"],
                    "goal_lpft_mape_lt_15_synthetic_rho09_n200": bool(c["mape"] < 15.0)})
    if source_check is not None:
        out["source_fit_over_noise_floor"] = source_check["ratio"]
        out["goal_source_fit_within_1_5x_noise_floor"] = bool(source_check["ratio"] <= 1.5)
    return out

