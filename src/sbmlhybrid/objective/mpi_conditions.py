"""The conditions of one evaluation simulated on several MPI ranks (parPE's scheme).

For problems whose single evaluation (a full objective, or a large mini-batch) outgrows one
machine: rank 0 runs the optimizer; every evaluation's conditions are split round-robin over
all ranks (rank 0 included), each rank simulates its share with its own copy of the model
(rebuilt from the compile cache, so nothing is compiled twice) and rank 0 sums values,
gradients and FIMs. Any optimizer of this package (full-batch or mini-batch) runs unchanged,
because the split happens inside pyPESTO's AMICI calculator.

Reused: pyPESTO's `AmiciCalculator` on every rank, mpi4py collectives. Written here: the
calculator that scatters and gathers, and the worker loop. The solver's tolerances, step limit
and sensitivity method travel with every call, so the rescue's relaxed retries act on the
workers too; every rank caps its adjoint share as a serial call does (`_step_cap`) and reports
the conditions it simulated, repeats included, to rank 0's work counter. Only
likelihood-only calls are distributed (return data of remote ranks are not sent back); full
reporting (simulation tables) runs on rank 0 alone.

    objective = create_objective(load_problem("problem.yaml"))   # on every rank
    result = run_distributed(objective, lambda obj: fit(obj, settings))  # None on workers

Launch: ``mpiexec -n 4 python my_script.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import amici.sim.sundials as asd
import numpy as np
from amici.sim._parameter_mapping import ParameterMapping
from pypesto.C import FVAL, GRAD, HESS, MODE_FUN, RDATAS
from pypesto.objective.amici.amici_calculator import AmiciCalculator

from sbmlhybrid.objective._step_cap import run_with_adjoint_step_cap
from sbmlhybrid.objective.model_objective import ModelObjective
from sbmlhybrid.objective.work import CountingCalculator

__all__ = ["MPICalculator", "run_distributed"]

T = TypeVar("T")


@dataclass
class _Status:
    """Stand-in for a remote rank's ReturnData: only its status travels back."""

    status: int


# What rank 0's solver may differ in from the workers' (the mini-batch rescue loosens or
# tightens tolerances; adjoint vs forward): read back by getter, set again by setter.
_SENT = ("relative_tolerance", "absolute_tolerance", "max_steps", "sensitivity_method",
         "relative_tolerance_quadratures", "absolute_tolerance_quadratures",
         "linear_multistep_method", "non_linear_solver_iteration", "stability_limit_flag")


def _solver_settings(solver: Any) -> dict[str, Any]:
    return {name: getattr(solver, f"get_{name}")() for name in _SENT}


def _apply_settings(solver: Any, s: dict[str, Any]) -> None:
    for name, value in s.items():
        getattr(solver, f"set_{name}")(value)


def _simulate_share(objective: ModelObjective, msg: dict[str, Any], rank: int
                    ) -> tuple[float, Any, Any, list[int], int]:
    """This rank's part of a call: (fval, grad, hess, statuses, conditions simulated) over its
    conditions. Every rank caps adjoint calls as a serial evaluation does
    (`sbmlhybrid.objective._step_cap`); the count includes the repeats at the user's cap."""
    obj = objective.amici_objective
    idx = msg["parts"][rank]
    if not idx:
        return 0.0, None, None, [], 0
    _apply_settings(obj.amici_solver, msg["solver"])
    obj.amici_solver.set_return_data_reporting_mode(msg["reporting"])
    # pyPESTO's own call on every rank: the step cap wraps it here, and the work is recorded
    # once (rank 0 records every rank's count; a worker's counter shows its share)
    ret, n_run = run_with_adjoint_step_cap(
        lambda *a: AmiciCalculator.__call__(obj.calculator, *a),
        msg["x_dct"], msg["sensi_orders"], msg["mode"], obj.amici_model,
        obj.amici_solver, [obj.edatas[i] for i in idx], msg["n_threads"], msg["x_ids"],
        ParameterMapping([obj.parameter_mapping[i] for i in idx]), msg["fim_for_hess"])
    if rank != 0:
        objective.work.record(n_run, _with_sensitivities(msg["sensi_orders"]), len(idx),
                              ret.get(FVAL, np.nan))
    statuses = [int(r.status) for r in ret.get(RDATAS) or []]
    return float(ret[FVAL]), ret.get(GRAD), ret.get(HESS), statuses, n_run


