"""pyPESTO's full-batch optimizers by name: the fits' optimizers and the mini-batch polish.

Reused: `pypesto.optimize.FidesOptimizer` and `ScipyOptimizer` (L-BFGS-B). Here, below both
`multistart` and the mini-batch run, so that the run's polish needs nothing from
`multistart`.
"""

from __future__ import annotations

import logging

import pypesto.optimize as optimize

__all__ = ["make_optimizer"]


def make_optimizer(name: str | optimize.Optimizer, max_iter: int) -> optimize.Optimizer:
    """pyPESTO optimizer for a name ("fides", "lbfgsb") or pass an instance through."""
    if isinstance(name, optimize.Optimizer):
        return name
    if name == "fides":
        return optimize.FidesOptimizer(verbose=logging.WARNING, options={"maxiter": max_iter})
    return optimize.ScipyOptimizer(method="L-BFGS-B", options={"maxiter": max_iter})
