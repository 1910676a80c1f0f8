"""Mini-batch optimization of ODE models over experimental conditions, as pyPESTO optimizers.

pyPESTO has no mini-batch optimizer; everything here is hand-written after parPE's
`minibatchOptimization.h` (Stapor et al., Nat. Commun. 2022: mini-batch optimizers over
conditions reach equal or better objective values with >10x less computation). Reused:
`pypesto.optimize.Optimizer` and its decorators (history, timing, full-vector results), so the
optimizers run in `pypesto.optimize.minimize` multi-starts, in `sbmlhybrid.optimize.fit`, and
from ``sbmlhybrid fit --optimizer adam --batch-size 8 --epochs 50``; pyPESTO's AMICI objective
computes each batch (`sbmlhybrid.optimize.minibatch_eval`). Update rules and learning-rate
schedules are in `sbmlhybrid.optimize.minibatch_rules`.

Algorithm (per start):

* One sample is one experimental condition (with its pre-equilibration). Each epoch the
  conditions are reshuffled with a generator seeded by (seed, start id) and cut into batches
  of `batch_size` (the last one may be smaller). The batch objective is the mean over its
  conditions; priors enter with weight batch_size / n_conditions (see `minibatch_eval`).
* Each batch gradient gives a step from the update rule at the epoch's learning rate; the new
  point is clipped to the bounds (parameters on PEtab scale, free parameters only).
* Rescue: a failed condition is retried with tolerances relaxed x100 (up to 6 times). If the
  batch still fails, or its cost or gradient is non-finite, the previous step is undone and
  retried x1/5 shorter. After 10 failures in a row the rule's state is reset, the point goes
  back to the last point where the full objective was finite (all conditions integrate
  there; the last accepted point may fail the current batch) and steps restart at 1/100 of
  their size, growing x1.3 per successful batch. A batch that fails even there is skipped.
* Optional batch line search: up to `line_search_steps` parabolic interpolations of the
  batch cost along the step (cost only, no gradient).
* Stopping: number of epochs, wall time, or (on the full objective, evaluated every
  `full_eval_every` epochs) a gradient norm below `gtol` or a relative improvement below
  `ftol` over `patience` evaluations.
* Result: only full-objective evaluations go through ``problem.objective`` (and thus into the
  history); batch evaluations are history-free. The result's `x`/`fval`/`grad` are the best
  full evaluation, so they stay full-objective values whatever `history_beats_optimizer` is.
  Extra result fields: ``minibatch_trace`` (rows per full evaluation, columns
  `TRACE_COLUMNS`) and the rescue counters.
* Parallel batches: `n_threads` > 1 lets AMICI simulate a batch's conditions with OpenMP.
  Measured on the shared 2-core box (load ~8): Isensee, 16 conditions, 3.89 s with 2 threads
  vs 3.94 s with 1; CHO, 8 conditions, 0.60-0.65 s vs 0.55 s. No gain here, so the default is 1.
"""

from __future__ import annotations

import argparse
import time
import zlib
from dataclasses import asdict, dataclass, fields

import numpy as np
import pypesto
from pypesto.history import HistoryOptions
from pypesto.optimize import OptimizeOptions
from pypesto.optimize.optimizer import Optimizer, minimize_decorator_collection
from pypesto.result import OptimizerResult

from sbmlhybrid.errors import InputError
from sbmlhybrid.optimize.minibatch_eval import BatchEvaluator, RescueCounters
from sbmlhybrid.optimize.minibatch_rules import (
    METHODS,
    SCHEDULES,
    UpdateRule,
    default_learning_rates,
    learning_rate,
    parabolic_minimum,
)

TRACE_COLUMNS = ("epoch", "iterations", "work", "work_monitor", "wall_s", "fval", "grad_norm",
                 "learning_rate")
FULLBATCH_OPTIMIZERS = ("fides", "lbfgsb")


