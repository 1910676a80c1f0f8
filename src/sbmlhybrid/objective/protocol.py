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
(function values and gradients; optimizers build Hessian approximations). Its
`EvaluateObjective.evaluate_conditions` is the one way to a subset of conditions on the
pyPESTO vector, used by its own calls (all conditions) and by the mini-batch optimizers
(`sbmlhybrid.optimize.minibatch_eval`); a subclass whose vector is not the free one
(`sbmlhybrid.objective.petab_v2.PetabV2Likelihood`: the parameter table's full vector)
overrides only that method.
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
    or through `EvaluateObjective.evaluate_conditions` when its pyPESTO problem evaluates it
    with an `EvaluateObjective` (`SciMLObjective`, `TorchODE`, `PetabV2Objective`)."""
    if hasattr(objective, "amici_objective"):
        return True
    pp_objective = getattr(getattr(objective, "pypesto_problem", None), "objective", None)
    parts = [pp_objective] + list(getattr(pp_objective, "_objectives", []))
    return any(isinstance(p, EvaluateObjective) and p.owner is objective for p in parts)


class EvaluateObjective(FunctionGradientObjective):
    """pyPESTO objective over an `Objective`'s ``evaluate`` on its free vector.

    A failed integration gives fval = inf (and a NaN gradient), so optimizers step back.

    Args:
        owner: The objective of the protocol evaluated.
        x_names: Ids of this objective's vector (default: ``owner.x_free_ids``; a subclass
            over another vector passes its own and overrides `evaluate_conditions`).
    """

    def __init__(self, owner: Any, x_names: Sequence[str] | None = None):
        super().__init__(x_names=list(owner.x_free_ids if x_names is None else x_names))
        self.owner = owner

    def evaluate_conditions(self, x: np.ndarray, conditions: Sequence[int] | None,
                            gradient: bool) -> Evaluation:
        """Negative log-likelihood over `conditions` (indices into ``owner.conditions``,
        None: all) at `x`, this objective's vector of shape (len(x_names),); the gradient
        (or None) has the same shape. Never raises on a failed integration (fval inf)."""
        return self.owner.evaluate(x, conditions=None if conditions is None
                                   else [int(i) for i in conditions],
                                   gradient=gradient, raise_on_failure=False)

    def call_unprocessed(self, x: np.ndarray, sensi_orders: tuple[int, ...], mode: str,
                         return_dict: bool, **kwargs: Any) -> dict[str, Any]:
        gradient = 1 in sensi_orders
        ev = self.evaluate_conditions(np.asarray(x, dtype=float), None, gradient)
        out: dict[str, Any] = {pc.FVAL: float(ev.fval)}
        if gradient:
            out[pc.GRAD] = np.full(len(x), np.nan) if ev.grad is None else \
                np.asarray(ev.grad, dtype=float)
        return out
