"""Mechanistic-prior transfer learning (the Elektrum pattern): pretrain, freeze, correct.

1. `fit_mechanistic`: fit the kinetic model to clean in vitro data given as a PEtab problem
   (reused: the project's multi-start fit, `sbmlhybrid.optimize.fit`, i.e. pyPESTO + fides).
2. `MechanisticTransferModel`: context encoder -> zero-initialized correction Delta on the
   (log-)parameters -> frozen mechanistic `SimulatorLayer` -> outcome (one observable at the
   layer's time points). At initialization the model *is* the mechanistic prediction; the
   corrections live in rate space, so a trained model stays interpretable (`delta`).
3. `train`: fine-tune on in vivo data (Adam, full batch, MSE + L1/L2 penalty on Delta);
   `set_frozen(False)` unfreezes the mechanistic parameters (pulled towards the in vitro fit
   by an L2 prior).

Hand-written: everything here except the fit (pyPESTO) and the optimizer (torch).
`train_network` fits the pure-network baseline used in comparisons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pypesto
import torch
from torch import nn

from sbmlhybrid.errors import InputError
from sbmlhybrid.layers import ParameterNet, SimulatorLayer, layer_from_objective, mlp
from sbmlhybrid.objective import ModelObjective, create_objective
from sbmlhybrid.optimize import FitSettings, fit
from sbmlhybrid.problem import Problem, SolverSettings, load_problem


@dataclass
class MechanisticFit:
    """Result of the in vitro fit.

    Attributes:
        x_free: Best estimated parameters on PEtab scale, shape (n_free,).
        ids: Their ids (`objective.x_free_ids`).
        fval: Best negative log-likelihood (priors included).
        result: The pyPESTO result (all starts, sorted).
        objective: The in vitro problem's objective (compiled model, parameter mapping).
    """

    x_free: np.ndarray
    ids: list[str]
    fval: float
    result: pypesto.Result
    objective: ModelObjective

    @property
    def parameters(self) -> dict[str, float]:
        """Best estimates on PEtab scale, by id."""
        return dict(zip(self.ids, self.x_free.tolist()))


def fit_mechanistic(problem: Problem | str | Path, n_starts: int = 8, seed: int = 0,
                    max_iter: int = 500, output: str | Path | None = None) -> MechanisticFit:
    """Step 1: multi-start maximum-likelihood fit of the mechanistic model to in vitro data.

    Args:
        problem: In vitro PEtab problem (YAML path or loaded).
        n_starts: Local optimizations (fides) from seeded start points.
        seed: Seed of the start points.
        max_iter: Iterations per start.
        output: Optional HDF5 checkpoint (resumes a compatible earlier run).
    """
    if not isinstance(problem, Problem):
        problem = load_problem(problem)
    objective = create_objective(problem)
    result = fit(objective, FitSettings(n_starts=n_starts, seed=seed, max_iter=max_iter),
                 output=output, progress=False)
    best = result.optimize_result.list[0]
    x = np.asarray(best.x, dtype=float)[objective.pypesto_problem.x_free_indices]
    return MechanisticFit(x, objective.x_free_ids, float(best.fval), result, objective)


def mechanistic_layer(mech: MechanisticFit, timepoints: Sequence[float],
                      input_ids: Sequence[str] | None = None,
                      solver: SolverSettings | None = None, sensitivity: str = "auto"
                      ) -> SimulatorLayer:
    """The fitted model as a layer: inputs = estimated parameters, one condition row.

    Inputs estimated on log/log10 PEtab scale enter on natural-log scale (so corrections are
    relative changes), linear-scale ones as they are. Fixed parameters (condition-table
    columns) are passed per element to `forward(..., fixed=...)`.
    """
    pp = mech.objective.problem.petab_problem
    ids = list(input_ids or mech.ids)
    scales = pp.parameter_df.reindex(ids)["parameterScale"].fillna("lin")
    input_scale = ["lin" if s == "lin" else "log" for s in scales]
    return layer_from_objective(mech.objective, ids, timepoints, x_free=mech.x_free,
                                conditions=[0], input_scale=input_scale,
                                sensitivity=sensitivity, solver=solver)


class MechanisticTransferModel(nn.Module):
    """Context encoder -> Delta (zero-initialized) -> frozen mechanistic layer -> outcome.

    Args:
        layer: The mechanistic layer (`mechanistic_layer`), inputs at their fitted values in
            its condition row 0.
        n_context: Number of context features.
        corrected: Layer inputs that receive a correction (e.g. the log-rates).
        outcome: Observable id that is the outcome (read at all layer time points).
        hidden: Hidden sizes of the encoder MLP.
        l1, l2: Penalties on Delta (mean |Delta|, mean Delta^2 over the batch).
        l2_mechanistic: L2 pull of unfrozen mechanistic inputs towards their fitted values.
    """

    def __init__(self, layer: SimulatorLayer, n_context: int, corrected: Sequence[str],
                 outcome: str, hidden: Sequence[int] = (16,), l1: float = 0.0,
                 l2: float = 1e-2, l2_mechanistic: float = 1e-1):
        super().__init__()
        if outcome not in layer.observable_ids:
            raise InputError(f"outcome {outcome!r} is not an observable {layer.observable_ids}")
        self.encoder = mlp(n_context, len(corrected), hidden, zero_last=True)
        self.net = ParameterNet(self.encoder, layer, targets=corrected, additive=True,
                                trainable_base=True)
        self.register_buffer("base_fit", self.net.base.detach().clone())
        self.outcome_index = layer.observable_ids.index(outcome)
        self.corrected = list(corrected)
        self.l1, self.l2, self.l2_mechanistic = l1, l2, l2_mechanistic
        self.set_frozen(True)

    def set_frozen(self, frozen: bool) -> None:
        """Freeze (default) or unfreeze the mechanistic parameters (the layer inputs' base)."""
        self.net.base.requires_grad_(not frozen)

    @property
    def frozen(self) -> bool:
        return not self.net.base.requires_grad

    def delta(self, context: torch.Tensor) -> torch.Tensor:
        """Corrections of the `corrected` inputs, shape (batch, n_corrected), input scale."""
        return self.encoder(context.to(torch.float64))

    def forward(self, context: torch.Tensor, fixed: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Outcome (batch, n_t) for context (batch, n_context) and fixed (batch, n_fixed)."""
        n = context.shape[0]
        y = self.net(context, condition=np.zeros(n, dtype=int), fixed=fixed)
        return y[:, :, self.outcome_index]

    def penalty(self, context: torch.Tensor) -> torch.Tensor:
        """L1/L2 penalty on Delta plus, when unfrozen, the pull to the in vitro fit."""
        d = self.delta(context)
        pen = self.l1 * d.abs().mean() + self.l2 * (d ** 2).mean()
        if not self.frozen:
            pen = pen + self.l2_mechanistic * ((self.net.base - self.base_fit) ** 2).sum()
        return pen


def train(model: nn.Module, inputs: Sequence[torch.Tensor | np.ndarray], target: torch.Tensor,
          steps: int = 150, lr: float = 0.02, weight_decay: float = 0.0,
          seed: int | None = None) -> list[float]:
    """Full-batch Adam on MSE(model(*inputs), target) + model.penalty(inputs[0]) if defined.

    Args:
        model: `MechanisticTransferModel` or any module (e.g. the network baseline).
        inputs: Positional inputs of `model` (first one: the context/features).
        target: Outcome, same shape as the model output.
        steps, lr, weight_decay: Adam settings.
        seed: Torch seed (for models with random initialization made inside).

    Returns:
        Training loss per step.
    """
    if seed is not None:
        torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return []
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    target = torch.as_tensor(target, dtype=torch.float64)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(*inputs) - target) ** 2).mean()
        if hasattr(model, "penalty"):
            loss = loss + model.penalty(inputs[0])
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history


class NetworkBaseline(nn.Module):
    """Pure network: features (batch, n_features) -> outcome in (0, 1), shape (batch, 1)."""

    def __init__(self, n_features: int, hidden: Sequence[int] = (32, 32)):
        super().__init__()
        self.net = mlp(n_features, 1, hidden, activation=nn.Tanh)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(features.to(torch.float64)))


def train_network(features: torch.Tensor, target: torch.Tensor, seed: int = 0,
                  hidden: Sequence[int] = (32, 32), steps: int = 1000, lr: float = 0.01,
                  weight_decay: float = 1e-3) -> NetworkBaseline:
    """Train the network-only baseline (features -> outcome, shape (batch, 1))."""
    torch.manual_seed(seed)
    model = NetworkBaseline(features.shape[1], hidden)
    train(model, [features], target, steps=steps, lr=lr, weight_decay=weight_decay)
    return model
