"""The objective protocol's side of `TorchODE` (private to `sbmlhybrid.hybrid`).

`TorchODE` inherits `ProtocolMethods`, so the torch-side ODE is itself an object of the one
objective protocol (`sbmlhybrid.objective.Objective`) that `fit`, `profile`, `sample`, the
torch layer (`sbmlhybrid.layers.ObjectiveLayer`) and the tests take. Hand-written glue over
what `TorchODE` computes: ``evaluate`` is ``TorchODE.nll`` on a condition subset with its
autograd gradient, ``simulate`` the measurement table with ``measurement_simulations``.
Reused: the project's free-vector check and condition lookup (`sbmlhybrid.objective`) and
pyPESTO's problem over `EvaluateObjective` (start points uniform within the PEtab bounds,
pyPESTO's default). Kept apart from `torch_ode` so that the simulator stays readable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import petab.v1 as petab
import pypesto
import torch

from sbmlhybrid.errors import InputError, SimulationError
from sbmlhybrid.objective import EvaluateObjective, Evaluation, free_vector, lookup_indices

DTYPE = torch.float64


class ProtocolMethods:
    """`evaluate`, `simulate`, `pypesto_problem` and friends over a `TorchODE`'s tables.

    Expects of the class it is mixed into: ``x_free_ids``, ``x_nominal_free``, ``scales``,
    ``bounds`` (n_free, 2), ``condition_ids``, ``measurements`` (the measurement table),
    ``nll(x, conditions)`` and ``measurement_simulations(x, conditions)`` on index lists.
    """

    x_free_ids: list[str]
    x_nominal_free: np.ndarray
    scales: list[str]
    bounds: np.ndarray
    condition_ids: list[str]
    measurements: pd.DataFrame

    def _init_protocol(self, problem: Any) -> None:
        """Set ``problem``, ``conditions`` and ``pypesto_problem`` (call after the tables)."""
        self.problem = problem
        self.conditions: list[str] = list(self.condition_ids)
        bounds = np.asarray(self.bounds, dtype=float)
        self.pypesto_problem = pypesto.Problem(
            objective=EvaluateObjective(self), lb=bounds[:, 0], ub=bounds[:, 1],
            x_names=list(self.x_free_ids), x_scales=list(self.scales), copy_objective=False)

    def condition_indices(self, conditions: Sequence[int | str] | None) -> list[int]:
        """Indices into `conditions` for condition ids or integer indices (default: all)."""
        return lookup_indices(conditions, self.condition_ids, "condition")

    def _x(self, x_free: Sequence[float] | None, grad: bool) -> torch.Tensor:
        x = free_vector(x_free, np.asarray(self.x_nominal_free, dtype=float), self.x_free_ids)
        return torch.tensor(x, dtype=DTYPE, requires_grad=grad)

    def evaluate(self, x_free: Sequence[float] | None = None,
                 conditions: Sequence[int | str] | None = None, gradient: bool = True,
                 raise_on_failure: bool = True) -> Evaluation:
        """Negative log-likelihood (and its autograd gradient) over all or some conditions.

        Exact on subsets: the conditions integrate independently on one time grid, so
        single-condition values and gradients sum to the full ones.

        Args:
            x_free: Estimated parameters on PEtab scale, shape (n_free,); default nominal.
            conditions: Condition ids or indices; default all.
            gradient: Also compute the gradient, shape (n_free,).
            raise_on_failure: Raise `SimulationError` when the simulation fails or the value
                is not finite; otherwise return fval=inf and grad=nan.
        """
        idx = self.condition_indices(conditions)
        x = self._x(x_free, gradient)
        try:
            # grad mode on even where the caller turned it off (a torch.autograd.Function's
            # forward: `sbmlhybrid.layers.ObjectiveLayer`)
            with torch.set_grad_enabled(gradient):
                loss = self.nll(x, idx)  # type: ignore[attr-defined]
            finite = bool(torch.isfinite(loss))
        except (InputError, FloatingPointError) as err:
            if raise_on_failure:
                raise SimulationError(f"torch ODE simulation failed: {err}") from err
            loss, finite = None, False
        if not finite:
            if raise_on_failure:
                raise SimulationError("torch ODE: objective not finite at parameters "
                                      f"{dict(zip(self.x_free_ids, np.round(x.tolist(), 6)))}")
            return Evaluation(np.inf, np.full(len(x), np.nan) if gradient else None)
        if not gradient:
            return Evaluation(float(loss.detach()), None)
        (grad,) = torch.autograd.grad(loss, x)
        return Evaluation(float(loss.detach()), grad.numpy().copy())

    def llh(self, x_free: Sequence[float] | None = None) -> float:
        """Log-likelihood (priors excluded) at `x_free` (default: nominal)."""
        return -self.evaluate(x_free, gradient=False).fval

    def simulate(self, x_free: Sequence[float] | None = None,
                 conditions: Sequence[int | str] | None = None) -> pd.DataFrame:
        """PEtab simulation table: the measurement rows of the conditions, with
        ``simulation`` in place of ``measurement``."""
        idx = self.condition_indices(conditions)
        with torch.no_grad():
            values = self.measurement_simulations(  # type: ignore[attr-defined]
                self._x(x_free, False), idx).numpy()
        table = self.measurements
        keep = table[petab.SIMULATION_CONDITION_ID].isin([self.condition_ids[i] for i in idx])
        table = table.loc[keep].copy()
        table[petab.SIMULATION] = values
        return table.drop(columns=[petab.MEASUREMENT]).reset_index(drop=True)