def _with_sensitivities(sensi_orders) -> bool:
    return bool(sensi_orders) and max(sensi_orders) > 0


class MPICalculator(CountingCalculator):
    """Counting calculator on rank 0 that spreads each call's conditions over all ranks."""

    def __init__(self, counter, objective: ModelObjective, comm: Any):
        super().__init__(counter)
        self.objective, self.comm = objective, comm
        self._index = {id(e): i for i, e in enumerate(objective.amici_objective.edatas)}

    def __getstate__(self) -> dict:  # a communicator does not pickle: copies run locally
        raise TypeError("an MPI-distributed objective cannot be copied to another process")

    def __call__(self, x_dct, sensi_orders, mode, amici_model, amici_solver, edatas,
                 n_threads, x_ids, parameter_mapping, fim_for_hess):
        idx = [self._index.get(id(e)) for e in edatas]
        reporting = amici_solver.get_return_data_reporting_mode()
        if (any(i is None for i in idx) or reporting != asd.RDataReporting.likelihood
                or mode != MODE_FUN):
            return super().__call__(x_dct, sensi_orders, mode, amici_model, amici_solver,
                                    edatas, n_threads, x_ids, parameter_mapping, fim_for_hess)
        size = self.comm.Get_size()
        msg = {"x_dct": dict(x_dct), "sensi_orders": tuple(sensi_orders), "mode": mode,
               "idx": idx, "parts": [idx[r::size] for r in range(size)], "x_ids": list(x_ids),
               "solver": _solver_settings(amici_solver), "reporting": reporting,
               "n_threads": n_threads, "fim_for_hess": fim_for_hess}
        self.comm.bcast(msg, root=0)
        shares = self.comm.gather(_simulate_share(self.objective, msg, 0), root=0)
        return self._combine(shares, msg, sensi_orders)

    def _combine(self, shares: list, msg: dict[str, Any], sensi_orders) -> dict[str, Any]:
        """Sum the ranks' shares; statuses back in the call's condition order."""
        fval = float(sum(s[0] for s in shares))
        grads = [np.asarray(s[1]) for s in shares if s[1] is not None and len(s[3])]
        hesses = [np.asarray(s[2]) for s in shares if s[2] is not None and len(s[3])]
        by_cond: dict[int, int] = {}
        for part, share in zip(msg["parts"], shares):
            by_cond.update(zip(part, share[3]))
        statuses = [by_cond.get(i, asd.AMICI_NOT_RUN) for i in msg["idx"]]
        ret: dict[str, Any] = {FVAL: fval, RDATAS: [_Status(s) for s in statuses]}
        if grads:
            ret[GRAD] = np.sum(grads, axis=0)
        if hesses:
            ret[HESS] = np.sum(hesses, axis=0)
        if any(s != asd.AMICI_SUCCESS for s in statuses):
            ret[FVAL] = np.inf  # as pyPESTO does for a failed condition
            if GRAD in ret:
                ret[GRAD] = np.full_like(ret[GRAD], np.nan)
        self.counter.record(sum(share[4] for share in shares),
                            _with_sensitivities(sensi_orders), len(statuses), ret[FVAL])
        return ret


def _serve(objective: ModelObjective, comm: Any) -> None:
    """Worker loop: simulate this rank's share of every call until rank 0 says stop."""
    rank = comm.Get_rank()
    while True:
        msg = comm.bcast(None, root=0)
        if msg is None:
            return
        comm.gather(_simulate_share(objective, msg, rank), root=0)


def run_distributed(objective: ModelObjective, main: Callable[[ModelObjective], T],
                    comm: Any = None) -> T | None:
    """Run ``main(objective)`` on rank 0 while every rank simulates a share of each call.

    Call it on every rank with the same problem. Returns main's result on rank 0 and None on
    the other ranks (after rank 0 finished). With one rank, main runs unchanged.
    """
    if comm is None:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return main(objective)
    if comm.Get_rank() != 0:
        _serve(objective, comm)
        return None
    obj = objective.amici_objective
    local = obj.calculator
    obj.calculator = MPICalculator(objective.work, objective, comm)
    try:
        return main(objective)
    finally:
        obj.calculator = local
        comm.bcast(None, root=0)
