"""The one objective protocol every kind of problem implements, and its pyPESTO wrapper.

`Objective` names what `fit`, `profile`, `sample`, the CLI and the tests use, in pyPESTO's
conventions: free-parameter ids (`x_free_ids`, the order of free vectors and gradients),
nominal values (`x_nominal_free`), bounds and scales as pyPESTO keeps them
(``pypesto_problem.lb`` / ``.ub`` over the free vector, ``pypesto_problem.x_scales`` over the
full one), ``evaluate(x, conditions=..., gradient=True)`` ->
`Evaluation` (negative log-likelihood, priors excluded, and its gradient on the free vector),
``simulate(x)`` -> PEtab simulation table, and ``pypesto_problem``: a `pypesto.Problem` whose
objective computes the same value and gradient (plus the prior terms of a log-posterior).
Implemented by `ModelObjective` (PEtab v1, bare SBML, hybrid problems), `PetabV2Objective`,
`sbmlhybrid.sciml.objective.SciMLObjective` and the torch-side ODE `sbmlhybrid.hybrid.TorchODE`
(`TorchODEObjective`, its former adapter, delegates to it). Taken by `fit`, `profile`,
`sample`, the CLI and the torch layer `sbmlhybrid.layers.ObjectiveLayer`.

`EvaluateObjective` is the pyPESTO side for objectives that have no pyPESTO objective of their
own: a `pypesto.objective.ObjectiveBase` over the free vector that calls ``evaluate``
(function values and gradients; optimizers build Hessian approximations).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pypesto
from pypesto import C as pc

from sbmlhybrid.objective._common import Evaluation, FunctionGradientObjective

__all__ = ["EvaluateObjective", "Objective", "supports_subsets"]


@runtime_checkable
class Objective(Protocol):
    """What every objective of a problem offers (see the module docstring).

    Attributes:
        problem: The problem it was made from (``problem.name`` names outputs).
        conditions: The units `evaluate` can take subsets of (conditions or experiments).
        pypesto_problem: pyPESTO problem over the same parameters (bounds ``lb``/``ub``,
            scales ``x_scales``; its objective includes the priors).
    """

    problem: Any
    conditions: list
    pypesto_problem: pypesto.Problem

    @property
    def x_free_ids(self) -> list[str]:
        """Ids of the free parameters (the order of free vectors and gradients)."""

    @property
    def x_nominal_free(self) -> np.ndarray:
        """Nominal free parameters on their scales, shape (n_free,)."""

    def evaluate(self, x_free: Sequence[float] | None = None,
                 conditions: Sequence[int | str] | None = None, gradient: bool = True,
                 raise_on_failure: bool = True) -> Evaluation:
        """Negative log-likelihood (priors excluded) and gradient at `x_free`."""

    def simulate(self, x_free: Sequence[float] | None = None) -> pd.DataFrame:
        """PEtab simulation table at `x_free` (default: nominal)."""


def supports_subsets(objective: object) -> bool:
    """Whether the mini-batch optimizers (`sbmlhybrid.optimize.minibatch_eval`) can run
    condition subsets of `objective`: through pyPESTO's AMICI objective (`ModelObjective`),
    or through ``evaluate(x, conditions=...)`` when its pyPESTO problem evaluates it with an
    `EvaluateObjective` (`SciMLObjective`, `TorchODE`), whose vector is the free vector."""
    if hasattr(objective, "amici_objective"):
        return True
    pp_objective = getattr(getattr(objective, "pypesto_problem", None), "objective", None)
    parts = [pp_objective] + list(getattr(pp_objective, "_objectives", []))
    return any(isinstance(p, EvaluateObjective) and p.owner is objective for p in parts)


class EvaluateObjective(FunctionGradientObjective):
    """pyPESTO objective over an `Objective`'s ``evaluate`` on its free vector.

    A failed integration gives fval = inf (and a NaN gradient), so optimizers step back.
    """

    def __init__(self, owner: Any):
        super().__init__(x_names=list(owner.x_free_ids))
        self.owner = owner

    def call_unprocessed(self, x: np.ndarray, sensi_orders: tuple[int, ...], mode: str,
                         return_dict: bool, **kwargs: Any) -> dict[str, Any]:
        gradient = 1 in sensi_orders
        ev = self.owner.evaluate(np.asarray(x, dtype=float), gradient=gradient,
                                 raise_on_failure=False)
        out: dict[str, Any] = {pc.FVAL: float(ev.fval)}
        if gradient:
            out[pc.GRAD] = np.full(len(x), np.nan) if ev.grad is None else \
                np.asarray(ev.grad, dtype=float)
        return out
