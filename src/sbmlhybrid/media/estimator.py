"""sklearn-compatible transfer-learned deep-ensemble MLP for culture-medium data.

Hand-written: the estimator, the column mapping between source and target
tables, the source-hurts guard and the uncertainty calibration; the transfer
strategies themselves (head, lp-ft, staged, full, surgical, scratch) live in
``strategies``. Reused: sklearn ``BaseEstimator``/``RegressorMixin``
(get_params/clone/score), ``mutual_info_regression`` (feature selection), torch
(see ``nets``). Saving and loading: ``modelfile``.

Data flow, shapes and units:
    X: (n, d) component concentrations in the user's units (DataFrame: columns
       are matched by name; ndarray: by position). y: (n,) outcome, any unit.
    Inputs are Min-Max scaled with the *source* ranges (new target-only
    components with the target's ranges); y is standardised per fit.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.feature_selection import mutual_info_regression

from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.media.nets import EnsembleMLP, TrainResult, fold_masks, member_masks
from sbmlhybrid.media.strategies import (
    STRATEGIES,
    SourceSnapshot,
    StageSettings,
    canonical_strategy,
    depth_candidates,
    train_strategy,
)
from sbmlhybrid.media.tables import as_frame, check_outcome

__all__ = ["STRATEGIES", "SourceSnapshot", "TransferMLPRegressor", "canonical_strategy"]

log = logging.getLogger(__name__)


class TransferMLPRegressor(RegressorMixin, BaseEstimator):
    """Deep-ensemble MLP regressor with source pretraining and target transfer.

    ``fit(X, y)`` trains from scratch when ``source`` is None, otherwise it
    transfers from ``source`` (a pretrained TransferMLPRegressor or a
    SourceSnapshot) with ``strategy``; this makes the transfer usable inside
    sklearn pipelines, ``clone`` and ``cross_val_score``.

    Args:
        n_layers: Linear layers including the head (the seed method uses 5-20).
        width: Hidden width.
        n_members: Deep-ensemble size E (uncertainty = member spread + noise).
        activation: "silu", "relu" or "tanh".
        lr: Adam learning rate for pretraining, scratch, full and surgical.
        lr_head: Stage-1 learning rate when ``lp_solver="adam"`` (seed: 1e-4).
        lr_finetune: Stage-2 learning rate of lp-ft and staged (and of the new-component
            input rows). LP-FT fine-tunes the whole network at a rate below ``lr``; on the
            test-sized toy transfer (n = 20, 3 seeds) lp-ft's RMSE was 0.113 / 0.101 / 0.096
            at 1e-4 / 3e-4 / 1e-3 and equal within 3 % at n = 50, so 3e-4 keeps the
            smaller rate at a small cost there (not re-measured on the benchmark studies).
        lp_solver: "ridge" (closed form) or "adam".
        head_alpha: Ridge penalty of the linear probe (standardised units).
        staged_depths: "staged" strategy: hidden layers next to the head unfrozen in
            stage 2. An int is used as is; a tuple (or None: 1, 2, (L-1)//2, L-2) holds
            candidates chosen by K-fold CV on the target rows (``staged_depth_``,
            ``staged_cv_rmse_``).
        surgical_depths: Candidate numbers of frozen input-side layers (None: 0, L/3, 2L/3,
            L-1), chosen by K-fold CV (``freeze_depth_``, ``surgical_cv_rmse_``).
        cv_folds: Folds of the staged/surgical/guard cross-validation.
        max_epochs, patience, batch_size, weight_decay, val_fraction: training controls;
            every member early-stops on its own random ``val_fraction`` of the rows.
        guard: Fall back to target-only training when K-fold CV says the source hurts.
        guard_margin: Relative CV-RMSE advantage scratch needs for the guard to fire
            (0.1: scratch must be 10 % better; CV at n ~ 10 is noisy).
        mi_features: Keep the k (int) or fraction (float) of components with the
            highest mutual information with y, computed inside ``fit`` (so inside CV
            folds); the others are held at their mean. None keeps all.
        source: Pretrained model (TransferMLPRegressor after ``pretrain``, or its
            ``source_snapshot_``) used by ``fit``; None = from scratch. ``clone`` shares
            it rather than copying it, so CV folds all transfer from the same weights.
            Its architecture (layers, width, activation) overrides this estimator's.
        strategy: Strategy used by ``fit`` when ``source`` is given: "head", "lp-ft"
            (linear probe, then the whole network at ``lr_finetune``), "staged" (linear
            probe, then only the layers next to the head), "full", "surgical" or "scratch";
            see ``sbmlhybrid.media.strategies``.
        random_state: Seed of initialisation, splits and mini-batches.
    """

    def __init__(
        self, n_layers: int = 5, width: int = 24, n_members: int = 5, activation: str = "silu",
        lr: float = 1e-3, lr_head: float = 1e-4, lr_finetune: float = 3e-4,
        lp_solver: str = "ridge", head_alpha: float = 1.0,
        staged_depths: int | tuple[int, ...] | None = None,
        surgical_depths: tuple[int, ...] | None = None, cv_folds: int = 3,
        max_epochs: int = 200, patience: int = 20, batch_size: int = 256,
        weight_decay: float = 1e-4, val_fraction: float = 0.2, guard: bool = False,
        guard_margin: float = 0.1, mi_features: int | float | None = None,
        source: object | None = None, strategy: str = "lp-ft", random_state: int | None = 0,
    ) -> None:
        self.n_layers, self.width, self.n_members, self.activation = (
            n_layers, width, n_members, activation)
        self.lr, self.lr_head, self.lr_finetune = lr, lr_head, lr_finetune
        self.lp_solver, self.head_alpha, self.staged_depths = lp_solver, head_alpha, staged_depths
        self.surgical_depths, self.cv_folds = surgical_depths, cv_folds
        self.max_epochs, self.patience, self.batch_size = max_epochs, patience, batch_size
        self.weight_decay, self.val_fraction = weight_decay, val_fraction
        self.guard, self.guard_margin, self.mi_features = guard, guard_margin, mi_features
        self.source, self.strategy, self.random_state = source, strategy, random_state

    def __sklearn_clone__(self) -> TransferMLPRegressor:
        """Unfitted copy with the same parameters; ``source`` is shared, not re-cloned.

        sklearn's default clone would clone the pretrained ``source`` estimator too and
        drop its weights; the source is only read, so sharing it is safe.
        """
        from sklearn.base import clone

        params = {k: (v if k == "source" else clone(v, safe=False))
                  for k, v in self.get_params(deep=False).items()}
        return type(self)(**params)

    # ------------------------------------------------------------------ public API
    def pretrain(self, X_src, y_src) -> TransferMLPRegressor:
        """Train on the source data (n_src, d) and keep the snapshot in ``source_snapshot_``.

        Raises InputError naming any constant source column (Min-Max scaling is
        fitted here and needs a non-zero range).
        """
        df = as_frame(X_src, None, "source X")
        y = check_outcome(y_src, len(df))
        lo, hi = df.min().to_numpy(), df.max().to_numpy()
        const = [Issue("constant column: Min-Max scaling needs a non-zero range", column=c)
                 for c, a, b in zip(df.columns, lo, hi) if a == b]
        if const:
            raise InputError(const, header="Invalid source X")
        self._setup(list(map(str, df.columns)), lo, hi, df.mean().to_numpy(), n_new=0)
        self.input_columns_ = list(self.columns_)
        self._fit_scratch(df.to_numpy(), y)
        self.guard_fired_ = False
        self.source_snapshot_ = self._snapshot()
        self.strategy_ = "pretrain"
        return self

    def transfer(self, X_tgt, y_tgt, strategy: str | None = None) -> TransferMLPRegressor:
        """Transfer the pretrained snapshot (``pretrain`` or ``source``) to target data.

        Columns are matched by name: target-only components get zero-initialised
        input weights and target Min-Max ranges; source components missing in the
        target are held at the source mean. Sets ``out_of_range_fraction_`` (share
        of target entries outside the source range), ``strategy_``, ``guard_fired_``.
        """
        snap = getattr(self, "source_snapshot_", None) or self._source_snapshot()
        if snap is None:
            raise InputError(Issue("transfer() needs pretrain() first or a `source` model"))
        strat = canonical_strategy(strategy or self.strategy)
        df = as_frame(X_tgt, snap.columns, "target X")
        y = check_outcome(y_tgt, len(df))
        cols = list(map(str, df.columns))
        new = [c for c in cols if c not in snap.columns]
        missing = [c for c in snap.columns if c not in cols]
        if len(new) == len(cols):
            raise InputError(Issue(f"no target column matches a source component {snap.columns}"))
        design = snap.columns + new
        x_raw = np.empty((len(df), len(design)))
        for j, c in enumerate(design):
            x_raw[:, j] = df[c].to_numpy() if c in cols else snap.x_mean[j]
        lo = np.concatenate([snap.x_min, df[new].min().to_numpy()]) if new else snap.x_min
        hi = np.concatenate([snap.x_max, df[new].max().to_numpy()]) if new else snap.x_max
        known = [j for j, c in enumerate(snap.columns) if c in cols]
        xk = x_raw[:, known]
        out = (xk < snap.x_min[known]) | (xk > snap.x_max[known])
        self.out_of_range_fraction_ = float(out.mean()) if out.size else 0.0
        self.out_of_range_by_column_ = {snap.columns[j]: float(out[:, i].mean())
                                        for i, j in enumerate(known)}
        if self.out_of_range_fraction_ > 0:
            log.warning("%.1f %% of target entries lie outside the source range",
                        100 * self.out_of_range_fraction_)
        self.new_components_, self.missing_components_ = new, missing
        self._setup(design, lo, hi, np.r_[snap.x_mean, df[new].mean().to_numpy()], len(new))
        self.input_columns_ = cols
        self._fit_transfer(x_raw, y, strat, snap)
        return self

    def fit(self, X, y) -> TransferMLPRegressor:
        """From scratch (``source`` None) or ``transfer(X, y, self.strategy)``."""
        if self.source is None:
            df = as_frame(X, None, "X")
            yy = check_outcome(y, len(df))
            lo, hi = df.min().to_numpy(), df.max().to_numpy()
            self._setup(list(map(str, df.columns)), lo, hi, df.mean().to_numpy(), n_new=0)
            self.input_columns_ = list(self.columns_)
            self._fit_scratch(df.to_numpy(), yy)
            self.strategy_, self.guard_fired_ = "scratch", False
            return self
        return self.transfer(X, y, self.strategy)

    def predict(self, X, return_std: bool = False):
        """Ensemble-mean prediction (n,) in y units; with ``return_std`` also the
        predictive std (n,) = sqrt(member variance + calibrated noise variance)."""
        mean, std = self._predict_array(self._design(X), return_std)
        return (mean, std) if return_std else mean

    # ------------------------------------------------------------------ internals
    def _source_snapshot(self) -> SourceSnapshot | None:
        if isinstance(self.source, SourceSnapshot):
            return self.source
        return getattr(self.source, "source_snapshot_", None)

    def _setup(self, columns, lo, hi, mean, n_new: int) -> None:
        self.columns_ = list(columns)
        self.x_min_, self.x_max_ = np.asarray(lo, float), np.asarray(hi, float)
        self.x_fill_ = np.asarray(mean, float)
        self.n_features_in_ = len(columns)
        self.n_new_ = n_new
        self.history_: dict[str, TrainResult] = {}
        self._rng = np.random.default_rng(self.random_state)
        self._gen = torch.Generator().manual_seed(int(self._rng.integers(2**31)))

    def _scale(self, x_raw: np.ndarray) -> np.ndarray:
        rng = np.where(self.x_max_ > self.x_min_, self.x_max_ - self.x_min_, 1.0)
        xs = (x_raw - self.x_min_) / rng
        if getattr(self, "selected_", None) is not None:
            fill = (self.x_fill_ - self.x_min_) / rng
            xs[:, ~self.selected_] = fill[~self.selected_]
        return xs

    def _design(self, X) -> np.ndarray:
        """Raw design matrix (n, len(columns_)) in the network's column order."""
        df = as_frame(X, getattr(self, "input_columns_", self.columns_), "X")
        cols = list(map(str, df.columns))
        if not isinstance(X, pd.DataFrame) and len(cols) == len(self.input_columns_):
            df.columns = self.input_columns_
            cols = self.input_columns_
        unknown = [c for c in cols if c not in self.columns_]
        absent = [c for c in self.input_columns_ if c not in cols]
        if unknown or absent:
            issues = [Issue("column not seen during fit", column=c) for c in unknown]
            issues += [Issue("column used during fit is missing", column=c) for c in absent]
            raise InputError(issues, header="Invalid X")
        x = np.tile(self.x_fill_, (len(df), 1))
        for j, c in enumerate(self.columns_):
            if c in cols:
                x[:, j] = df[c].to_numpy()
        return x

    def _select(self, xs: np.ndarray, y: np.ndarray) -> None:
        self.selected_ = None
        if self.mi_features is None:
            return
        d = xs.shape[1]
        k = int(self.mi_features) if isinstance(self.mi_features, int | np.integer) else int(
            np.ceil(float(self.mi_features) * d))
        k = min(max(k, 1), d)
        mi = mutual_info_regression(xs, y, random_state=int(self._rng.integers(2**31)),
                                    n_neighbors=min(3, max(1, len(y) - 1)))
        self.mutual_information_ = mi
        sel = np.zeros(d, dtype=bool)
        sel[np.argsort(-mi, kind="stable")[:k]] = True
        self.selected_ = sel

    def _prep(self, x_raw: np.ndarray, y: np.ndarray, y_stats: tuple[float, float] | None):
        self.selected_ = None
        xs0 = self._scale(x_raw)
        self._select(xs0, y)
        xs = self._scale(x_raw)
        if y_stats is None:
            sd = float(np.std(y))
            y_stats = (float(np.mean(y)), sd if sd > 0 else 1.0)
        self.y_mean_, self.y_std_ = y_stats
        ys = (y - self.y_mean_) / self.y_std_
        return torch.from_numpy(xs).float(), torch.from_numpy(ys).float()

    def _new_scratch_net(self, n_members: int) -> EnsembleMLP:
        return EnsembleMLP(len(self.columns_), self.width, self.n_layers, n_members,
                           self.activation, generator=self._gen)

    def _settings(self) -> StageSettings:
        return StageSettings(self.lr, self.lr_head, self.lr_finetune, self.lp_solver,
                             self.head_alpha, self.max_epochs, self.patience,
                             self.weight_decay, self.batch_size)

    def _run(self, strat: str, x, y, tm, vm, snap: SourceSnapshot | None, depth: int = 0):
        """Train one strategy with the given (E, n) member masks; returns (net, {stage: result}).

        ``depth``: unfrozen hidden layers (staged) or frozen input-side layers (full/surgical).
        """
        if strat == "scratch" or snap is None:
            net = self._new_scratch_net(tm.shape[0])
            return net, train_strategy("scratch", net, x, y, tm, vm, self._settings(),
                                       generator=self._gen)
        net = snap.build(tm.shape[0], self.n_new_)
        rows = torch.zeros(len(self.columns_))
        rows[len(snap.columns):] = 1.0
        return net, train_strategy(strat, net, x, y, tm, vm, self._settings(), depth, rows,
                                   self._gen)

    def _cv_rmse(self, strat: str, x, y, snap, depth: int = 0) -> float:
        """K-fold CV RMSE (standardised units); fold k = member k of one run.

        Early stopping of fold k monitors fold k, so the estimate is slightly
        optimistic, equally for every compared strategy.
        """
        tm, vm = fold_masks(len(y), self.cv_folds, self._rng)
        net, _ = self._run(strat, x, y, tm, vm, snap, depth)
        with torch.no_grad():
            pred = net(x)
        oof = (pred * vm).sum(0) / vm.sum(0).clamp(min=1)
        return float(torch.sqrt(((oof - y) ** 2).mean()))

    def _finish(self, net: EnsembleMLP, x, y, vm, hist) -> None:
        """Store the final net and calibrate the noise std from out-of-bag residuals."""
        self.net_ = net
        self.history_.update(hist)
        with torch.no_grad():
            pred = net(x)
        has = vm.sum(0) > 0
        if bool(has.any()):
            oob = (pred * vm).sum(0)[has] / vm.sum(0)[has]
            resid2 = float(((oob - y[has]) ** 2).mean())
            var_m = float(pred.var(0, unbiased=False)[has].mean())
            self.noise_std_ = float(np.sqrt(max(resid2 - var_m, 0.0)))
        else:
            self.noise_std_ = float(torch.sqrt(((pred.mean(0) - y) ** 2).mean()))

    def _fit_scratch(self, x_raw: np.ndarray, y: np.ndarray) -> None:
        x, ys = self._prep(x_raw, y, None)
        tm, vm = member_masks(len(y), self.n_members, self.val_fraction, self._rng)
        net, hist = self._run("scratch", x, ys, tm, vm, None)
        self._finish(net, x, ys, vm, hist)

    def _choose_depth(self, strat: str, x, ys, snap: SourceSnapshot):
        """Depth of staged/surgical by K-fold CV over the candidates; (depth, scores | None)."""
        requested = {"staged": self.staged_depths, "surgical": self.surgical_depths}.get(strat)
        cands = depth_candidates(strat, len(snap.weights), requested)
        if len(cands) == 1:
            return cands[0], None
        scores = {k: self._cv_rmse(strat, x, ys, snap, k) for k in cands}
        return min(scores, key=scores.get), scores

    def _fit_transfer(self, x_raw, y, strat: str, snap: SourceSnapshot) -> None:
        x, ys = self._prep(x_raw, y, None)
        self.guard_fired_, self.guard_cv_rmse_ = False, {}
        depth, cv_scores = self._choose_depth(strat, x, ys, snap)
        if strat == "staged":
            self.staged_depth_, self.staged_cv_rmse_ = depth, cv_scores or {}
        if strat == "surgical":
            self.freeze_depth_, self.surgical_cv_rmse_ = depth, cv_scores or {}
        if self.guard and strat != "scratch":
            cv_t = (cv_scores[depth] if cv_scores is not None
                    else self._cv_rmse(strat, x, ys, snap, depth))
            cv_s = self._cv_rmse("scratch", x, ys, snap)
            self.guard_cv_rmse_ = {"transfer": cv_t, "scratch": cv_s}
            if cv_s < cv_t * (1.0 - self.guard_margin):
                self.guard_fired_ = True
                log.warning("guard: source hurts (CV RMSE %.3g vs scratch %.3g); "
                            "training on the target only", cv_t, cv_s)
        final = "scratch" if self.guard_fired_ else strat
        tm, vm = member_masks(len(y), self.n_members, self.val_fraction, self._rng)
        net, hist = self._run(final, x, ys, tm, vm, snap, depth)
        self.strategy_ = final
        self._finish(net, x, ys, vm, hist)

    def _snapshot(self) -> SourceSnapshot:
        return SourceSnapshot(
            columns=list(self.columns_), x_min=self.x_min_.copy(), x_max=self.x_max_.copy(),
            x_mean=self.x_fill_.copy(), y_mean=self.y_mean_, y_std=self.y_std_,
            weights=[w.detach().numpy().copy() for w in self.net_.weights],
            biases=[b.detach().numpy().copy() for b in self.net_.biases],
            activation=self.net_.activation)

    def _predict_array(self, x_raw: np.ndarray, return_std: bool = True,
                       batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray | None]:
        """Batched prediction on a raw design matrix (n, len(columns_))."""
        if not hasattr(self, "net_"):
            raise InputError(Issue("model is not fitted: call fit, pretrain or transfer first"))
        means, stds = [], []
        with torch.no_grad():
            for s in range(0, x_raw.shape[0], batch_size):
                xs = torch.from_numpy(self._scale(x_raw[s:s + batch_size])).float()
                p = self.net_.predict_fast(xs)
                means.append(p.mean(0).numpy())
                if return_std:
                    var = p.var(0, unbiased=False) + self.noise_std_ ** 2
                    stds.append(torch.sqrt(var).numpy())
        mean = np.concatenate(means) * self.y_std_ + self.y_mean_ if means else np.empty(0)
        std = (np.concatenate(stds) * self.y_std_ if stds else np.empty(0)) if return_std else None
        return mean.astype(float), (std.astype(float) if std is not None else None)
