"""What the PEtab v1 and v2 objectives share: the evaluation record and two defaults.

Private to `sbmlhybrid.objective`: `model_objective` (v1) and `petab_v2` both import from here,
so neither imports the other at module level (`model_objective.create_objective` hands PEtab
v2 problems to `petab_v2` inside the call).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
