"""Any objective as a differentiable PyTorch function: parameters -> negative log-likelihood.

`ObjectiveLayer` takes every object of the objective protocol (`sbmlhybrid.objective
.Objective`: `ModelObjective` for PEtab v1 / bare SBML / hybrid problems, `PetabV2Objective`,
`sbmlhybrid.sciml.SciMLObjective`, `sbmlhybrid.hybrid.TorchODE`) and uses only the protocol:
``x_free_ids``, ``x_nominal_free``, ``conditions`` and ``evaluate(x, conditions=...,
gradient=...)``. The forward pass is ``evaluate``'s value, the backward pass its gradient times
the incoming cotangent (the objective's own sensitivities: AMICI forward/adjoint, torch
autograd through the SciML networks or the RK4 steps); a torch model that predicts (some of)
a problem's parameters can so be trained on the problem's likelihood, on any condition
subset per call (mini-batches). Hand-written: the `torch.autograd.Function` and the mapping of
layer inputs into the free vector. For observables (not the likelihood) as the layer's
output, see `SimulatorLayer` (PEtab v1 objectives: it reads their AMICI ExpData).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from sbmlhybrid.errors import InputError
from sbmlhybrid.objective import Objective, free_vector

__all__ = ["ObjectiveLayer", "objective_layer"]


class _Evaluate(torch.autograd.Function):
    """theta (batch, n_in) -> fval (batch,); backward: g * d fval / d theta."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, layer: ObjectiveLayer,
                conditions: Sequence[int | str] | None) -> torch.Tensor:
        need = ctx.needs_input_grad[0]
        values, grads = [], []
        for row in theta.detach().cpu().numpy().astype(float):
            # autograd is off inside a Function's forward: the objectives that differentiate
            # with torch (SciML networks, the torch ODE) turn it on in their own evaluate
            ev = layer.objective.evaluate(layer.free_vector(row), conditions, gradient=need)
            values.append(ev.fval)
            if need:
                grads.append(np.asarray(ev.grad, dtype=float)[layer.input_index])
        ctx.grads = np.array(grads) if need else None
        return torch.tensor(values, dtype=torch.float64, device=theta.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):
        grad = g.detach().cpu().numpy()[:, None] * ctx.grads
        return torch.from_numpy(grad).to(g.device), None, None


class ObjectiveLayer(nn.Module):
    """Negative log-likelihood of any `Objective` (priors excluded), differentiable.

    Inputs are some of the objective's free parameters, on the scale of its free vector
    (``pypesto_problem.x_scales``: PEtab scales for v1 and SciML, linear for PEtab v2); the
    other free parameters keep the values of `x_free`.

    Args:
        objective: Any object of the objective protocol.
        input_ids: Free parameters that become inputs, in input order (default: all,
            ``objective.x_free_ids``).
        x_free: Free vector that fills the non-inputs, shape (n_free,) (default: nominal).
        conditions: Condition (experiment) ids or indices of every call (default: all);
            `forward` may override them.
    """

    def __init__(self, objective: Objective, input_ids: Sequence[str] | None = None,
                 x_free: Sequence[float] | None = None,
                 conditions: Sequence[int | str] | None = None):
        super().__init__()
        if not isinstance(objective, Objective):
            raise InputError(f"{type(objective).__name__} is not an objective (it lacks "
                             "what sbmlhybrid.objective.Objective names)")
        self.objective = objective
        ids = list(objective.x_free_ids)
        self.input_ids = ids if input_ids is None else list(input_ids)
        unknown = [p for p in self.input_ids if p not in ids]
        if unknown:
            raise InputError(f"layer inputs {unknown} are not free parameters of the "
                             f"objective (free: {ids})")
        if len(set(self.input_ids)) != len(self.input_ids):
            raise InputError(f"duplicate layer inputs in {self.input_ids}")
        self.input_index = np.array([ids.index(p) for p in self.input_ids], dtype=int)
        self.x_free = free_vector(x_free, np.asarray(objective.x_nominal_free, dtype=float),
                                  ids).copy()
        self.conditions = None if conditions is None else list(conditions)

    def free_vector(self, inputs: np.ndarray) -> np.ndarray:
        """The objective's free vector with `inputs` (shape (n_in,)) in the input slots."""
        x = self.x_free.copy()
        x[self.input_index] = inputs
        return x

    def default_inputs(self) -> torch.Tensor:
        """The inputs' values in `x_free`, shape (n_in,)."""
        return torch.from_numpy(self.x_free[self.input_index].copy())

    def forward(self, theta: torch.Tensor,
                conditions: Sequence[int | str] | None = None) -> torch.Tensor:
        """Negative log-likelihood.

        Args:
            theta: Inputs, shape (n_in,) or (batch, n_in) (one evaluation per row).
            conditions: Conditions of this call (default: the layer's).

        Returns:
            Shape () for one input vector, (batch,) for a batch; float64.

        Raises:
            SimulationError: an integration failed (the objective names where).
        """
        squeeze = theta.dim() == 1
        theta = (theta.reshape(1, -1) if squeeze else theta).to(torch.float64)
        if theta.dim() != 2 or theta.shape[1] != len(self.input_ids):
            raise InputError(f"layer input has shape {tuple(theta.shape)}, expected (batch, "
                             f"{len(self.input_ids)}) for {self.input_ids}")
        fval = _Evaluate.apply(theta, self, self.conditions if conditions is None
                               else list(conditions))
        return fval[0] if squeeze else fval

    def extra_repr(self) -> str:
        return f"objective={type(self.objective).__name__}, inputs={self.input_ids}"


def objective_layer(objective: Objective, input_ids: Sequence[str] | None = None,
                    x_free: Sequence[float] | None = None,
                    conditions: Sequence[int | str] | None = None) -> ObjectiveLayer:
    """`ObjectiveLayer` over any objective (see there for the arguments)."""
    return ObjectiveLayer(objective, input_ids, x_free, conditions)
