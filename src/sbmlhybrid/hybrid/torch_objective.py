"""`TorchODEObjective`: the torch-side ODE (`TorchODE`) behind the one objective protocol.

An adapter, so that `sbmlhybrid.optimize.fit`, `sbmlhybrid.analysis.profile` / `sample` and
the tests take the torch path like any other objective (`sbmlhybrid.objective.Objective`):
free-parameter ids, nominal values, scales and bounds are the PEtab table's (as `TorchODE`
reads them), ``evaluate`` is ``TorchODE.nll`` with its autograd gradient, ``simulate`` the
measurement table with ``TorchODE.measurement_simulations``, and ``pypesto_problem`` wraps
``evaluate`` (`sbmlhybrid.objective.EvaluateObjective`; start points uniform within the
bounds, pyPESTO's default). Condition subsets are not available: `TorchODE` integrates all
conditions as one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import petab.v1 as petab
import pypesto
import torch

from sbmlhybrid.errors import InputError, NotSupportedError, SimulationError
from sbmlhybrid.hybrid.torch_ode import DTYPE, TorchODE
from sbmlhybrid.objective import EvaluateObjective, Evaluation

__all__ = ["TorchODEObjective"]


class TorchODEObjective:
    """Negative log-likelihood of a problem simulated by `TorchODE` (fixed-step RK4).

    Args:
        problem: The (hybrid) PEtab problem.
        ode: Its `TorchODE`; built from `problem` with `ode_options` if omitted.
        **ode_options: `TorchODE` keyword arguments (``flux_coupling``, ``max_step``).
    """

    def __init__(self, problem: Any, ode: TorchODE | None = None, **ode_options: Any):
        self.problem = problem
        self.ode = ode if ode is not None else TorchODE(problem, **ode_options)
        self.conditions: list[str] = list(self.ode.condition_ids)
        bounds = np.asarray(self.ode.bounds, dtype=float)
        self.pypesto_problem = pypesto.Problem(
            objective=EvaluateObjective(self), lb=bounds[:, 0], ub=bounds[:, 1],
            x_names=self.x_free_ids, x_scales=list(self.ode.scales), copy_objective=False)

    @property
    def x_free_ids(self) -> list[str]:
        return list(self.ode.x_free_ids)

    @property
    def x_nominal_free(self) -> np.ndarray:
        return np.asarray(self.ode.x_nominal_free, dtype=float)

    def _x(self, x_free: Sequence[float] | None) -> np.ndarray:
        x = self.x_nominal_free if x_free is None else np.asarray(x_free, dtype=float)
        if x.shape != (len(self.x_free_ids),):
            raise InputError(f"parameter vector has shape {x.shape}, expected "
                             f"({len(self.x_free_ids)},) for {self.x_free_ids}")
        return x

    def evaluate(self, x_free: Sequence[float] | None = None,
                 conditions: Sequence[int | str] | None = None, gradient: bool = True,
                 raise_on_failure: bool = True) -> Evaluation:
        """Negative log-likelihood of all conditions (and its autograd gradient)."""
        if conditions is not None:
            raise NotSupportedError("TorchODEObjective evaluates all conditions as one batched "
                                    "integration; condition subsets are not supported")
        x = torch.tensor(self._x(x_free), dtype=DTYPE, requires_grad=gradient)
        try:
            loss = self.ode.nll(x)
            finite = bool(torch.isfinite(loss))
        except (InputError, FloatingPointError) as err:
            loss, finite = None, False
            if raise_on_failure:
                raise SimulationError(f"torch ODE simulation failed: {err}") from err
        if not finite:
            if raise_on_failure:
                raise SimulationError("torch ODE: objective not finite at parameters "
                                      f"{dict(zip(self.x_free_ids, np.round(x.tolist(), 6)))}")
            return Evaluation(np.inf, np.full(len(x), np.nan) if gradient else None)
        if not gradient:
            return Evaluation(float(loss.detach()), None)
        loss.backward()
        return Evaluation(float(loss.detach()), x.grad.numpy().copy())

    def __call__(self, x_free: Sequence[float]) -> tuple[float, np.ndarray]:
        ev = self.evaluate(x_free)
        return ev.fval, ev.grad  # type: ignore[return-value]

    def llh(self, x_free: Sequence[float] | None = None) -> float:
        return -self.evaluate(x_free, gradient=False).fval

    def simulate(self, x_free: Sequence[float] | None = None) -> pd.DataFrame:
        """PEtab simulation table: the measurement table with ``simulation``."""
        x = torch.tensor(self._x(x_free), dtype=DTYPE)
        with torch.no_grad():
            values = self.ode.measurement_simulations(x).numpy()
        table = self.ode.measurements.copy()
        table[petab.SIMULATION] = values
        return table.drop(columns=[petab.MEASUREMENT])