@dataclass
class MiniBatchOptions:
    """Settings of a mini-batch optimizer.

    Attributes:
        method: Update rule, one of `METHODS` (see `minibatch_rules`).
        batch_size: Conditions per batch (capped at the number of conditions).
        epochs: Maximum number of epochs (passes over all conditions).
        learning_rate: Start rate (default per method: `default_learning_rates`).
        learning_rate_end: Rate of the last epoch (default: per method, or `learning_rate`
            when that is given and no schedule is).
        schedule: One of `SCHEDULES` (default per method, "constant" with an explicit rate).
        seed: Seed of the shuffling (combined with the start id).
        max_time: Wall-time limit in seconds.
        full_eval_every: Evaluate the full objective every this many epochs (and at the end).
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
    """

    method: str = "adam"
    batch_size: int = 8
    epochs: int = 50
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
    n_threads: int = 1
    relax_factor: float = 100.0
    max_relaxations: int = 6
    step_shrink: float = 0.2
    max_failures: int = 10
    restart_step_factor: float = 0.01
    step_growth: float = 1.3

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown mini-batch method {self.method!r}; choose from {METHODS}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}; choose from {SCHEDULES}")
        for name in ("batch_size", "epochs", "full_eval_every", "patience", "max_failures"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1")
        if not 0 < self.step_shrink < 1:
            raise InputError("step_shrink must be in (0, 1)")

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


class MiniBatchOptimizer(Optimizer):
    """Mini-batch gradient optimizer over experimental conditions (see the module docstring).

    Args:
        options: Settings; keyword arguments override single fields.

    Example:
        >>> opt = MiniBatchOptimizer(method="rmsprop", batch_size=4, epochs=20)
        >>> result = pypesto.optimize.minimize(problem, optimizer=opt, n_starts=3)
    """

    def __init__(self, options: MiniBatchOptions | None = None, **kwargs: object):
        super().__init__()
        base = asdict(options) if options is not None else {}
        unknown = set(kwargs) - {f.name for f in fields(MiniBatchOptions)}
        if unknown:
            raise InputError(f"unknown mini-batch option(s) {sorted(unknown)}")
        self.options = MiniBatchOptions(**(base | kwargs))

    def __repr__(self) -> str:
        changed = {f.name: getattr(self.options, f.name) for f in fields(MiniBatchOptions)
                   if getattr(self.options, f.name) != f.default}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({args})"

    def is_least_squares(self) -> bool:
        """Not a least-squares optimizer."""
        return False

    def supports_maxiter(self) -> bool:
        """Epoch limit (set via `set_maxiter`)."""
        return True

    def set_maxiter(self, maxiter: int) -> None:
        """Set the maximum number of epochs."""
        self.options.epochs = int(maxiter)

    def supports_maxtime(self) -> bool:
        """Wall-time limit (set via `set_maxtime`)."""
        return True

    def set_maxtime(self, maxtime: float) -> None:
        """Set the wall-time limit in seconds."""
        self.options.max_time = float(maxtime)

    @minimize_decorator_collection
    def minimize(self, problem: pypesto.Problem, x0: np.ndarray | None = None,
                 id: str | None = None, history_options: HistoryOptions | None = None,
                 optimize_options: OptimizeOptions | None = None) -> OptimizerResult:
        """Run one mini-batch optimization from `x0` (free parameters, PEtab scale)."""
        if x0 is None:
            raise InputError("mini-batch optimizers need a start point x0")
        with BatchEvaluator(problem, self.options.relax_factor, self.options.max_relaxations,
                            self.options.n_threads) as evaluator:
            return _Run(self.options, problem, evaluator, id).run(np.asarray(x0, float))


class _Run:
    """State of one mini-batch optimization (one start)."""

    def __init__(self, opts: MiniBatchOptions, problem: pypesto.Problem,
                 evaluator: BatchEvaluator, start_id: str | None):
        self.o, self.problem, self.ev = opts, problem, evaluator
        self.lb, self.ub = np.asarray(problem.lb, float), np.asarray(problem.ub, float)
        key = zlib.crc32(str(start_id if start_id is not None else "").encode())
        self.rng = np.random.default_rng([opts.seed, key])
        self.rule = UpdateRule.create(opts.method)
        self.t0 = time.perf_counter()
        self.trace: list[list[float]] = []
        self.best: tuple[float, np.ndarray | None, np.ndarray | None] = (np.inf, None, None)
        self.n_iter = 0
        self.work_monitor = 0
        self.stats = {"n_step_shrinks": 0, "n_resets": 0, "n_skipped_batches": 0,
                      "n_line_search_evals": 0}

    def _full(self, x: np.ndarray, epoch: int, lr: float) -> tuple[float, float]:
        """Full objective (through problem.objective: recorded in the history)."""
        if self.o.full_gradient:
            fval, grad = self.problem.objective(x, sensi_orders=(0, 1))
            fval, grad = float(fval), np.asarray(grad, float)
            gnorm = float(np.linalg.norm(grad)) if np.all(np.isfinite(grad)) else np.inf
        else:
            fval, grad = float(self.problem.objective(x, sensi_orders=(0,))), None
            gnorm = np.nan
        self.work_monitor += self.ev.n_conditions
        if np.isfinite(fval) and (grad is None or np.all(np.isfinite(grad))):
            self.x_safe = x.copy()  # every condition integrates here
            if fval < self.best[0]:
                self.best = (fval, x.copy(), grad)
        self.trace.append([epoch, self.n_iter, self.ev.counters.n_simulations,
                           self.work_monitor, time.perf_counter() - self.t0, fval, gnorm, lr])
        return fval, gnorm

    def _clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.lb, self.ub)

    def _line_search(self, x: np.ndarray, idx: np.ndarray, f0: float, g: np.ndarray,
                     step: np.ndarray) -> np.ndarray:
        d0 = float(g @ step)
        alpha_total, f_cur = 1.0, f0
        for _ in range(self.o.line_search_steps):
            f1, _g = self.ev.batch(self._clip(x + alpha_total * step), idx, gradient=False)
            self.stats["n_line_search_evals"] += 1
            if not np.isfinite(f1):
                alpha_total *= self.o.step_shrink
                continue
            alpha = parabolic_minimum(f_cur, d0 * alpha_total, f1)
            if abs(alpha - 1.0) < 0.05 or (f1 < f_cur and alpha >= 1.0):
                break
            alpha_total *= alpha
        return alpha_total * step

    def _evaluate(self, x: np.ndarray, idx: np.ndarray, prev: tuple | None
                  ) -> tuple[np.ndarray, float | None, np.ndarray | None, tuple | None]:
        """Batch value at x, undoing/shrinking the previous step on failure.

        Returns (x to continue from, f, g, prev); f and g are None if the batch is skipped.
        """
        while True:
            f, g = self.ev.batch(x, idx)
            if np.isfinite(f) and np.all(np.isfinite(g)):
                return x, f, g, prev
            self.consecutive += 1
            if prev is None:  # nothing to undo: the accepted point itself fails this batch
                self.stats["n_skipped_batches"] += 1
                return x, None, None, None
            x_prev, step = prev
            if self.consecutive >= self.o.max_failures:
                self.stats["n_resets"] += 1
                self.rule.reset()
                self.factor = self.o.restart_step_factor
                self.consecutive = 0
                x, prev = self.x_safe.copy(), None
                continue
            self.stats["n_step_shrinks"] += 1
            step = step * self.o.step_shrink
            x, prev = self._clip(x_prev + step), (x_prev, step)

    def run(self, x0: np.ndarray) -> OptimizerResult:
        o, n = self.o, self.ev.n_conditions
        start, end, schedule = o.rates()
        batch_size = min(o.batch_size, n)
        x = self._clip(x0)
        self.factor, self.consecutive, self.x_safe = 1.0, 0, x.copy()
        prev: tuple | None = None
        lr = learning_rate(schedule, start, end, 0, o.epochs)
        self._full(x, 0, lr)
        exitflag, message, epoch = 0, f"finished {o.epochs} epochs", 0
        history_f = [self.best[0]]
        for epoch in range(o.epochs):
            lr = learning_rate(schedule, start, end, epoch, o.epochs)
            perm = self.rng.permutation(n)
            n_ok = 0
            for k in range(0, n, batch_size):
                if time.perf_counter() - self.t0 > o.max_time:
                    break
                idx = perm[k:k + batch_size]
                x, f, g, prev = self._evaluate(x, idx, prev)
                if f is None or g is None:
                    self.consecutive = 0
                    continue
                n_ok += 1
                self.consecutive = 0
                step = self.rule.step(g, lr) * self.factor
                self.factor = min(1.0, self.factor * o.step_growth)
                if o.line_search_steps > 0:
                    step = self._line_search(x, idx, f, g, step)
                x_new = self._clip(x + step)
                prev, x = (x, x_new - x), x_new
                self.n_iter += 1
            timeout = time.perf_counter() - self.t0 > o.max_time
            if n_ok == 0 and not timeout:
                exitflag, message = -1, f"no batch could be evaluated in epoch {epoch + 1}"
                break
            last = epoch == o.epochs - 1
            if (epoch + 1) % o.full_eval_every == 0 or last or timeout:
                fval, gnorm = self._full(x, epoch + 1, lr)
                history_f.append(self.best[0])
                if gnorm < o.gtol:
                    exitflag, message = 1, f"full gradient norm {gnorm:.3g} < gtol"
                    break
                if o.ftol > 0 and len(history_f) > o.patience:
                    old = history_f[-1 - o.patience]
                    if old - self.best[0] < o.ftol * max(1.0, abs(self.best[0])):
                        exitflag, message = 1, f"plateau over {o.patience} full evaluations"
                        break
            if timeout:
                exitflag, message = 2, f"wall time {o.max_time:g} s exceeded"
                break
        return self._result(exitflag, message, epoch + 1)

    def _result(self, exitflag: int, message: str, n_epochs: int) -> OptimizerResult:
        fval, x, grad = self.best
        if x is None:
            exitflag, message = -1, message + "; no finite full objective value"
        result = OptimizerResult(x=x, fval=fval, grad=grad, exitflag=exitflag, message=message,
                                 optimizer=f"minibatch-{self.o.method}")
        result["minibatch_trace"] = np.asarray(self.trace, dtype=float)
        result["n_epochs"] = int(n_epochs)
        result["n_iterations"] = int(self.n_iter)
        result["n_work_batches"] = int(self.ev.counters.n_simulations)
        result["n_work_monitor"] = int(self.work_monitor)
        for key, value in asdict(self.ev.counters).items():
            result[key] = int(value)
        for key, value in self.stats.items():
            result[key] = int(value)
        return result


