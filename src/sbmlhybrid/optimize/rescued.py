"""Full-batch optimizers with the mini-batch optimizers' integration rescue.

A full objective whose AMICI call fails at one condition is infinite, and pyPESTO's
full-batch optimizers (fides, L-BFGS-B) then shrink their step or stop. On Isensee_JCB2018
9 of the 20 shared start points of `benchmarks/minibatch_scale.py` have a finite objective
but no finite adjoint gradient (`benchmarks/results/isensee_start_gradients.json`), so the
full-batch methods stopped at their start while the mini-batch methods, which re-simulate a
failed condition alone at relaxed tolerances, went on. Comparing the two then measures the
rescue, not the optimizers. Here the full objective is evaluated through the *same* code
as a mini-batch (`sbmlhybrid.optimize.minibatch_eval.BatchEvaluator.objective_terms` over
all conditions), so rescue, work counting and simulation threads are one
code path for every method.

Reused: pyPESTO's `ObjectiveBase` (history, fixed parameters) and its optimizers. Written
here: the objective that evaluates the problem through the batch evaluator, and the
optimizer wrapper that runs any pyPESTO optimizer on it. When nothing fails, values and
derivatives are those of the problem's own objective (same AMICI call over all conditions).
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

import numpy as np
import pypesto
from pypesto.C import FVAL, GRAD, HESS, MODE_FUN, ModeType
from pypesto.objective import ObjectiveBase
from pypesto.result import OptimizerResult

from sbmlhybrid.optimize._delegating import DelegatingOptimizer
from sbmlhybrid.optimize.minibatch_eval import BatchEvaluator

__all__ = ["RescuedObjective", "RescuedOptimizer", "rescued_problem"]


class RescuedObjective(ObjectiveBase):
    """The full objective of a pyPESTO problem, evaluated with integration rescue.

    Args:
        problem: The pyPESTO problem whose objective is evaluated (its per-condition part and
            global terms, `minibatch_eval.split_objective`).
        evaluator: The batch evaluator of `problem` (entered as a context by the caller).
    """

    def __init__(self, problem: pypesto.Problem, evaluator: BatchEvaluator):
        super().__init__(x_names=problem.x_names)
        self.problem, self.evaluator = problem, evaluator
        self._free = np.asarray(problem.x_free_indices, dtype=int)
        # a Hessian (FIM) only where the problem's objective offers one over conditions
        self._max_order = 2 if evaluator.amici_objective is not None \
            and problem.objective.has_hess else 1

    def check_mode(self, mode: ModeType) -> bool:
        return mode == MODE_FUN

    def check_sensi_orders(self, sensi_orders: tuple[int, ...], mode: ModeType) -> bool:
        return mode == MODE_FUN and max(sensi_orders, default=0) <= self._max_order

    def call_unprocessed(self, x: np.ndarray, sensi_orders: tuple[int, ...], mode: ModeType,
                         return_dict: bool = False, **kwargs: Any) -> dict:
        """Value and derivatives up to max(sensi_orders) at the full vector `x` (shape
        (dim_full,)); derivatives on the full vector, zero for fixed parameters."""
        order = max(sensi_orders, default=0)
        x_free = np.asarray(x, dtype=float)[self._free]
        terms = self.evaluator.objective_terms(x_free, range(self.evaluator.n_conditions),
                                               order)
        n = len(x)
        out: dict = {FVAL: float(terms[FVAL])}
        if order >= 1:
            out[GRAD] = np.zeros(n)
            out[GRAD][self._free] = terms[GRAD]
        if order >= 2:
            out[HESS] = np.zeros((n, n))
            out[HESS][np.ix_(self._free, self._free)] = terms[HESS]
        return out


def rescued_problem(problem: pypesto.Problem, evaluator: BatchEvaluator) -> pypesto.Problem:
    """A shallow copy of `problem` whose objective is `RescuedObjective` (same bounds, fixed
    parameters, scales, start guesses; the priors stay in the wrapped objective)."""
    out = copy.copy(problem)
    out.objective = RescuedObjective(problem, evaluator)
    out.objective.update_from_problem(
        dim_full=problem.dim_full, x_free_indices=problem.x_free_indices,
        x_fixed_indices=problem.x_fixed_indices, x_fixed_vals=problem.x_fixed_vals)
    return out


class RescuedOptimizer(DelegatingOptimizer):
    """Any pyPESTO optimizer, run on the problem's full objective with integration rescue.

    The result carries the rescue counters of its start (``n_failed_simulations``,
    ``n_relaxed_retries``, ``n_relaxed_rescued``, ``n_failed_batches``: full evaluations
    still non-finite) beside the optimizer's own fields. Work is counted where it always is
    (the objective's `sbmlhybrid.objective.work` counter), so `CountedOptimizer` around this
    wrapper counts every rescue re-simulation.

    Args:
        inner: A pyPESTO optimizer (fides, scipy L-BFGS-B, ...).
    """

    def __repr__(self) -> str:  # distinct from the plain optimizer's in checkpoints
        return f"Rescued({self.inner!r})"

    def is_least_squares(self) -> bool:
        return False  # residuals are not rescued: function mode only

    def minimize(self, problem: pypesto.Problem, x0: np.ndarray | None = None,
                 id: str | None = None, history_options=None,
                 optimize_options=None) -> OptimizerResult:
        """The inner optimizer's `minimize` on `rescued_problem(problem)`."""
        with BatchEvaluator(problem, n_threads=None) as evaluator:  # the objective's threads
            result = self.inner.minimize(
                problem=rescued_problem(problem, evaluator), x0=x0, id=id,
                history_options=history_options, optimize_options=optimize_options)
        for key, value in asdict(evaluator.counters).items():
            if key != "n_simulations":  # the work counter holds the simulations
                result[key] = int(value)
        return result
