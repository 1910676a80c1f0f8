"""Paired comparisons with bootstrap intervals for the media benchmarks.

Hand-written (numpy). Repeated cross-validation gives an error for every (repeat, row):
repeats share the rows and rows share the repeats, so neither alone is an independent sample.
``paired_ratio`` resamples both at once (the "pigeonhole" two-way bootstrap of Owen, Ann. Appl.
Stat. 2007, which is mildly conservative for crossed designs): a bootstrap replicate draws
repeats and rows with replacement and recomputes the pooled statistic of both methods on the
same draw, so the interval is of the paired ratio (or difference), not of two separate means.
With one column (N = 1) only repeats (or seeds) are resampled.
"""

from __future__ import annotations

import numpy as np

N_BOOT = 4000


def _weights(rng: np.random.Generator, size: int, n_boot: int) -> np.ndarray:
    """Bootstrap counts (n_boot, size): each row is a multinomial draw summing to size."""
    if size == 1:
        return np.ones((n_boot, 1))
    return rng.multinomial(size, np.full(size, 1.0 / size), size=n_boot).astype(float)


def _pooled(err: np.ndarray, w_rep: np.ndarray, w_row: np.ndarray) -> np.ndarray:
    """Weighted mean of err (R, N) per replicate: (B,)."""
    return np.einsum("bn,bn->b", w_rep @ err, w_row) / (err.shape[0] * err.shape[1])


def _interval(values: np.ndarray) -> list[float]:
    lo, hi = np.quantile(values, [0.025, 0.975])
    return [float(lo), float(hi)]


def paired_ratio(err_a: np.ndarray, err_b: np.ndarray, root: bool = True,
                 n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float | list[float]]:
    """Ratio and difference of pooled errors of method a vs method b, with 95 % intervals.

    Args:
        err_a, err_b: (R, N) per-repeat, per-row errors on the same rows (squared errors
            for RMSE with ``root=True``; absolute percentage errors for MAPE with
            ``root=False``); 1-D input is one column per repeat (R,) -> (R, 1).
        root: Compare sqrt(mean) (RMSE) instead of mean.
        n_boot: Bootstrap replicates. seed: Their RNG seed (fixed: same data, same interval).

    Returns:
        {"a", "b": pooled statistics, "ratio": a / b, "ratio_ci95": [lo, hi], "diff": a - b,
        "diff_ci95": [lo, hi], "share_repeats_a_better": share of repeats where a < b}.
    """
    a, b = np.asarray(err_a, float), np.asarray(err_b, float)
    if a.ndim == 1:
        a, b = a[:, None], b.reshape(-1, 1)
    if a.shape != b.shape:
        raise ValueError(f"paired errors need equal shapes, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    w_rep, w_row = _weights(rng, a.shape[0], n_boot), _weights(rng, a.shape[1], n_boot)
    f = np.sqrt if root else (lambda v: v)
    stat_a, stat_b = float(f(a.mean())), float(f(b.mean()))
    boot_a, boot_b = f(_pooled(a, w_rep, w_row)), f(_pooled(b, w_rep, w_row))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = boot_a / boot_b
    per_rep_a, per_rep_b = f(a.mean(1)), f(b.mean(1))
    return {"a": stat_a, "b": stat_b, "ratio": stat_a / stat_b if stat_b else float("nan"),
            "ratio_ci95": _interval(ratio[np.isfinite(ratio)]), "diff": stat_a - stat_b,
            "diff_ci95": _interval(boot_a - boot_b),
            "share_repeats_a_better": float(np.mean(per_rep_a < per_rep_b))}


def mean_ci(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, float | list]:
    """Mean of (S,) values (e.g. one per seed) with a percentile-bootstrap 95 % interval."""
    v = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    boot = (_weights(rng, len(v), n_boot) @ v) / len(v)
    return {"mean": float(v.mean()), "ci95": _interval(boot), "n": int(len(v))}


def paired_mean_diff(a: np.ndarray, b: np.ndarray, n_boot: int = N_BOOT,
                     seed: int = 0) -> dict[str, float | list]:
    """Mean of the paired differences a - b (S,) with a bootstrap 95 % interval, and the
    shares of pairs with a < b and a > b."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    out = mean_ci(a - b, n_boot, seed)
    return {"diff": out["mean"], "diff_ci95": out["ci95"], "n": out["n"],
            "share_a_lower": float(np.mean(a < b)), "share_a_higher": float(np.mean(a > b))}


def pooled_ci(err: np.ndarray, root: bool = True, n_boot: int = N_BOOT,
              seed: int = 0) -> dict[str, float | list[float]]:
    """Pooled statistic of one method's (R, N) or (R,) errors with the same two-way
    bootstrap 95 % interval: {"value", "ci95"} (sqrt of the mean with ``root``)."""
    e = np.asarray(err, float)
    e = e[:, None] if e.ndim == 1 else e
    rng = np.random.default_rng(seed)
    w_rep, w_row = _weights(rng, e.shape[0], n_boot), _weights(rng, e.shape[1], n_boot)
    f = np.sqrt if root else (lambda v: v)
    return {"value": float(f(e.mean())), "ci95": _interval(f(_pooled(e, w_rep, w_row)))}
