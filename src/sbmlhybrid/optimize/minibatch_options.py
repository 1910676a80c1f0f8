"""Settings of the mini-batch optimizers (`MiniBatchOptions`), checked on construction.

Hand-written (see `sbmlhybrid.optimize.minibatch` for the algorithm they configure).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sbmlhybrid.errors import InputError
from sbmlhybrid.objective.model_objective import DEFAULT_THREADS
from sbmlhybrid.optimize.minibatch_rules import METHODS, SCHEDULES, default_learning_rates

__all__ = ["FULLBATCH_OPTIMIZERS", "TRACE_COLUMNS", "MiniBatchOptions"]

TRACE_COLUMNS = ("epoch", "iterations", "work", "work_forward", "wall_s", "fval", "grad_norm",
                 "learning_rate")
FULLBATCH_OPTIMIZERS = ("fides", "lbfgsb")


@dataclass
class MiniBatchOptions:
    """Settings of a mini-batch optimizer.

    Attributes:
        method: Update rule, one of `METHODS` (see `minibatch_rules`).
        batch_size: Conditions per batch (capped at the number of conditions).
        epochs: Maximum number of epochs (passes over all conditions).
        max_steps: Maximum number of batch updates (None: epochs x batches per epoch). The
            learning-rate schedule runs over the steps of the run, so a budget in steps is
            the same whatever the number of conditions.
        learning_rate: Start rate (default per method: `default_learning_rates`).
        learning_rate_end: Rate of the last epoch (default: per method, or `learning_rate`
            when that is given and no schedule is).
        schedule: One of `SCHEDULES` (default per method, "constant" with an explicit rate).
        seed: Seed of the shuffling (combined with the start id).
        max_time: Wall-time limit in seconds.
        full_eval_every: Evaluate the full objective at the start and every this many
            epochs; 0: only at the end (none at all with `polish`, whose first evaluation is
            the full objective at the mini-batch end point).
        full_gradient: Also compute the full gradient there (needed for `gtol` and for the
            result's `grad`; without it the evaluation is a cheap forward simulation).
        gtol: Stop when the full gradient norm is below this.
        ftol: Stop when the best full objective improved by less than ftol * max(1, |f|)
            over the last `patience` full evaluations (0: off).
        patience: See `ftol`.
        line_search_steps: Parabolic line-search steps on the batch cost (0: off).
        n_threads: AMICI threads for the conditions of a batch.
        relax_factor: Tolerance relaxation per retry of a failed condition.
        max_relaxations: Retries of a failed condition.
        step_shrink: Factor applied to an undone step.
        max_failures: Failures in a row before the rule's state is reset.
        restart_step_factor: Step factor after a reset (grows by `step_growth` per success).
        step_growth: Growth of the step factor per successful batch after a reset.
        polish: Full-batch optimizer run from the mini-batch end point ("fides", "lbfgsb";
            None: no polish). The result is then the polished full-objective optimum.
        polish_max_iter: Iteration limit of the polish.
    """

    method: str = "adam"
    batch_size: int = 8
    epochs: int = 50
    max_steps: int | None = None
    learning_rate: float | None = None
    learning_rate_end: float | None = None
    schedule: str | None = None
    seed: int = 0
    max_time: float = np.inf
    full_eval_every: int = 1
    full_gradient: bool = True
    gtol: float = 0.0
    ftol: float = 0.0
    patience: int = 3
    line_search_steps: int = 0
    n_threads: int = DEFAULT_THREADS
    relax_factor: float = 100.0
    max_relaxations: int = 6
    step_shrink: float = 0.2
    max_failures: int = 10
    restart_step_factor: float = 0.01
    step_growth: float = 1.3
    polish: str | None = None
    polish_max_iter: int = 50

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown mini-batch method {self.method!r}; choose from {METHODS}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}; choose from {SCHEDULES}")
        for name in ("batch_size", "epochs", "patience", "max_failures", "n_threads",
                     "polish_max_iter"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.full_eval_every < 0:
            raise InputError(f"full_eval_every must be >= 0, got {self.full_eval_every}")
        for name in ("learning_rate", "learning_rate_end"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise InputError(f"{name} must be a positive number, got {value}")
        if not 0 < self.step_shrink < 1:
            raise InputError("step_shrink must be in (0, 1)")
        if self.polish is not None and self.polish not in FULLBATCH_OPTIMIZERS:
            raise InputError(f"unknown polish optimizer {self.polish!r}; choose from "
                             f"{FULLBATCH_OPTIMIZERS}")

    def rates(self) -> tuple[float, float, str]:
        """(start rate, end rate, schedule) after filling in the per-method defaults."""
        start, end, schedule = default_learning_rates(self.method)
        if self.learning_rate is not None:
            start = self.learning_rate
            if self.schedule is None and self.learning_rate_end is None:
                return start, start, "constant"
        if self.learning_rate_end is not None:
            end = self.learning_rate_end
        return start, end, self.schedule or schedule
