"""Regression and ranking metrics used by the benchmark, the notebook and the tests.

Hand-written (numpy; Spearman from scipy.stats).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

Z90 = 1.6448536269514722  # two-sided 90 % normal quantile


def mape(y: np.ndarray, pred: np.ndarray, floor_fraction: float = 0.05) -> float:
    """Mean absolute percentage error (%) of (n,) arrays.

    The denominator is max(|y|, floor_fraction * mean|y|) so that the few
    near-zero or negative yields of real data do not make it infinite.
    """
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    denom = np.maximum(np.abs(y), floor_fraction * np.mean(np.abs(y)))
    return float(100.0 * np.mean(np.abs(pred - y) / denom))


def top_recall(y: np.ndarray, pred: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the true top ``fraction`` of rows that are in the predicted top fraction."""
    k = max(1, int(round(fraction * len(y))))
    true_top = set(np.argsort(-np.asarray(y), kind="stable")[:k])
    pred_top = set(np.argsort(-np.asarray(pred), kind="stable")[:k])
    return len(true_top & pred_top) / k


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Fraction of y inside [lower, upper]."""
    y = np.asarray(y)
    return float(np.mean((y >= lower) & (y <= upper)))


def regression_report(y: np.ndarray, pred: np.ndarray, lower: np.ndarray | None = None,
                      upper: np.ndarray | None = None) -> dict[str, float | None]:
    """RMSE, MAPE (%), Spearman, top-10 % recall and 90 % interval coverage (None without
    an interval) for test outcomes y (n,) and predictions (n,)."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    rho = spearmanr(y, pred).statistic if np.std(pred) > 0 else 0.0
    return {
        "rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
        "mape": mape(y, pred),
        "spearman": float(np.nan_to_num(rho)),
        "top10_recall": top_recall(y, pred),
        "coverage90": None if lower is None else coverage(y, lower, upper),
    }
