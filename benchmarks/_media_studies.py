"""One record of ``media_transfer.py``: every method on one (study, n, repeat).

Hand-written. Two studies:

* ``real``: repeated grouped K-fold CV on the METIS target (240 rows, 203 distinct
  formulations: replicates of a formulation share a fold). Per repeat the formulations are
  dealt into K folds at random; for fold k the test set is fold k and the training set the
  first n rows of a random permutation of the other folds (nested in n). Every row is
  predicted once per repeat, so each record holds out-of-fold predictions of all 240 rows per
  method (raw yield).
* ``synthetic_rhoXX``: the CHO medium generator (``SyntheticMediumBenchmark``); per repeat a
  fresh 200-row target pool (first n rows used), a fixed 1,000-row test set per rho; models see
  log(titer), metrics are on g/L; the record holds per-method metrics.

Every method sees the same rows with the same seed: the nets (``NET_METHODS``: the six
strategies, LP-FT with the source-hurts guard, LP-FT on the MI-selected 70 % of the inputs)
and the tuned baselines of ``_media_baselines``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _media_baselines import BaselineFit, fit_baselines

from sbmlhybrid.media.estimator import TransferMLPRegressor
from sbmlhybrid.media.metrics import Z90, regression_report

NET_METHODS = ("head", "lp-ft", "staged", "full", "surgical", "scratch", "lpft_guarded",
               "lpft_mi")
#: trainings per net fit (the staged/surgical depth CV runs and the guard's two CV runs count)
NET_TRAININGS = {"head": 1, "lp-ft": 1, "staged": 4, "full": 1, "surgical": 5, "scratch": 1,
                 "lpft_guarded": 3, "lpft_mi": 1}
_CTX: dict[str, Any] = {}


def mi_keep(d: int, fraction_dropped: float = 0.3) -> int:
    """Inputs kept by MI selection: d minus round(fraction_dropped * d) (14 -> 10)."""
    return d - int(round(fraction_dropped * d))


def _net_info(est: TransferMLPRegressor) -> dict[str, Any]:
    info: dict[str, Any] = {"strategy": est.strategy_}
    for key in ("staged_depth_", "freeze_depth_", "guard_fired_", "out_of_range_fraction_"):
        if hasattr(est, key):
            v = getattr(est, key)
            info[key.rstrip("_")] = v.item() if hasattr(v, "item") else v
    if getattr(est, "selected_", None) is not None:
        info["mi_selected"] = [c for c, s in zip(est.columns_, est.selected_) if s]
    return info


def fit_nets(source: TransferMLPRegressor, x_tr: pd.DataFrame, y_tr: np.ndarray,
             x_te: pd.DataFrame, seed: int, kw: dict[str, Any],
             keep: int) -> dict[str, BaselineFit]:
    """Every net method on (x_tr, y_tr) -> predictions (mean, std) on x_te (m,), y units."""
    out = {}
    for name in NET_METHODS:
        strat = "lp-ft" if name.startswith("lpft_") else name
        extra = {"lpft_guarded": {"guard": True}, "lpft_mi": {"mi_features": keep}}.get(name, {})
        c0 = time.process_time()
        est = TransferMLPRegressor(source=source, strategy=strat, random_state=seed,
                                   **kw, **extra).fit(x_tr, y_tr)
        mean, std = est.predict(x_te, return_std=True)
        out[name] = BaselineFit(mean, std, _net_info(est), time.process_time() - c0)
    return out


def grouped_folds(x: pd.DataFrame, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold (0..k-1) of every row (n,); identical formulations share a fold.

    Formulations are dealt largest first (random order among equal replicate counts), each
    to the fold with the fewest rows so far, so the fold sizes end up within one row of
    each other when the last groups are single rows (METIS: one formulation has 20
    replicates; 3 folds of 80 rows, training pools of 160 rows, so n = 150 always fits).
    """
    groups = pd.factorize(pd.util.hash_pandas_object(x.round(9), index=False))[0]
    sizes = np.bincount(groups)
    rows = np.zeros(k, dtype=int)
    fold_of_group = np.empty(len(sizes), dtype=int)
    for g in np.lexsort((rng.permutation(len(sizes)), -sizes)):
        f = int(np.argmin(rows))
        fold_of_group[g] = f
        rows[f] += sizes[g]
    return fold_of_group[groups]


def _g(v: float) -> float:
    return float(f"{v:.6g}")


def _load_model(path: Path) -> TransferMLPRegressor:
    from sbmlhybrid.media.modelfile import load_model

    return load_model(path)


def _real_context(root: str) -> dict[str, Any]:
    key = f"real:{root}"
    if key not in _CTX:
        from _common import SHARED

        from sbmlhybrid.media.datasets import load_cfps_pair

        xs, ys, xt, yt = load_cfps_pair(SHARED)
        pooled = xs.reindex(columns=xt.columns).fillna(xt.mean()).to_numpy()  # new: target mean
        x = xt.to_numpy()
        _CTX[key] = {"x": xt, "y": yt, "lo": x.min(0), "hi": x.max(0), "pooled": (pooled, ys),
                     "source": _load_model(Path(root) / "source_real.zip")}
    return _CTX[key]


