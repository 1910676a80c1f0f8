"""Tests of the media benchmarks' building blocks: tuned baselines, paired bootstrap
intervals, grouped folds, the campaign replay's start design and batch proposals, and the
summaries built from records (``benchmarks/_media_*.py``; benchmarks/ is not a package)."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
torch.set_num_threads(1)


def _bench(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def test_gbm_grid_picks_deep_trees_for_a_four_way_interaction():
    b = _bench("_media_baselines")
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(120, 4))
    y = 8 * x[:, 0] * x[:, 1] * x[:, 2] * x[:, 3] + 0.02 * rng.normal(size=120)
    _, info = b.grid_search(b.gbm(0), b.GBM_GRID, x, y, seed=0)
    # depth-2 trees cannot represent a 4-way product; longer boosting helps at low noise
    assert info["params"] == {"max_depth": 4, "n_estimators": 400}
    assert info["fits"] == b.CV_BUDGET + 1 == 13
    assert len(info["cv_rmse"]) == b.CV_CANDIDATES


def test_forest_grid_uses_all_features_when_one_input_matters():
    b = _bench("_media_baselines")
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(120, 10))
    y = np.sin(6 * x[:, 0]) + 0.02 * rng.normal(size=120)
    _, info = b.grid_search(b.forest(0, trees=60), b.RF_GRID, x, y, seed=0)
    # a third of the features per split misses x0 at most splits (CV RMSE 0.28 vs 0.08)
    assert info["params"] == {"max_features": 1.0, "min_samples_leaf": 1}
    scores = info["cv_rmse"]
    assert scores[str({"max_features": 0.33, "min_samples_leaf": 1})] > 2 * min(scores.values())


def test_gp_ard_length_scales_and_restarts():
    b = _bench("_media_baselines")
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(40, 2))
    y = np.sin(25 * x[:, 0]) + 0.05 * rng.normal(size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = b.gp_regressor(2, 0, restarts=0).fit(x, y)
        more = b.gp_regressor(2, 0, restarts=3).fit(x, y)
        fit = b.fit_gp(x, y, x[:5], np.zeros(2), np.ones(2), seed=0, restarts=1)
    ls = more.kernel_.k1.k2.length_scale
    assert 0.07 < ls[0] < 0.14 and ls[1] > 100 * ls[0]  # x1 is irrelevant: long length scale
    assert more.log_marginal_likelihood_value_ >= one.log_marginal_likelihood_value_ - 1e-6
    assert b.GP_RESTARTS + 1 == b.CV_BUDGET and fit.info["fits"] == 2
    assert fit.std is not None and np.all(fit.std > 0) and fit.cpu_s > 0


def test_paired_ratio_exact_and_bootstrap_interval_matches_normal_theory():
    s = _bench("_media_stats")
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 2.0, size=(20, 50))
    r = s.paired_ratio(4 * base, base)  # squared errors x4: RMSE x2 on every draw
    assert r["ratio"] == pytest.approx(2.0) and r["ratio_ci95"] == pytest.approx([2.0, 2.0])
    assert r["share_repeats_a_better"] == 0.0
    v = rng.normal(size=400)
    ci = s.mean_ci(v)["ci95"]
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v))  # 0.098
    assert ci[0] == pytest.approx(v.mean() - half, abs=0.2 * half)
    assert ci[1] == pytest.approx(v.mean() + half, abs=0.2 * half)
    d = s.paired_mean_diff(np.arange(5.0), np.arange(5.0) + 1)
    assert d["diff"] == -1 and d["diff_ci95"] == [-1.0, -1.0] and d["share_a_lower"] == 1


def test_two_way_bootstrap_widens_with_repeat_and_row_spread():
    s = _bench("_media_stats")
    rng = np.random.default_rng(2)
    rows = rng.gamma(2.0, size=(1, 80))  # row difficulty shared by both methods
    a = rows * rng.uniform(0.8, 1.2, size=(20, 80))
    b = rows * rng.uniform(0.9, 1.3, size=(20, 80))
    r = s.paired_ratio(a, b)
    lo, hi = r["ratio_ci95"]
    assert lo < r["ratio"] < hi < 1.0  # a is better (means 1.0 vs 1.1): sqrt(1/1.1) = 0.95
    assert r["ratio"] == pytest.approx(np.sqrt(a.mean() / b.mean()))
    one = s.paired_ratio(a[:, :1], b[:, :1])  # one row: only repeats resampled
    assert one["ratio_ci95"][1] - one["ratio_ci95"][0] > hi - lo


def test_grouped_folds_keep_replicates_together():
    st = _bench("_media_studies")
    x = pd.DataFrame({"a": [1, 1, 2, 3, 3, 3, 4, 5, 6, 7], "b": [0] * 10}, dtype=float)
    folds = st.grouped_folds(x, 3, np.random.default_rng(0))
    assert folds.shape == (10,) and set(folds) == {0, 1, 2}
    assert folds[0] == folds[1] and folds[3] == folds[4] == folds[5]
    assert sorted(np.bincount(folds)) == [3, 3, 4]  # the triplicate first, then singles
    other = st.grouped_folds(x, 3, np.random.default_rng(1))
    assert not np.array_equal(folds, other)  # the deal is random
    assert st.mi_keep(14) == 10 and st.mi_keep(10) == 7


def test_lhs_start_picks_distinct_nearest_pool_rows():
    rp = _bench("_media_replay")
    from sbmlhybrid.media.candidates import latin_hypercube

    d, n = 5, 12
    lhs = latin_hypercube(rp.unit_space(d), n, np.random.default_rng(7))
    far = np.random.default_rng(8).uniform(size=(40, d)) * 0.02 + 0.99  # a corner cluster
    pool = np.vstack([far[:20], lhs + 1e-4, far[20:]])
    picked = rp.lhs_pool_start(pool, n, np.random.default_rng(7))
    assert picked.tolist() == list(range(20, 20 + n))  # each LHS point's own row, in order
    dup = np.repeat(lhs[:1], 30, axis=0)  # all rows equal: still n distinct indices
    assert len(set(rp.lhs_pool_start(dup, n, np.random.default_rng(0)))) == n
    with pytest.raises(ValueError, match="distinct"):
        rp.lhs_pool_start(pool[:5], n, np.random.default_rng(0))


def test_top_set_merged_pool_and_censoring():
    rp = _bench("_media_replay")
    y = np.arange(100.0)
    assert rp.top_set(y, 0.05).tolist() == [95, 96, 97, 98, 99]
    assert rp.top_set(np.r_[y, 99.0], 0.01).tolist() == [99, 100]  # ties at the threshold
    x = pd.DataFrame({"a": [1.0, 1.0, 2.0], "b": [0.0, 0.0, 1.0]})
    xm, ym = rp.merged_pool(x, np.array([1.0, 3.0, 5.0]))
    assert xm.shape == (2, 2) and ym.tolist() == [2.0, 5.0]
    rounds = [{"round": 0, "picked": [1, 2]}, {"round": 1, "picked": [7, 3]}]
    assert rp._first_hit(rounds, np.array([3]), 6) == 1
    assert rp._first_hit(rounds, np.array([9]), 6) == 7


def test_replay_proposes_disjoint_diverse_batches_and_finds_the_peak():
    rp = _bench("_media_replay")
    rng = np.random.default_rng(0)
    z = rng.uniform(size=(150, 3))
    y = np.exp(-8 * ((z - 0.7) ** 2).sum(1))  # one smooth peak
    x = pd.DataFrame(z, columns=["a", "b", "c"])
    ctx = {"x": x, "y": y, "z": z, "space": rp.unit_space(3), "top5": rp.top_set(y, 0.05),
           "top1": rp.top_set(y, 0.01), "source": None}
    st = {"start": 8, "batch": 8, "rounds": 3, "min_distance": 0.15, "gp_restarts": 1,
          "transfer_kw": {"max_epochs": 20, "patience": 5, "n_members": 3}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp = rp.replay("gp_ei", 0, ctx, st)
        rnd = rp.replay("random", 0, ctx, st)
        ens = rp.replay("ensemble", 0, ctx, st)
    picks = np.concatenate([q["picked"] for q in gp["rounds"]])
    assert len(picks) == len(set(picks)) == 8 + 3 * 8 == gp["n_measured"]
    assert gp["rounds"][0]["picked"] == rnd["rounds"][0]["picked"]  # shared start design
    batch = z[gp["rounds"][1]["picked"]]
    dist = np.sqrt(((batch[:, None] - batch[None]) ** 2).mean(-1))[np.triu_indices(8, 1)]
    assert dist.min() >= 0.15
    assert gp["best_by_round"] == sorted(gp["best_by_round"])
    ens_picks = np.concatenate([q["picked"] for q in ens["rounds"]])
    assert len(set(ens_picks)) == 32 and len(ens["rounds"][1]["std"]) == 8
    assert gp["rounds_to_top1"] <= 3 and gp["best_by_round"][-1] > 0.95 * y.max()


def _fake_real_records(n_rep: int = 3) -> list[dict]:
    """Records as ``real_record`` writes them: lp-ft errors half of the GBM's, the GBM the
    best baseline (GP x1.5, forest x1.2 of its errors)."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=30)
    scale = {"lp-ft": 0.5, "staged": 0.6, "full": 0.8, "lpft_mi": 0.55, "head": 1.0,
             "surgical": 0.7, "scratch": 1.1, "lpft_guarded": 0.5, "gp": 1.5, "gbm": 1.0,
             "rf": 1.2, "pooled": 0.9}
    recs = []
    for rep in range(n_rep):
        e = rng.normal(size=30)
        pred = {m: (y + s * e).tolist() for m, s in scale.items()}
        metrics = {m: {"rmse": 0.0, "spearman": 0.5, "top10_recall": 0.3, "coverage90": None}
                   for m in scale}
        info = {m: [{}] for m in scale}
        info["lpft_guarded"] = [{"guard_fired": False}]
        info["staged"], info["surgical"] = [{"staged_depth": 2}], [{"freeze_depth": 1}]
        info["gbm"] = [{"params": {"max_depth": 2}}]
        info["rf"] = [{"params": {"max_features": 1.0}}]
        info["lpft_mi"] = [{"mi_selected": ["a", "b"]}]
        recs.append({"n": 50, "repeat": rep, "y": y.tolist(), "pred": pred, "metrics": metrics,
                     "info": info, "n_effective": [50], "method_cpu_s": {m: 1.0 for m in scale}})
    return recs


