"""What the PEtab v1, v2 and SciML objectives share: the evaluation record, two defaults,
the one translation of `SolverSettings` into AMICI solver calls (every AMICI runner of the
package: objectives, the torch layer's batch simulator, the medium simulator), the check of a
free parameter vector, the lookup of conditions by id or index, and the function-and-gradient
pyPESTO objective base.

`model_objective` (v1) and `petab_v2` both import from here, so neither imports the other at
module level (`model_objective.create_objective` hands PEtab v2 problems to `petab_v2` inside
the call); `sbmlhybrid.sciml` reaches `free_vector` and `lookup_indices` through the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import amici.sim.sundials as asd
import numpy as np
from pypesto import C as pc
from pypesto.objective import ObjectiveBase

from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.problem import SolverSettings

# Forward sensitivities cost ~ n_states * n_parameters per step, adjoints ~ n_states per
# backward solve per condition. Measured: Isensee (46 parameters) fval+grad 24.5 s forward vs
# 14.6 s adjoint (benchmarks/results/overhead.json); binding_chain (10 inputs) adjoint 1.5x
# slower (benchmarks/results/torch_layer.json). Forward up to this many estimated parameters.
ADJOINT_ABOVE_N_PARAMETERS = 25
#: AMICI (OpenMP) threads simulating the conditions of one evaluation. Measured on the idle
#: 2-core machine (benchmarks/results/batch_cost.json, load <= 1.1): a full gradient with 2
#: threads vs 1 is 1.28x faster on Boehm-dose N = 256 and 1.65x on Isensee (123 conditions).
#: The default stays 1 all the same: once libgomp has started its thread pool, a process
#: forked from it (pyPESTO's process engine) hangs in its first parallel region (seen in the
#: test suite), so more threads are opt-in (`--threads 2`, `objective.n_threads = 2`).
DEFAULT_THREADS = 1


def apply_solver_settings(solver: Any, settings: SolverSettings,
                          sensitivity_method: str | None = None) -> None:
    """Set an AMICI solver's tolerances, step cap, integration method and (if given, "forward"
    or "adjoint") sensitivity method from `settings`; fields left None keep AMICI's values."""
    solver.set_relative_tolerance(settings.rtol)
    solver.set_absolute_tolerance(settings.atol)
    solver.set_max_steps(settings.max_steps)
    if settings.steady_state_rtol is not None:
        solver.set_relative_tolerance_steady_state(settings.steady_state_rtol)
    adams = settings.multistep == "adams"
    solver.set_linear_multistep_method(asd.LinearMultistepMethod.adams if adams
                                       else asd.LinearMultistepMethod.BDF)
    # CVODES' stability limit detection exists for BDF only (AMICI enables it; Adams fails)
    solver.set_stability_limit_flag(not adams)
    solver.set_non_linear_solver_iteration(
        asd.NonlinearSolverIteration.fixedpoint if settings.nonlinear_iteration == "fixedpoint"
        else asd.NonlinearSolverIteration.newton)
    if settings.quadrature_rtol is not None:
        solver.set_relative_tolerance_quadratures(settings.quadrature_rtol)
    if settings.quadrature_atol is not None:
        solver.set_absolute_tolerance_quadratures(settings.quadrature_atol)
    if sensitivity_method is not None:
        solver.set_sensitivity_method(asd.SensitivityMethod.adjoint
                                      if sensitivity_method == "adjoint"
                                      else asd.SensitivityMethod.forward)


@dataclass
class Evaluation:
    """Result of one objective evaluation.

    Attributes:
        fval: Negative log-likelihood (priors excluded).
        grad: Gradient w.r.t. the free parameters on PEtab scale, shape (n_free,), or None.
        rdatas: AMICI return data per evaluated condition (only if requested).
    """

    fval: float
    grad: np.ndarray | None
    rdatas: list | None = None


def free_vector(x_free: Sequence[float] | None, nominal: np.ndarray,
                ids: Sequence[str]) -> np.ndarray:
    """`x_free` (default `nominal`) as a float array, checked to have shape (len(ids),)."""
    x = nominal if x_free is None else np.asarray(x_free, dtype=float)
    if x.shape != (len(ids),):
        raise InputError(f"parameter vector has shape {x.shape}, expected ({len(ids)},) "
                         f"for {list(ids)}")
    return x


def lookup_indices(requested: Sequence[int | str] | None, known: Sequence[str],
                   kind: str) -> list[int]:
    """Indices into `known` for ids or integer indices (default: all).

    An id that occurs several times in `known` (a simulation condition with several
    pre-equilibrations) gives all its indices. `kind` names the thing in errors
    ("condition", "experiment").
    """
    if requested is None:
        return list(range(len(known)))
    out: list[int] = []
    for c in requested:
        if isinstance(c, int | np.integer):
            if not 0 <= int(c) < len(known):
                raise InputError(f"{kind} index {c} out of range 0..{len(known) - 1}")
            out.append(int(c))
        elif c in known:
            out.extend(i for i, s in enumerate(known) if s == c)
        else:
            raise InputError(Issue(f"unknown {kind} {c!r}; known: {list(known)}",
                                   entity=str(c)))
    return out


class FunctionGradientObjective(ObjectiveBase):
    """pyPESTO objective that gives function values and gradients only (optimizers build
    Hessian approximations); subclasses implement ``call_unprocessed``."""

    def check_mode(self, mode: str) -> bool:
        return mode == pc.MODE_FUN

    def check_sensi_orders(self, sensi_orders: Sequence[int], mode: str) -> bool:
        return mode == pc.MODE_FUN and all(o in (0, 1) for o in sensi_orders)
