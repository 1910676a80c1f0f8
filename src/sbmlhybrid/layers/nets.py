"""Small torch compositions around `SimulatorLayer`: networks before and after the simulation.

Hand-written, plain `nn.Module`s (they train with any torch optimizer):

* `ParameterNet`: covariates (batch, n_cov) -> network -> model inputs (batch, n_in) ->
  simulation -> observables (batch, n_t, n_y). The network output either replaces the inputs
  or is added to base inputs (e.g. log-parameters), optionally only for some inputs.
* `ObservableNet`: model inputs -> simulation -> a network on the simulated observables ->
  outcome (batch, n_out): a learned observation model.
* `mlp`: a float64 multilayer perceptron whose last layer can start at zero, so a correction
  network starts exactly at the mechanistic prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from sbmlhybrid.errors import InputError
from sbmlhybrid.layers.simulator import SimulatorLayer


def mlp(n_in: int, n_out: int, hidden: Sequence[int] = (16,), activation: type[nn.Module] = nn.Tanh,
        zero_last: bool = False) -> nn.Sequential:
    """Float64 MLP (n_in -> hidden... -> n_out); `zero_last` zero-initializes the last layer."""
    sizes = [n_in, *hidden, n_out]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, dtype=torch.float64))
        if i < len(sizes) - 2:
            layers.append(activation())
    if zero_last:
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class ParameterNet(nn.Module):
    """Covariates -> network -> model inputs -> simulation.

    Args:
        network: Maps (batch, n_cov) to (batch, len(targets)).
        layer: The simulator layer.
        targets: Inputs of the layer the network sets (default: all, in layer order).
        base: Values of all layer inputs on input scale, shape (n_in,) (default: the layer's
            first condition row); the network output is added to base[targets] when
            `additive`, else replaces it.
        additive: Add the network output to the base (corrections) instead of replacing.
        trainable_base: Make `base` an `nn.Parameter` (e.g. unfreezing mechanistic values).
    """

    def __init__(self, network: nn.Module, layer: SimulatorLayer,
                 targets: Sequence[str] | None = None, base: torch.Tensor | None = None,
                 additive: bool = True, trainable_base: bool = False):
        super().__init__()
        self.network = network
        self.layer = layer
        targets = list(targets or layer.input_ids)
        unknown = set(targets) - set(layer.input_ids)
        if unknown:
            raise InputError(f"targets {sorted(unknown)} are not layer inputs {layer.input_ids}")
        self.register_buffer("target_index", torch.tensor(
            [layer.input_ids.index(t) for t in targets], dtype=torch.long))
        base = layer.default_inputs([0])[0] if base is None else torch.as_tensor(
            base, dtype=torch.float64).clone()
        if base.shape != (len(layer.input_ids),):
            raise InputError(f"base has shape {tuple(base.shape)}, expected "
                             f"({len(layer.input_ids)},)")
        if trainable_base:
            self.base = nn.Parameter(base)
        else:
            self.register_buffer("base", base)
        self.additive = additive

    def parameters_for(self, covariates: torch.Tensor) -> torch.Tensor:
        """Model inputs (batch, n_in) on input scale for covariates (batch, n_cov)."""
        out = self.network(covariates.to(torch.float64))
        theta = self.base.expand(out.shape[0], -1).clone()
        if self.additive:
            theta[:, self.target_index] = theta[:, self.target_index] + out
        else:
            theta[:, self.target_index] = out
        return theta

    def forward(self, covariates: torch.Tensor, condition: Sequence[int] | None = None,
                fixed: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Observables (batch, n_t, n_y) for covariates (batch, n_cov)."""
        return self.layer(self.parameters_for(covariates), condition=condition, fixed=fixed)


class ObservableNet(nn.Module):
    """Model inputs -> simulation -> network on the observables -> outcome.

    Args:
        layer: The simulator layer.
        head: Maps the flattened observables (batch, n_t * n_y) to (batch, n_out).
    """

    def __init__(self, layer: SimulatorLayer, head: nn.Module):
        super().__init__()
        self.layer = layer
        self.head = head

    def forward(self, theta: torch.Tensor, condition: Sequence[int] | None = None,
                fixed: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Outcome (batch, n_out) for inputs (batch, n_in)."""
        y = self.layer(theta, condition=condition, fixed=fixed)
        return self.head(y.reshape(y.shape[0], -1))