class _Named(MiniBatchOptimizer):
    """A `MiniBatchOptimizer` with a fixed update rule."""

    METHOD = "adam"

    def __init__(self, options: MiniBatchOptions | None = None, **kwargs: object):
        super().__init__(options, **(kwargs | {"method": self.METHOD}))


class MiniBatchSGD(_Named):
    """Plain mini-batch SGD (step = -lr * g)."""

    METHOD = "sgd"


class MiniBatchVanilla(_Named):
    """Normalized-step SGD (parPE's "vanilla": the learning rate is the step length)."""

    METHOD = "vanilla"


class MiniBatchMomentum(_Named):
    """SGD with heavy-ball momentum (0.9)."""

    METHOD = "momentum"


class MiniBatchRMSProp(_Named):
    """RMSProp (decay 0.9)."""

    METHOD = "rmsprop"


class MiniBatchAdam(_Named):
    """Adam in the paper's balanced form (beta1 = beta2 = 0.9)."""

    METHOD = "adam"


class MiniBatchAdamClassic(_Named):
    """Adam in the classic form (beta1 = 0.9, beta2 = 0.999)."""

    METHOD = "adam-classic"


class MiniBatchAdadelta(_Named):
    """Adadelta (rho 0.95, eps 1e-6; learning rate 1 by default)."""

    METHOD = "adadelta"


