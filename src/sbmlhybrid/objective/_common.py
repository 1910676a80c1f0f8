"""What the PEtab v1, v2 and SciML objectives share: the evaluation record, two defaults,
the check of a free parameter vector, the lookup of conditions by id or index, and the
function-and-gradient pyPESTO objective base.

`model_objective` (v1) and `petab_v2` both import from here, so neither imports the other at
module level (`model_objective.create_objective` hands PEtab v2 problems to `petab_v2` inside
the call); `sbmlhybrid.sciml` reaches `free_vector` and `lookup_indices` through the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pypesto import C as pc
from pypesto.objective import ObjectiveBase

from sbmlhybrid.errors import InputError, Issue

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
