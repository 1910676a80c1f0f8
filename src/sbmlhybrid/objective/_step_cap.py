"""Adjoint evaluations at a low CVODES step cap first, the user's cap only where needed.

AMICI passes the solver's step cap (``max_steps``) to ``CVodeAdjInit`` as the number of steps
between two adjoint checkpoints, and CVODES allocates that many interpolation vectors for
every condition of every adjoint evaluation, used or not. With the package's default cap of
10,000 this allocation dominated small models: a CHO gray-box adjoint gradient takes
0.340 s at a cap of 10,000, 0.285 s at 2,000 and 0.278 s at 500, the stiff UDE's 0.363 /
0.328 / 0.323 s, with the same gradient bit for bit (`benchmarks/results/adjoint_max_steps.json`,
load <= 0.87). A low cap alone would refuse valid long simulations, so adjoint calls run at
`ADJOINT_STEP_CAP` and only the conditions that failed (running out of steps shows as
AMICI_TOO_MUCH_WORK, or in a preequilibration as a failed steady state) and those a fail-fast
run skipped after them are simulated again at the user's cap; their results
replace the capped ones and pyPESTO's aggregation runs once more over all conditions. AMICI's
log records of the capped attempt are emitted only when nothing is repeated (a repaired
failure prints nothing; warnings of that attempt's other conditions are dropped with it).

Reused: pyPESTO's `AmiciCalculator` call and `calculate_function_values`. Written here: the
cap, the selection of conditions to repeat and the merge. Forward-sensitivity and
value-only calls are untouched (their cost does not depend on the cap).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import amici.sim.sundials as asd
from amici.sim._parameter_mapping import ParameterMapping
from pypesto.C import RDATAS
from pypesto.objective.amici.amici_calculator import calculate_function_values

from sbmlhybrid._logs import held_simulation_records, release_records

__all__ = ["ADJOINT_STEP_CAP", "run_with_adjoint_step_cap"]

#: Step cap of the first adjoint attempt (AMICI counts steps over the whole simulation of a
#: condition). 2,000 keeps the measured gain (the 500 cap is 2-3 % faster still) while
#: leaving room for long time courses, which are repeated at the user's cap.
ADJOINT_STEP_CAP = 2_000

#: AMICI's pyPESTO call: (x_dct, sensi_orders, mode, model, solver, edatas, n_threads, x_ids,
#: parameter_mapping, fim_for_hess) -> result dict with RDATAS.
Call = Callable[..., dict[str, Any]]


def conditions_run(result: dict[str, Any]) -> int:
    """Conditions AMICI ran in a call (status other than "not run"), failed or not."""
    return sum(int(r.status) != asd.AMICI_NOT_RUN for r in result.get(RDATAS) or [])


def _to_repeat(statuses: list[int]) -> list[int]:
    """Positions to simulate again at the user's cap: every condition that failed or was not
    run, if any failed. Any failure status, not only AMICI_TOO_MUCH_WORK: a preequilibration
    that runs out of steps reports a failed steady state (AMICI_ERROR; Brannmark_JBC2010 at
    rtol 1e-12 needs 3,108 steps to its steady state). A genuine failure costs one more
    simulation of the failing condition (fail-fast stops there again)."""
    if all(s in (asd.AMICI_SUCCESS, asd.AMICI_NOT_RUN) for s in statuses):
        return []
    return [i for i, s in enumerate(statuses) if s != asd.AMICI_SUCCESS]


def run_with_adjoint_step_cap(call: Call, x_dct: dict, sensi_orders: tuple[int, ...],
                              mode: str, amici_model: Any, amici_solver: Any, edatas: list,
                              n_threads: int, x_ids: list[str],
                              parameter_mapping: ParameterMapping, fim_for_hess: bool
                              ) -> tuple[dict[str, Any], int]:
    """`call` with pyPESTO's calculator arguments, adjoint calls capped first (see module).

    Returns (pyPESTO's result dict over all `edatas`, conditions simulated including
    repeats). The solver's cap is restored before returning, also on errors.
    """
    args = (x_dct, sensi_orders, mode, amici_model, amici_solver)
    rest = (x_ids, parameter_mapping, fim_for_hess)
    user_cap = int(amici_solver.get_max_steps())
    adjoint = (bool(sensi_orders) and max(sensi_orders) > 0
               and amici_solver.get_sensitivity_method() == asd.SensitivityMethod.adjoint)
    if not adjoint or user_cap <= ADJOINT_STEP_CAP:
        result = call(*args, edatas, n_threads, *rest)
        return result, conditions_run(result)
    amici_solver.set_max_steps(ADJOINT_STEP_CAP)
    try:
        with held_simulation_records() as records:
            result = call(*args, edatas, n_threads, *rest)
    finally:
        amici_solver.set_max_steps(user_cap)
    n_run = conditions_run(result)
    rdatas = list(result.get(RDATAS) or [])
    again = _to_repeat([int(r.status) for r in rdatas])
    if not again:
        release_records(records)
        return result, n_run
    repeat = call(*args, [edatas[i] for i in again], n_threads, x_ids,
                  ParameterMapping([parameter_mapping[i] for i in again]), fim_for_hess)
    n_run += conditions_run(repeat)
    for i, rdata in zip(again, repeat[RDATAS], strict=True):
        rdatas[i] = rdata
    merged = calculate_function_values(
        rdatas=rdatas, sensi_orders=sensi_orders, mode=mode, amici_model=amici_model,
        amici_solver=amici_solver, edatas=edatas, x_ids=x_ids,
        parameter_mapping=parameter_mapping, fim_for_hess=fim_for_hess)
    return merged, n_run
