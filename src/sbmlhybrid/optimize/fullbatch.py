"""pyPESTO's full-batch optimizers by name: the fits' optimizers and the mini-batch polish.

Reused: `pypesto.optimize.FidesOptimizer` and `ScipyOptimizer` (L-BFGS-B). By name they run
with the mini-batch optimizers' integration rescue (`sbmlhybrid.optimize.rescued`), so that
full-batch and mini-batch methods meet failing conditions the same way. Here, below both
`multistart` and the mini-batch run, so that the run's polish needs nothing from
`multistart`.
"""

from __future__ import annotations

import logging

import pypesto.optimize as optimize

from sbmlhybrid.optimize.rescued import RescuedOptimizer

__all__ = ["make_optimizer"]


def make_optimizer(name: str | optimize.Optimizer, max_iter: int, rescue: bool = True
                   ) -> optimize.Optimizer:
    """pyPESTO optimizer for a name ("fides", "lbfgsb"), wrapped in `RescuedOptimizer`
    unless `rescue` is False; an instance is passed through unchanged."""
    if isinstance(name, optimize.Optimizer):
        return name
    if name == "fides":
        inner = optimize.FidesOptimizer(verbose=logging.WARNING, options={"maxiter": max_iter})
    else:
        inner = optimize.ScipyOptimizer(method="L-BFGS-B", options={"maxiter": max_iter})
    return RescuedOptimizer(inner) if rescue else inner
