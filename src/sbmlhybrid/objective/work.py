"""Work counting: every condition AMICI simulates, for every optimizer, in one place.

One unit of work is one experimental condition simulated with sensitivities; a forward-only
simulation is counted apart (`WorkCount.forward`) and weighed by its measured cost ratio
when a single number is wanted (`WorkCount.units`). Counting happens in pyPESTO's
`AmiciCalculator` (the one place where `AmiciObjective` calls `amici.run_simulations`), so
start-point evaluations, line-search trials, rescue re-simulations, monitoring evaluations,
full-batch and mini-batch calls are all seen the same way. The calculator runs adjoint calls
at a low step cap first (`sbmlhybrid.objective._step_cap`); a condition repeated at the
user's cap counts twice, since it was simulated twice, and the call is one trace row. Reused:
pyPESTO's calculator; written here: the subclass that counts, and a per-call trace for
work-vs-objective curves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pypesto.C import FVAL
from pypesto.objective import AmiciObjective
from pypesto.objective.amici.amici_calculator import AmiciCalculator

from sbmlhybrid.objective._step_cap import run_with_adjoint_step_cap

__all__ = ["WorkCount", "WorkCounter", "install_work_counter", "work_counter_of"]


@dataclass
class WorkCount:
    """Conditions simulated.

    Attributes:
        sensitivity: Conditions simulated with first-order sensitivities (1 unit each).
        forward: Conditions simulated without sensitivities.
    """

    sensitivity: int = 0
    forward: int = 0

    def units(self, forward_cost: float = 1.0) -> float:
        """Work in units: sensitivity + forward_cost * forward (forward_cost: measured ratio
        of a forward-only to a sensitivity simulation)."""
        return self.sensitivity + forward_cost * self.forward

    def __sub__(self, other: WorkCount) -> WorkCount:
        return WorkCount(self.sensitivity - other.sensitivity, self.forward - other.forward)


@dataclass
class WorkCounter:
    """Running totals and (optionally) a trace of every AMICI call.

    Attributes:
        count: Totals since creation (or the last `reset`).
        n_conditions: Conditions of the full problem (a call over all of them is "full").
        trace: If not None, one row per call: (sensitivity total, forward total, conditions
            in the call, fval of the call (nllh, priors excluded), 1 if the call was full).
    """

    count: WorkCount = field(default_factory=WorkCount)
    n_conditions: int = 0
    trace: list[tuple[int, int, int, float, int]] | None = None

    def snapshot(self) -> WorkCount:
        """A copy of the totals."""
        return WorkCount(self.count.sensitivity, self.count.forward)

    def reset(self, trace: bool | None = None) -> None:
        """Zero the totals; `trace` True/False switches the per-call trace on/off."""
        self.count = WorkCount()
        if trace is not None:
            self.trace = [] if trace else None
        elif self.trace is not None:
            self.trace = []

    def record(self, n_run: int, sensitivities: bool, n_call: int, fval: float) -> None:
        if sensitivities:
            self.count.sensitivity += n_run
        else:
            self.count.forward += n_run
        if self.trace is not None:
            self.trace.append((self.count.sensitivity, self.count.forward, n_call,
                               float(fval), int(n_call == self.n_conditions)))

    def trace_array(self) -> np.ndarray:
        """The trace as an array of shape (n_calls, 5) (see `trace`)."""
        return np.asarray(self.trace or [], dtype=float).reshape(-1, 5)


class CountingCalculator(AmiciCalculator):
    """pyPESTO's AMICI calculator, counting the conditions each call simulates (adjoint
    calls step-capped first: `sbmlhybrid.objective._step_cap`).

    A condition counts when AMICI ran it (status other than "not run"), failed or not.
    """

    def __init__(self, counter: WorkCounter):
        super().__init__()
        self.counter = counter

    def __call__(self, x_dct, sensi_orders, mode, amici_model, amici_solver, edatas,
                 n_threads, x_ids, parameter_mapping, fim_for_hess):
        ret, n_run = run_with_adjoint_step_cap(
            super().__call__, x_dct, sensi_orders, mode, amici_model, amici_solver, edatas,
            n_threads, x_ids, parameter_mapping, fim_for_hess)
        self.counter.record(n_run, bool(sensi_orders) and max(sensi_orders) > 0, len(edatas),
                            ret.get(FVAL, np.nan))
        return ret


def install_work_counter(objective: AmiciObjective) -> WorkCounter:
    """Make `objective` count its simulations; returns the counter (idempotent)."""
    if isinstance(objective.calculator, CountingCalculator):
        return objective.calculator.counter
    if type(objective.calculator) is not AmiciCalculator:
        raise TypeError(f"cannot count work through {type(objective.calculator).__name__}")
    counter = WorkCounter(n_conditions=len(objective.edatas))
    objective.calculator = CountingCalculator(counter)
    return counter


def work_counter_of(objective: object) -> WorkCounter | None:
    """The counter inside a pyPESTO objective (plain or aggregated), None if there is none.

    Found on a part's counting calculator (`AmiciObjective`), or, for a part that evaluates
    through an objective of the protocol (``owner``: `sbmlhybrid.objective.EvaluateObjective`),
    on that owner's ``work`` or on the ``work`` of the `ModelObjective` it simulates with
    (``owner.model``: `sbmlhybrid.sciml.SciMLObjective`), so that SciML fits and mini-batch
    runs count the conditions AMICI simulates for them.
    """
    parts = [objective] + list(getattr(objective, "_objectives", []))
    for part in parts:
        calc = getattr(part, "calculator", None)
        if isinstance(calc, CountingCalculator):
            return calc.counter
        owner = getattr(part, "owner", None)
        for holder in (owner, getattr(owner, "model", None)):
            work = getattr(holder, "work", None)
            if isinstance(work, WorkCounter):
                return work
    return None