def minibatch_optimizer(method: str, **options: object) -> MiniBatchOptimizer:
    """A mini-batch optimizer by name ("adam", "rmsprop", ...; see `METHODS`)."""
    return MiniBatchOptimizer(method=method, **options)


def counters_of(result: OptimizerResult) -> RescueCounters:
    """The rescue counters stored in a mini-batch result."""
    return RescueCounters(**{f.name: int(result.get(f.name, 0)) for f in fields(RescueCounters)})


def optimizer_from_cli(args: argparse.Namespace) -> MiniBatchOptimizer | None:
    """Optimizer for ``sbmlhybrid fit``: a mini-batch optimizer, or None for fides/lbfgsb.

    Uses ``--optimizer`` (a name from `METHODS`), ``--batch-size`` (default 8), ``--epochs``
    (default 50), ``--learning-rate`` (start rate, constant; default per method) and
    ``--seed`` (shuffling seed).
    """
    name = str(getattr(args, "optimizer", "fides")).lower()
    if name in FULLBATCH_OPTIMIZERS:
        return None
    if name not in METHODS:
        raise InputError(f"unknown optimizer {name!r}; choose from "
                         f"{FULLBATCH_OPTIMIZERS + METHODS}")
    options: dict[str, object] = {"method": name}
    for arg, field_name in (("batch_size", "batch_size"), ("epochs", "epochs"),
                            ("learning_rate", "learning_rate"), ("seed", "seed")):
        value = getattr(args, arg, None)
        if value is not None:
            options[field_name] = value
    return MiniBatchOptimizer(**options)  # type: ignore[arg-type]
