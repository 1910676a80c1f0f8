"""Target-only baselines of the media benchmarks, tuned with the nets' CV budget.

Benchmark-only (the CLI and ``Campaign`` never use them). Reused: sklearn's
``GaussianProcessRegressor`` (ARD Matern 5/2 + constant + white noise, L-BFGS-B with random
restarts), ``GradientBoostingRegressor``, ``RandomForestRegressor``, ``GridSearchCV``.

Budget. The most tuned net strategy (``surgical``: 4 candidate frozen depths, 3-fold CV)
spends ``CV_BUDGET`` = 4 x 3 = 12 trainings on its selection before the final fit; every
baseline gets the same: GBM and the forest a 4-point grid scored by the same 3-fold CV
(12 fits, then one refit on all rows), the GP 12 marginal-likelihood optimisations (one from
the kernel's initial hyper-parameters and 11 restarts from log-uniform draws within the
bounds). BoTorch is not installed in the project's environment, so the GP is sklearn's.

Shapes/units: x (n, d) in the caller's units, scaled here to [0, 1] with the design-space
bounds ``lo``/``hi`` (d,) before the GP (length-scale bounds are in those units); trees see
the raw x. y (n,) in the caller's units; predictions come back in the same units.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.model_selection import GridSearchCV, KFold

CV_FOLDS = 3
CV_CANDIDATES = 4
CV_BUDGET = CV_FOLDS * CV_CANDIDATES
GP_RESTARTS = CV_BUDGET - 1
#: GBM (learning rate 0.05, subsample 0.8): interaction depth x boosting length
GBM_GRID: dict[str, list[Any]] = {"max_depth": [2, 4], "n_estimators": [100, 400]}
#: random forest (``RF_TREES`` trees): features per split x leaf size
RF_GRID: dict[str, list[Any]] = {"max_features": [1.0, 0.33], "min_samples_leaf": [1, 3]}
RF_TREES = 300
TARGET_ONLY = ("gp", "gbm", "rf")


@dataclass
class BaselineFit:
    """Predictions of one baseline on the test rows: mean (m,), std (m,) or None, the
    chosen settings and the CPU seconds of tuning + fitting + predicting."""

    mean: np.ndarray
    std: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)
    cpu_s: float = 0.0


def unit_scale(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(x - lo) / (hi - lo) per column; zero-range columns map to x - lo."""
    return (np.asarray(x, float) - lo) / np.where(hi > lo, hi - lo, 1.0)


def gp_regressor(d: int, seed: int, restarts: int = GP_RESTARTS) -> GaussianProcessRegressor:
    """ARD Matern-5/2 GP for inputs scaled to [0, 1]^d (length scales 1e-2..1e3), signal
    variance 1e-2..1e2 and white noise 1e-6..10 of the normalised y."""
    kernel = (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(np.ones(d), (1e-2, 1e3), nu=2.5)
              + WhiteKernel(0.1, (1e-6, 1e1)))
    return GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=restarts,
                                    random_state=seed)


def grid_search(estimator: Any, grid: dict[str, list[Any]], x: np.ndarray, y: np.ndarray,
                seed: int, folds: int = CV_FOLDS) -> tuple[Any, dict[str, Any]]:
    """Choose ``grid``'s setting by shuffled ``folds``-fold CV RMSE, refit on all rows.

    Returns (the refitted best estimator, {"params", "cv_rmse": {setting: RMSE}, "fits"}).
    """
    cv = KFold(n_splits=max(2, min(folds, len(y))), shuffle=True, random_state=seed)
    search = GridSearchCV(estimator, grid, cv=cv, scoring="neg_root_mean_squared_error",
                          refit=True, n_jobs=1, error_score="raise")
    search.fit(x, y)
    scores = {str(p): float(-s) for p, s in zip(search.cv_results_["params"],
                                                search.cv_results_["mean_test_score"])}
    n_settings = len(search.cv_results_["params"])
    return search.best_estimator_, {"params": search.best_params_, "cv_rmse": scores,
                                    "fits": n_settings * cv.get_n_splits() + 1}


