"""History-free evaluation of a pyPESTO problem on mini-batches of conditions, with rescue.

Two ways to a condition subset, picked from the problem's objective:

* pyPESTO's `AmiciObjective.call_unprocessed` (parameter mapping, AMICI simulation,
  likelihood and gradient assembly), which accepts a subset of `edatas` with the matching
  `parameter_mapping` (see `sbmlhybrid.objective.ModelObjective.evaluate`): PEtab v1, bare
  SBML, hybrid problems;
* `sbmlhybrid.objective.EvaluateObjective.evaluate_conditions` of the problem's
  `EvaluateObjective` on the pyPESTO problem's full vector, which calls its ``owner``'s
  ``evaluate(x, conditions=indices)``: `sbmlhybrid.sciml.SciMLObjective` (experiments),
  `sbmlhybrid.hybrid.TorchODE` (conditions), and, through `PetabV2Likelihood` (full parameter
  table vector, fixed parameters included), `PetabV2Objective` (experiments). Which condition
  of a failed batch failed is found by evaluating them one by one; tolerances are relaxed on
  the AMICI solver the owner simulates with (`amici_solver_of`), none for the torch ODE.

Hand-written here:

* The split of a problem's objective into the per-condition AMICI part and the global terms
  (priors, anything else in an `AggregatedObjective`). A batch objective is the *mean* over the
  batch with the global terms weighted by batch_size / n_conditions::

      f_B(x) = (sum_{i in B} nllh_i(x) + |B| / n * prior(x)) / |B|

  so that |B| * f_B summed over the batches of an epoch is exactly the full objective (and the
  same for gradients).
* Calls go to `call_unprocessed`, *not* through `problem.objective(...)`: they are never
  recorded in the optimizer history (pyPESTO's `history_beats_optimizer` would otherwise report
  a mini-batch value as the result).
* Rescue of failed integrations (parPE's idea, stricter): conditions whose simulation failed are
  re-simulated alone with relative and absolute tolerances relaxed x100 per retry (up to 6
  retries; rtol is capped at 1e-2 and the retries end once it is); other conditions of the
  batch are re-simulated unchanged.
  A batch whose cost or gradient is still non-finite is reported as failed and the optimizer
  undoes its step (see `sbmlhybrid.optimize.minibatch`).
* Work counting: every simulated condition (batch, re-simulation, retry) adds one.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import amici.sim.sundials as asd
import numpy as np
import pypesto
from amici.sim._parameter_mapping import ParameterMapping
from pypesto.C import FVAL, GRAD, HESS, MODE_FUN, RDATAS
from pypesto.objective import AggregatedObjective, AmiciObjective, ObjectiveBase

from sbmlhybrid.errors import InputError
from sbmlhybrid.objective import EvaluateObjective, work_counter_of

RTOL_CAP = 1e-2


@dataclass
class RescueCounters:
    """Counters of the integration rescue and of the work done.

    Attributes:
        n_simulations: Conditions simulated for batch objectives (incl. re-simulations).
        n_failed_simulations: Condition simulations that failed.
        n_relaxed_retries: Simulations with relaxed tolerances.
        n_relaxed_rescued: Failed conditions that a relaxed retry rescued.
        n_failed_batches: Batches still failing (or non-finite) after the retries.
    """

    n_simulations: int = 0
    n_failed_simulations: int = 0
    n_relaxed_retries: int = 0
    n_relaxed_rescued: int = 0
    n_failed_batches: int = 0


def split_objective(objective: ObjectiveBase
                    ) -> tuple[AmiciObjective | EvaluateObjective, list[ObjectiveBase]]:
    """(the per-condition part, the global terms) of a pyPESTO problem objective; the
    per-condition part is an `AmiciObjective` or an `EvaluateObjective`.

    Raises:
        InputError: if there is no (or more than one) per-condition part.
    """
    parts = list(objective._objectives) if isinstance(objective, AggregatedObjective) \
        else [objective]
    condition_parts = [p for p in parts if isinstance(p, AmiciObjective | EvaluateObjective)]
    if len(condition_parts) != 1:
        raise InputError("mini-batch optimizers need a pyPESTO problem with exactly one "
                         "AmiciObjective (PEtab v1) or EvaluateObjective (PEtab v2, SciML, "
                         "torch ODE); "
                         f"got {[type(p).__name__ for p in parts]}")
    return condition_parts[0], [p for p in parts if p is not condition_parts[0]]


def amici_solver_of(owner: object) -> asd.Solver | None:
    """The AMICI solver an objective simulates with (pyPESTO's `AmiciObjective`, or of the
    protocol: `ModelObjective`, `PetabV2Objective`, a `SciMLObjective` through its
    `ModelObjective` ``model``); None for one without (the torch ODE)."""
    for holder in (owner, getattr(owner, "model", None)):
        solver = getattr(holder, "amici_solver", None) or getattr(
            getattr(holder, "amici_objective", None), "amici_solver", None)
        if solver is not None:
            return solver
    return None


class BatchEvaluator:
    """Batch objectives of a pyPESTO problem, history-free, with integration rescue.

    Use as a context manager around an optimization: it switches off pyPESTO's steady-state
    guesses (they are stored per batch position, which is wrong for subsets, and they make
    values depend on the evaluation history) and sets the number of simulation threads;
    both are restored on exit.

    Args:
        problem: pyPESTO problem (`x` arguments are its free parameters, PEtab scale).
        relax_factor: Tolerance relaxation per retry of a failed condition.
        max_relaxations: Retries of a failed condition.
        n_threads: AMICI threads for the conditions of a batch (OpenMP); None keeps the
            objective's own setting.
        quiet: Silence AMICI's per-failure log messages inside the context (failures are
            counted in `counters`; the rescue expects and handles them).
    """

    def __init__(self, problem: pypesto.Problem, relax_factor: float = 100.0,
                 max_relaxations: int = 6, n_threads: int | None = 1, quiet: bool = True):
        self.problem = problem
        part, self.global_terms = split_objective(problem.objective)
        #: The AMICI objective of a PEtab v1 problem (None when batches go through `owner`).
        self.amici_objective = part if isinstance(part, AmiciObjective) else None
        #: The `EvaluateObjective` batches go through (None for the AMICI path) and the
        #: protocol objective behind it.
        self._part = None if self.amici_objective is not None else part
        self.owner = None if self._part is None else self._part.owner
        self._work = work_counter_of(problem.objective)  # the owner path's simulation count
        self.relax_factor = float(relax_factor)
        self.max_relaxations = int(max_relaxations)
        self.n_threads = None if n_threads is None else int(n_threads)
        self.counters = RescueCounters()
        self._free = np.asarray(problem.x_free_indices, dtype=int)
        self.quiet = quiet
        self._saved: tuple | None = None

    @property
    def n_conditions(self) -> int:
        """Number of experimental conditions (samples)."""
        if self.amici_objective is None:
            return len(self.owner.conditions)
        return len(self.amici_objective.edatas)

    def __enter__(self) -> BatchEvaluator:
        obj = self.amici_objective
        logger = logging.getLogger("amici.sim.sundials")
        holder = obj if obj is not None else self.owner
        threads = getattr(holder, "n_threads", None)  # the torch ODE has none
        self._saved = (obj.guess_steadystate if obj is not None else None, threads,
                       logger.level)
        if self.quiet:
            logger.setLevel(logging.CRITICAL)
        if obj is not None and obj.guess_steadystate:
            obj.guess_steadystate = False
            for edata in obj.edatas:  # drop stale guesses written into the ExpData
                edata.x0 = ()
            obj.steadystate_guesses["fval"] = np.inf
            obj.steadystate_guesses["data"] = {}
        if threads is not None and self.n_threads is not None:
            holder.n_threads = self.n_threads
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            obj = self.amici_objective
            guess, threads, level = self._saved
            if obj is not None:
                obj.guess_steadystate = guess
            if threads is not None:
                (obj if obj is not None else self.owner).n_threads = threads
            logging.getLogger("amici.sim.sundials").setLevel(level)
            self._saved = None

    # ---- raw calls ------------------------------------------------------------------------
    def _call(self, x_full: np.ndarray, idx: Sequence[int], order: int) -> dict:
        """One AMICI call over conditions `idx` with sensitivities up to `order` (2: the
        Fisher information matrix as Hessian, pyPESTO's ``fim_for_hess``)."""
        if self.amici_objective is None:
            return self._owner_call(x_full, idx, order)
        obj = self.amici_objective
        edatas = [obj.edatas[i] for i in idx]
        mapping = ParameterMapping([obj.parameter_mapping[i] for i in idx])
        with warnings.catch_warnings():  # a batch need not use every problem parameter
            warnings.filterwarnings("ignore", "The following problem parameters were not used")
            ret = obj.call_unprocessed(
                x=x_full, sensi_orders=tuple(range(order + 1)), mode=MODE_FUN,
                return_dict=False, edatas=edatas, parameter_mapping=mapping,
                amici_reporting=asd.RDataReporting.likelihood)
        statuses = [int(r.status) for r in ret.get(RDATAS) or []]
        self.counters.n_simulations += sum(s != asd.AMICI_NOT_RUN for s in statuses)
        self.counters.n_failed_simulations += sum(
            s not in (asd.AMICI_SUCCESS, asd.AMICI_NOT_RUN) for s in statuses)
        ret["statuses"] = statuses
        return ret

    def _owner_value(self, x_full: np.ndarray, idx: Sequence[int], gradient: bool
                     ) -> tuple[float, np.ndarray | None]:
        before = self._work.snapshot() if self._work is not None else None
        with warnings.catch_warnings():  # a batch need not use every problem parameter
            warnings.filterwarnings("ignore", "The following problem parameters were not used")
            ev = self._part.evaluate_conditions(x_full, idx, gradient)
        # what AMICI ran (it skips the rest of a batch after a failure), else what was asked
        done = None if before is None else self._work.snapshot() - before
        self.counters.n_simulations += len(idx) if done is None else \
            done.sensitivity + done.forward
        grad = None if not gradient else np.full(len(x_full), np.nan) if ev.grad is None \
            else np.asarray(ev.grad, dtype=float)
        return float(ev.fval), grad

    def _owner_call(self, x_full: np.ndarray, idx: Sequence[int], order: int) -> dict:
        """`_call` through `EvaluateObjective.evaluate_conditions` (x_full: the pyPESTO
        problem's full vector, the objective's own; gradient on it; no Hessian). The status of
        each condition of a failed batch comes from evaluating it alone, as the batch was
        (with sensitivities, which can need more steps): the protocol reports no
        per-condition status."""
        if order > 1:
            raise InputError("the objective offers no Hessian for condition subsets")
        gradient = order == 1
        fval, grad = self._owner_value(x_full, idx, gradient)
        if np.isfinite(fval) or len(idx) == 1:
            ok = [bool(np.isfinite(fval))] * len(idx)
        else:
            ok = [bool(np.isfinite(self._owner_value(x_full, [i], gradient)[0])) for i in idx]
        self.counters.n_failed_simulations += ok.count(False)
        statuses = [asd.AMICI_SUCCESS if good else asd.AMICI_ERROR for good in ok]
        return {FVAL: fval, GRAD: grad, "statuses": statuses}

    def _finite(self, ret: dict, order: int) -> bool:
        if not np.isfinite(ret[FVAL]):
            return False
        free = self._free
        return (order < 1 or bool(np.all(np.isfinite(np.asarray(ret[GRAD])[free])))) and (
            order < 2 or bool(np.all(np.isfinite(np.asarray(ret[HESS])[np.ix_(free, free)]))))

    def _relaxed_call(self, x_full: np.ndarray, i: int, order: int) -> dict | None:
        solver = amici_solver_of(self.owner if self.amici_objective is None
                                 else self.amici_objective)
        if solver is None:  # nothing to relax (torch ODE): the batch fails
            return None
        rtol, atol = solver.get_relative_tolerance(), solver.get_absolute_tolerance()
        try:
            for k in range(1, self.max_relaxations + 1):
                new_rtol = min(rtol * self.relax_factor ** k, max(RTOL_CAP, rtol))
                if k > 1 and new_rtol == solver.get_relative_tolerance():
                    break  # rtol capped: a further retry would only loosen atol
                new_atol = atol * self.relax_factor ** k
                solver.set_relative_tolerance(new_rtol)
                solver.set_absolute_tolerance(new_atol)
                self.counters.n_relaxed_retries += 1
                ret = self._call(x_full, [i], order)
                if self._finite(ret, order):
                    self.counters.n_relaxed_rescued += 1
                    return ret
        finally:
            solver.set_relative_tolerance(rtol)
            solver.set_absolute_tolerance(atol)
        return None

    # ---- public evaluation ----------------------------------------------------------------
    def _add(self, total: dict, ret: dict, order: int) -> None:
        """Add a call's value and derivatives (free parameters) to `total`."""
        free = self._free
        total[FVAL] += float(ret[FVAL])
        if order >= 1:
            total[GRAD] += np.asarray(ret[GRAD])[free]
        if order >= 2:
            total[HESS] += np.asarray(ret[HESS])[np.ix_(free, free)]

    def _terms(self, order: int, fval: float = 0.0, fill: float = 0.0) -> dict:
        """{FVAL: fval, GRAD, HESS (free parameters) filled with `fill`} up to `order`."""
        n = len(self._free)
        out = {FVAL: fval}
        if order >= 1:
            out[GRAD] = np.full(n, fill)
        if order >= 2:
            out[HESS] = np.full((n, n), fill)
        return out

    def nllh_terms(self, x_free: np.ndarray, idx: Sequence[int], order: int = 1) -> dict:
        """Sum over conditions `idx` of the negative log-likelihoods, with rescue.

        Args:
            x_free: Free parameters (PEtab scale), shape (n_free,).
            idx: Condition indices.
            order: 0 value, 1 and gradient, 2 and Hessian (Fisher information; AMICI path
                with forward sensitivities only).

        Returns:
            {FVAL, GRAD (n_free,), HESS (n_free, n_free)} up to `order`; FVAL inf and the
            derivatives NaN if the conditions could not be evaluated finitely.
        """
        x_full = self.problem.get_full_vector(np.asarray(x_free, dtype=float))
        total, pending, failed = self._terms(order), list(idx), []
        while pending:
            ret = self._call(x_full, pending, order)
            if self._finite(ret, order):
                self._add(total, ret, order)
                break
            bad = [i for i, s in zip(pending, ret["statuses"])
                   if s not in (asd.AMICI_SUCCESS, asd.AMICI_NOT_RUN)]
            if not bad:  # non-finite without a failed integration: nothing to relax
                return self._failed(order)
            failed += bad
            pending = [i for i in pending if i not in bad]
        for i in failed:
            ret = self._relaxed_call(x_full, i, order)
            if ret is None:
                return self._failed(order)
            self._add(total, ret, order)
        return total

    def nllh_sum(self, x_free: np.ndarray, idx: Sequence[int], gradient: bool = True
                 ) -> tuple[float, np.ndarray | None]:
        """Sum of the conditions' negative log-likelihoods (and gradient) with rescue.

        Returns:
            (fval, grad over the free parameters or None); fval is inf and grad NaN if the
            batch could not be evaluated finitely.
        """
        out = self.nllh_terms(x_free, idx, int(gradient))
        return out[FVAL], out.get(GRAD)

    def _failed(self, order: int) -> dict:
        self.counters.n_failed_batches += 1
        return self._terms(order, np.inf, np.nan)

    def global_terms_value(self, x_free: np.ndarray, order: int = 1) -> dict:
        """Value and derivatives up to `order` (free parameters) of the global terms (priors);
        zeros if there are none."""
        total = self._terms(order)
        if self.global_terms:
            x_full = self.problem.get_full_vector(np.asarray(x_free, dtype=float))
            for term in self.global_terms:
                self._add(total, term.call_unprocessed(
                    x=x_full, sensi_orders=tuple(range(order + 1)), mode=MODE_FUN,
                    return_dict=False), order)
        return total

    def global_value(self, x_free: np.ndarray, gradient: bool = True
                     ) -> tuple[float, np.ndarray | None]:
        """Value (and free gradient) of the global terms (priors), 0 if there are none."""
        out = self.global_terms_value(x_free, int(gradient))
        return out[FVAL], out.get(GRAD)

    def objective_terms(self, x_free: np.ndarray, idx: Sequence[int], order: int = 1) -> dict:
        """|B| x the batch objective over `idx` (see above): the conditions' summed negative
        log-likelihoods plus the global terms weighted |B|/n, with value and derivatives up to
        `order` as in `nllh_terms`; over all conditions, the full objective."""
        total = self.nllh_terms(x_free, idx, order)
        if np.isfinite(total[FVAL]):
            weight = len(idx) / self.n_conditions
            for key, value in self.global_terms_value(x_free, order).items():
                total[key] = total[key] + weight * value
        return total

    def batch(self, x_free: np.ndarray, idx: Sequence[int], gradient: bool = True
              ) -> tuple[float, np.ndarray | None]:
        """Batch objective: mean over `idx` incl. the global terms weighted |B|/n (see above)."""
        b = len(idx)
        if b == 0:
            raise InputError("empty mini-batch")
        out = self.objective_terms(x_free, idx, int(gradient))
        if not np.isfinite(out[FVAL]):
            return out[FVAL], out.get(GRAD)
        return out[FVAL] / b, (out[GRAD] / b if gradient else None)
