"""Mini-batch optimization of ODE models over experimental conditions, as pyPESTO optimizers.

pyPESTO has no mini-batch optimizer; everything here is hand-written after parPE's
`minibatchOptimization.h` (Stapor et al., Nat. Commun. 2022: mini-batch optimizers over
conditions reach equal or better objective values with >10x less computation). Reused:
`pypesto.optimize.Optimizer` and its decorators (history, timing, full-vector results), so the
optimizers run in `pypesto.optimize.minimize` multi-starts, in `sbmlhybrid.optimize.fit`, and
from ``sbmlhybrid fit --optimizer adam --batch-size 8 --epochs 50``; pyPESTO's AMICI objective
(PEtab v1, bare SBML, hybrid) or the objective's own ``evaluate`` on a condition subset
(SciML experiments, torch ODE conditions) computes each batch
(`sbmlhybrid.optimize.minibatch_eval`). Update rules and learning-rate
schedules are in `sbmlhybrid.optimize.minibatch_rules`.

Algorithm (per start):

* One sample is one experimental condition (with its pre-equilibration). Each epoch the
  conditions are reshuffled with a generator seeded by (seed, start id) and cut into batches
  of `batch_size` (the last one may be smaller). The batch objective is the mean over its
  conditions; priors enter with weight batch_size / n_conditions (see `minibatch_eval`).
* Each batch gradient gives a step from the update rule; the new point is clipped to the
  bounds (parameters on PEtab scale, free parameters only). The learning rate follows its
  schedule over the steps of the run (epochs x batches, or `max_steps`): a budget in steps
  costs the same work whatever the number of conditions, which is where mini-batching saves
  work on many-condition problems.
* Rescue: a failed condition is retried with tolerances relaxed x100 (up to 6 times). If the
  batch still fails, or its cost or gradient is non-finite, the previous step is undone and
  retried x1/5 shorter. After 10 failures in a row the rule's state is reset, the point goes
  back to the last point where the full objective was finite (all conditions integrate
  there; the last accepted point may fail the current batch) and steps restart at 1/100 of
  their size, growing x1.3 per successful batch. A batch that fails even there is skipped.
* Optional batch line search: up to `line_search_steps` parabolic interpolations of the
  batch cost along the step (cost only, no gradient).
* Stopping: number of epochs or steps, wall time, or (on the full objective, evaluated every
  `full_eval_every` epochs) a gradient norm below `gtol` or a relative improvement below
  `ftol` over `patience` evaluations.
* Polish (optional): a short full-batch fides or L-BFGS-B run from the mini-batch end point,
  so the result is a converged full-objective optimum (mini-batch steps get close quickly
  but keep jittering at the batch noise level).
* Result: only full-objective evaluations go through ``problem.objective`` (and thus into the
  history); batch evaluations are history-free. The result's `x`/`fval`/`grad` are the best
  full evaluation, so they stay full-objective values whatever `history_beats_optimizer` is.
  Extra result fields: ``minibatch_trace`` (rows per full evaluation, columns
  `TRACE_COLUMNS`), the work done (``work_sensitivity``, ``work_forward``: conditions
  simulated with / without sensitivities, counted by `sbmlhybrid.objective.work`) and the
  rescue counters.
* Parallel batches: `n_threads` lets AMICI simulate a batch's conditions with OpenMP; the
  default is `sbmlhybrid.objective.model_objective.DEFAULT_THREADS` (1: 2 threads are 1.3-1.6x
  faster on the idle 2-core machine, benchmarks/batch_cost.py, but libgomp's pool does not
  survive a fork). A condition costs the same inside a batch as inside a full evaluation
  (ratio 0.95-1.13 for batch sizes 4-16).
"""

from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np
import pypesto
from pypesto.history import HistoryOptions
from pypesto.optimize import OptimizeOptions
from pypesto.optimize.optimizer import Optimizer, minimize_decorator_collection
from pypesto.result import OptimizerResult

from sbmlhybrid.errors import InputError
from sbmlhybrid.optimize._minibatch_run import MiniBatchRun
from sbmlhybrid.optimize.minibatch_eval import BatchEvaluator, RescueCounters
from sbmlhybrid.optimize.minibatch_options import (
    FULLBATCH_OPTIMIZERS,
    TRACE_COLUMNS,
    MiniBatchOptions,
)

__all__ = ["FULLBATCH_OPTIMIZERS", "TRACE_COLUMNS", "MiniBatchOptimizer", "MiniBatchOptions",
           "counters_of", "minibatch_optimizer"]

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
            run = MiniBatchRun(self.options, problem, evaluator, id, history_options,
                               optimize_options)
            return run.run(np.asarray(x0, float))


def minibatch_optimizer(method: str, **options: object) -> MiniBatchOptimizer:
    """A mini-batch optimizer by name ("adam", "rmsprop", ...; see `METHODS`)."""
    return MiniBatchOptimizer(method=method, **options)


def counters_of(result: OptimizerResult) -> RescueCounters:
    """The rescue counters stored in a mini-batch result."""
    return RescueCounters(**{f.name: int(result.get(f.name, 0)) for f in fields(RescueCounters)})