def gbm(seed: int) -> GradientBoostingRegressor:
    """The GBM whose ``GBM_GRID`` settings are searched."""
    return GradientBoostingRegressor(learning_rate=0.05, subsample=0.8, random_state=seed)


def forest(seed: int, trees: int = RF_TREES) -> RandomForestRegressor:
    """The random forest whose ``RF_GRID`` settings are searched."""
    return RandomForestRegressor(n_estimators=trees, random_state=seed, n_jobs=1)


def fit_gp(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, lo: np.ndarray,
           hi: np.ndarray, seed: int, restarts: int = GP_RESTARTS) -> BaselineFit:
    """GP on unit-scaled inputs; std includes the fitted white noise."""
    c0 = time.process_time()
    gp = gp_regressor(x_tr.shape[1], seed, restarts)
    gp.fit(unit_scale(x_tr, lo, hi), y_tr)
    mean, std = gp.predict(unit_scale(x_te, lo, hi), return_std=True)
    info = {"kernel": str(gp.kernel_), "log_marginal_likelihood":
            float(gp.log_marginal_likelihood_value_), "fits": restarts + 1}
    return BaselineFit(mean, std, info, time.process_time() - c0)


def fit_gbm(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, seed: int,
            grid: dict[str, list[Any]] | None = None) -> BaselineFit:
    """Grid-tuned GBM (``grid`` default ``GBM_GRID``; no predictive std)."""
    c0 = time.process_time()
    model, info = grid_search(gbm(seed), grid or GBM_GRID, x_tr, y_tr, seed)
    return BaselineFit(model.predict(x_te), None, info, time.process_time() - c0)


def fit_rf(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, seed: int,
           trees: int = RF_TREES) -> BaselineFit:
    """Grid-tuned (``RF_GRID``) random forest; std = spread of the trees' predictions."""
    c0 = time.process_time()
    model, info = grid_search(forest(seed, trees), RF_GRID, x_tr, y_tr, seed)
    per_tree = np.stack([t.predict(x_te) for t in model.estimators_])
    return BaselineFit(per_tree.mean(0), per_tree.std(0), info, time.process_time() - c0)


def fit_pooled(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray,
               source: tuple[np.ndarray, np.ndarray], params: dict[str, Any],
               seed: int) -> BaselineFit:
    """GBM on source + target rows with a task indicator column (a transfer baseline).

    ``source`` = (x_src (n_src, d) aligned to the target columns, y_src (n_src,)); target
    components absent from the source must already be filled (e.g. with the target mean).
    ``params`` are the target-only GBM's CV choice (no second search).
    """
    c0 = time.process_time()
    xs, ys = source
    xp = np.vstack([np.c_[xs, np.zeros(len(xs))], np.c_[x_tr, np.ones(len(x_tr))]])
    model = gbm(seed).set_params(**params).fit(xp, np.r_[ys, y_tr])
    mean = model.predict(np.c_[x_te, np.ones(len(x_te))])
    return BaselineFit(mean, None, {"params": params, "fits": 1}, time.process_time() - c0)


def fit_baselines(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray, seed: int, source: tuple[np.ndarray, np.ndarray] | None = None,
                  gp_restarts: int = GP_RESTARTS, gbm_grid: dict[str, list[Any]] | None = None,
                  rf_trees: int = RF_TREES) -> dict[str, BaselineFit]:
    """Every baseline on the same rows: {"gp", "gbm", "rf"[, "pooled"]} -> BaselineFit.

    x_tr (n, d), y_tr (n,), x_te (m, d); lo/hi (d,) design-space bounds for the GP scaling;
    ``gbm_grid``/``rf_trees`` default to ``GBM_GRID``/``RF_TREES`` (smaller in smoke runs).
    """
    out = {"gp": fit_gp(x_tr, y_tr, x_te, lo, hi, seed, gp_restarts),
           "gbm": fit_gbm(x_tr, y_tr, x_te, seed, gbm_grid),
           "rf": fit_rf(x_tr, y_tr, x_te, seed, rf_trees)}
    if source is not None:
        out["pooled"] = fit_pooled(x_tr, y_tr, x_te, source, out["gbm"].info["params"], seed)
    return out
