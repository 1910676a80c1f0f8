"""One start of a mini-batch optimization: epochs of batch steps, rescue, monitoring, polish.

Private to `sbmlhybrid.optimize.minibatch` (which documents the algorithm). The polish runs the
*undecorated* `minimize` of a pyPESTO full-batch optimizer (``type(opt).minimize.__wrapped__``,
set by `functools.wraps` in pyPESTO's decorator stack): the decorated one would open a second
history and fix-parameter wrapper inside the mini-batch optimizer's own. It runs on the full
objective through the run's own `BatchEvaluator` (`sbmlhybrid.optimize.rescued`), with the
batches' rescue, and records into the run's history.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import asdict

import numpy as np
import pypesto
from pypesto.result import OptimizerResult

from sbmlhybrid.objective.work import WorkCount, work_counter_of
from sbmlhybrid.optimize.fullbatch import make_optimizer
from sbmlhybrid.optimize.minibatch_eval import BatchEvaluator
from sbmlhybrid.optimize.minibatch_options import MiniBatchOptions
from sbmlhybrid.optimize.minibatch_rules import UpdateRule, learning_rate, parabolic_minimum
from sbmlhybrid.optimize.rescued import rescued_problem


class MiniBatchRun:
    """State of one mini-batch optimization (one start)."""

    def __init__(self, opts: MiniBatchOptions, problem: pypesto.Problem,
                 evaluator: BatchEvaluator, start_id: str | None, history_options=None,
                 optimize_options=None):
        self.o, self.problem, self.ev = opts, problem, evaluator
        self.lb, self.ub = np.asarray(problem.lb, float), np.asarray(problem.ub, float)
        key = zlib.crc32(str(start_id if start_id is not None else "").encode())
        self.rng = np.random.default_rng([opts.seed, key])
        self.rule = UpdateRule.create(opts.method)
        self.t0 = time.perf_counter()
        self.trace: list[list[float]] = []
        self.best: tuple[float, np.ndarray | None, np.ndarray | None] = (np.inf, None, None)
        self.n_iter = 0
        self.counter = work_counter_of(problem.objective)
        self.work0 = self.counter.snapshot() if self.counter else WorkCount()
        self.start_id, self.history_options = start_id, history_options
        self.optimize_options = optimize_options
        self.stats = {"n_step_shrinks": 0, "n_resets": 0, "n_skipped_batches": 0,
                      "n_line_search_evals": 0}

    def _work(self) -> WorkCount:
        return self.counter.snapshot() - self.work0 if self.counter else WorkCount()

    def _record(self, epoch: int, fval: float, gnorm: float, lr: float) -> None:
        w = self._work()
        self.trace.append([epoch, self.n_iter, w.sensitivity, w.forward,
                           time.perf_counter() - self.t0, fval, gnorm, lr])

    def _full(self, x: np.ndarray, epoch: int, lr: float) -> tuple[float, float]:
        """Full objective (through problem.objective: recorded in the history)."""
        if self.o.full_gradient:
            fval, grad = self.problem.objective(x, sensi_orders=(0, 1))
            fval, grad = float(fval), np.asarray(grad, float)
            gnorm = float(np.linalg.norm(grad)) if np.all(np.isfinite(grad)) else np.inf
        else:
            fval, grad = float(self.problem.objective(x, sensi_orders=(0,))), None
            gnorm = np.nan
        if np.isfinite(fval) and (grad is None or np.all(np.isfinite(grad))):
            self.x_safe = x.copy()  # every condition integrates here
            if fval < self.best[0]:
                self.best = (fval, x.copy(), grad)
        self._record(epoch, fval, gnorm, lr)
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

    def _epoch(self, x: np.ndarray, prev: tuple | None, epoch: int, batch_size: int,
               rates: tuple[float, float, str], total_steps: int
               ) -> tuple[np.ndarray, tuple | None, int, float]:
        """One pass over the shuffled conditions; returns (x, prev, accepted batches, lr)."""
        start, end, schedule = rates
        n, n_ok = self.ev.n_conditions, 0
        lr = learning_rate(schedule, start, end, self.n_iter, total_steps)
        perm = self.rng.permutation(n)
        for k in range(0, n, batch_size):
            if time.perf_counter() - self.t0 > self.o.max_time or self.n_iter >= total_steps:
                break
            idx = perm[k:k + batch_size]
            x, f, g, prev = self._evaluate(x, idx, prev)
            self.consecutive = 0
            if f is None or g is None:
                continue
            n_ok += 1
            lr = learning_rate(schedule, start, end, self.n_iter, total_steps)
            step = self.rule.step(g, lr) * self.factor
            self.factor = min(1.0, self.factor * self.o.step_growth)
            if self.o.line_search_steps > 0:
                step = self._line_search(x, idx, f, g, step)
            x_new = self._clip(x + step)
            prev, x = (x, x_new - x), x_new
            self.n_iter += 1
        return x, prev, n_ok, lr

    def _stop(self, history_f: list[float], gnorm: float) -> tuple[int, str] | None:
        o = self.o
        if gnorm < o.gtol:
            return 1, f"full gradient norm {gnorm:.3g} < gtol"
        if o.ftol > 0 and len(history_f) > o.patience:
            old = history_f[-1 - o.patience]
            if old - self.best[0] < o.ftol * max(1.0, abs(self.best[0])):
                return 1, f"plateau over {o.patience} full evaluations"
        return None

    def run(self, x0: np.ndarray) -> OptimizerResult:
        o, n = self.o, self.ev.n_conditions
        rates = o.rates()
        batch_size = min(o.batch_size, n)
        per_epoch = math.ceil(n / batch_size)
        total_steps = min(o.epochs * per_epoch, o.max_steps or o.epochs * per_epoch)
        n_epochs = math.ceil(total_steps / per_epoch)
        x = self._clip(x0)
        self.factor, self.consecutive, self.x_safe = 1.0, 0, x.copy()
        prev: tuple | None = None
        lr = rates[0]
        if o.full_eval_every > 0:
            self._full(x, 0, lr)
        exitflag, message, epoch = 0, f"finished {total_steps} steps", 0
        history_f = [self.best[0]]
        for epoch in range(n_epochs):
            x, prev, n_ok, lr = self._epoch(x, prev, epoch, batch_size, rates, total_steps)
            timeout = time.perf_counter() - self.t0 > o.max_time
            if n_ok == 0 and not timeout:
                exitflag, message = -1, f"no batch could be evaluated in epoch {epoch + 1}"
                break
            last = epoch == n_epochs - 1 or timeout
            if last and o.polish is not None:
                self.x_end = x
                break
            if last or (o.full_eval_every > 0 and (epoch + 1) % o.full_eval_every == 0):
                fval, gnorm = self._full(x, epoch + 1, lr)
                history_f.append(self.best[0])
                stop = self._stop(history_f, gnorm)
                if stop is not None:
                    exitflag, message = stop
                    break
            if timeout:
                exitflag, message = 2, f"wall time {o.max_time:g} s exceeded"
                break
        if o.polish is not None and exitflag >= 0:
            return self._polish(getattr(self, "x_end", x), epoch + 1, lr)
        return self._result(exitflag, message, epoch + 1)

    def _polish(self, x_end: np.ndarray, n_epochs: int, lr: float) -> OptimizerResult:
        """Full-batch optimization from the mini-batch end point (best monitored point if the
        end point is worse or fails); the result is the polish's full-objective optimum."""
        x_start = x_end
        if self.best[1] is not None:
            f_end = float(self.problem.objective(x_end, sensi_orders=(0,)))
            if not f_end <= self.best[0]:
                x_start = self.best[1]
        optimizer = make_optimizer(self.o.polish, self.o.polish_max_iter, rescue=False)
        core = type(optimizer).minimize.__wrapped__
        problem = rescued_problem(self.problem, self.ev)  # the batches' rescue and counters
        problem.objective.history = self.problem.objective.history
        result = core(optimizer, problem=problem, x0=np.asarray(x_start, float),
                      id=self.start_id, history_options=self.history_options,
                      optimize_options=self.optimize_options)
        fval = float(result.fval) if result.fval is not None else np.inf
        if self.best[1] is not None and not fval <= self.best[0]:  # polish made it worse
            result.x, result.fval, result.grad = self.best[1], self.best[0], self.best[2]
            fval = self.best[0]
        self._record(n_epochs, fval, np.nan, lr)
        result.optimizer = f"minibatch-{self.o.method}+{self.o.polish}"
        result.message = f"{self.n_iter} mini-batch steps, then {self.o.polish}: " \
                         f"{result.message}"
        return self._fill(result, n_epochs)

    def _result(self, exitflag: int, message: str, n_epochs: int) -> OptimizerResult:
        fval, x, grad = self.best
        if x is None:
            exitflag, message = -1, message + "; no finite full objective value"
        result = OptimizerResult(x=x, fval=fval, grad=grad, exitflag=exitflag, message=message,
                                 optimizer=f"minibatch-{self.o.method}")
        return self._fill(result, n_epochs)

    def _fill(self, result: OptimizerResult, n_epochs: int) -> OptimizerResult:
        result["minibatch_trace"] = np.asarray(self.trace, dtype=float).reshape(-1, 8)
        result["n_epochs"] = int(n_epochs)
        result["n_iterations"] = int(self.n_iter)
        work = self._work()
        result["work_sensitivity"] = int(work.sensitivity)
        result["work_forward"] = int(work.forward)
        for key, value in asdict(self.ev.counters).items():
            result[key] = int(value)
        for key, value in self.stats.items():
            result[key] = int(value)
        return result