def _methods(ctx: dict[str, Any], x_tr: pd.DataFrame, y_tr: np.ndarray, x_te: pd.DataFrame,
             seed: int, st: dict[str, Any]) -> dict[str, BaselineFit]:
    nets = fit_nets(ctx["source"], x_tr, y_tr, x_te, seed, st["transfer_kw"],
                    mi_keep(x_tr.shape[1], st["mi_fraction_dropped"]))
    base = fit_baselines(x_tr.to_numpy(), y_tr, x_te.to_numpy(), ctx["lo"], ctx["hi"], seed,
                         ctx["pooled"], st["gp_restarts"], st["gbm_grid"], st["rf_trees"])
    return {**nets, **base}


def real_record(root: str, st: dict[str, Any], n: int, rep: int) -> dict[str, Any]:
    """Out-of-fold predictions of every method for one repeat of grouped K-fold CV."""
    ctx = _real_context(root)
    x, y = ctx["x"], ctx["y"]
    folds = grouped_folds(x, st["folds"], np.random.default_rng((11, rep)))
    pred: dict[str, np.ndarray] = {}
    std: dict[str, np.ndarray | None] = {}
    cpu: dict[str, float] = {}
    info: dict[str, list] = {}
    n_eff = []
    for f in range(st["folds"]):
        test = np.flatnonzero(folds == f)
        order = np.random.default_rng((12, rep, f)).permutation(np.flatnonzero(folds != f))
        train = order[:n]
        n_eff.append(len(train))
        x_tr, x_te = x.iloc[train].reset_index(drop=True), x.iloc[test].reset_index(drop=True)
        fits = _methods(ctx, x_tr, y[train], x_te, 10_000 * rep + 100 * f + n, st)
        for m, fit in fits.items():
            pred.setdefault(m, np.full(len(y), np.nan))[test] = fit.mean
            if fit.std is None:
                std[m] = None
            else:
                std.setdefault(m, np.full(len(y), np.nan))[test] = fit.std
            cpu[m] = cpu.get(m, 0.0) + fit.cpu_s
            info.setdefault(m, []).append(fit.info)
    metrics = {m: regression_report(y, p, *(_band(p, std[m]))) for m, p in pred.items()}
    return {"study": "real", "n": n, "repeat": rep, "n_effective": n_eff,
            "fold": folds.tolist(), "y": [_g(v) for v in y],
            "pred": {m: [_g(v) for v in p] for m, p in pred.items()},
            "std": {m: None if s is None else [_g(v) for v in s] for m, s in std.items()},
            "metrics": metrics, "method_cpu_s": cpu, "info": info}


def _band(mean: np.ndarray, std: np.ndarray | None) -> tuple:
    return (None, None) if std is None else (mean - Z90 * std, mean + Z90 * std)


def _synthetic_context(root: str, rho: float, rows: int, n_test: int) -> dict[str, Any]:
    key = f"syn:{root}:{rho}:{rows}"
    if key not in _CTX:
        from sbmlhybrid.media.synthetic import SyntheticMediumBenchmark

        bench = _CTX.setdefault("bench", SyntheticMediumBenchmark(seed=0))
        xs, ys = synthetic_source(bench, rows)
        line = bench.cell_line(rho, seed=1)
        x_te, y_te = bench.sample(n_test, line, np.random.default_rng((2, int(round(rho * 10)))))
        table = bench.search_space()
        _CTX[key] = {"bench": bench, "line": line, "x_te": x_te, "y_te": y_te[:, 0],
                     "lo": table["min"].to_numpy(float), "hi": table["max"].to_numpy(float),
                     "pooled": (xs.to_numpy(), np.log(ys[:, 0])),
                     "source": _load_model(Path(root) / "synthetic_source" / f"rows{rows}.zip")}
    return _CTX[key]


def synthetic_source(bench, rows: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The synthetic source table of ``rows`` formulations (seeded by the row count)."""
    return bench.sample(rows, bench.source_line, np.random.default_rng((0, rows)))


def synthetic_record(root: str, st: dict[str, Any], rho: float, rows: int, n: int,
                     rep: int) -> dict[str, Any]:
    """Every method on the first n rows of repeat ``rep``'s fresh target pool; metrics on
    the fixed test set (titer, g/L) plus the mean squared log error."""
    ctx = _synthetic_context(root, rho, rows, st["synthetic_test"])
    bench = ctx["bench"]
    x_pool, y_pool = bench.sample(st["synthetic_pool"], ctx["line"], np.random.default_rng(
        (3, int(round(rho * 10)), rep)))
    x_tr, y_tr = x_pool.iloc[:n].reset_index(drop=True), np.log(y_pool[:n, 0])
    fits = _methods(ctx, x_tr, y_tr, ctx["x_te"], 10_000 * rep + n, st)
    y_te = ctx["y_te"]
    metrics, cpu, info = {}, {}, {}
    for m, fit in fits.items():
        lo, hi = _band(fit.mean, fit.std)
        rep_ = regression_report(y_te, np.exp(fit.mean), None if lo is None else np.exp(lo),
                                 None if hi is None else np.exp(hi))
        rep_["mse"] = float(np.mean((np.exp(fit.mean) - y_te) ** 2))
        rep_["msle"] = float(np.mean((fit.mean - np.log(y_te)) ** 2))
        metrics[m], cpu[m], info[m] = rep_, fit.cpu_s, fit.info
    return {"study": f"synthetic_rho{int(round(rho * 10)):02d}", "rho": rho, "n": n,
            "repeat": rep, "source_rows": rows, "metrics": metrics, "method_cpu_s": cpu,
            "info": info}