def test_summary_and_headline_from_records():
    sm = _bench("_media_summary")
    real = sm.summarise_real(_fake_real_records())
    assert real["best_baseline"] == {"50": "gbm"}
    v = real["vs_best_baseline"]["lp-ft"]["50"]
    assert v["ratio"] == pytest.approx(0.5) and v["ratio_ci95"] == pytest.approx([0.5, 0.5])
    assert real["pairs"]["50"]["staged_vs_full"]["ratio"] == pytest.approx(0.75)
    assert real["method_cpu_s"]["gp"] == 3.0
    head = sm.headline(real, None, {"ratio": 1.4})
    assert head["lpft_vs_best_baseline_rmse_ratio_real_n50"] == pytest.approx(0.5)
    assert head["staged_vs_full_rmse_ratio_real_n50"] == pytest.approx(0.75)
    assert head["mi_rmse_ratio_real_n50"] == pytest.approx(1.1)
    assert head["best_baseline_real_n50"] == "gbm" and head["mi_inputs_kept_of_14"] == [2]
    assert head["goal_lpft_beats_best_baseline_real_n_le_50"] is True
    assert head["source_fit_over_noise_floor"] == 1.4
    assert head["goal_source_fit_within_1_5x_noise_floor"] is True
    assert "pooled" in head["methods_beating_best_baseline_real_by_n"]["50"]
