"""Unrolling an ``nn.Sequential`` MLP into SBML assignment-rule formulas (hand-written).

A supported module is an ``nn.Sequential`` of ``nn.Linear`` layers and element-wise
activations (`ACTIVATIONS`); anything else raises `InputError` naming the layer.

Representation (chosen by measurement, see `benchmarks/hybrid_compile.py`): every unit gets
*two* assignment rules, the affine pre-activation ``z = b + sum_k W_k * a_k`` and the
activation ``a = act(z)``. AMICI differentiates rules w.r.t. parameters (``dwdp``) and other
rules (``dwdw``) symbolically and chains them at run time, so with this split each
``dwdp`` entry is a single symbol (``a_k`` for ``W_k``, 1 for ``b``) and each ``dwdw`` entry
is either a weight symbol or ``act'(z)`` of one symbol. Writing ``a = tanh(b + sum W a)``
as one rule instead repeats the whole sum inside every one of its ``dwdp`` entries
(``(1 - tanh(...)^2) * a_k``), which is what made the generated C++ explode.

Weights are SBML parameters whose values stay out of the SBML (they live in the PEtab
parameter table), so the generated code — and the compile-cache key — depend only on the
architecture, never on weight values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sbmlhybrid.errors import InputError, Issue

# torch activation class -> SBML L3 formula template in z ({z}); parameters via attributes.
ACTIVATIONS: dict[type[nn.Module], str] = {
    nn.Tanh: "tanh({z})",
    nn.Sigmoid: "1 / (1 + exp(-{z}))",
    nn.ReLU: "piecewise({z}, {z} > 0, 0)",
    nn.Softplus: "",  # beta-dependent, see _activation_formula
    nn.ELU: "",  # alpha-dependent
    nn.GELU: "",  # only approximate='tanh' (SBML has no erf)
    nn.SiLU: "{z} / (1 + exp(-({z})))",
    nn.Identity: "{z}",
}

OUTPUT_TRANSFORMS: dict[str, str] = {
    "identity": "{z}",
    "softplus": "ln(1 + exp({z}))",
    "sigmoid": "1 / (1 + exp(-{z}))",
    "exp": "exp({z})",
}


def _activation_formula(layer: nn.Module, z: str) -> str:
    if isinstance(layer, nn.Softplus):
        if layer.beta == 1:
            return f"ln(1 + exp({z}))"
        return f"ln(1 + exp({float(layer.beta)!r} * {z})) / {float(layer.beta)!r}"
    if isinstance(layer, nn.ELU):
        return f"piecewise({z}, {z} > 0, {float(layer.alpha)!r} * (exp({z}) - 1))"
    if isinstance(layer, nn.GELU):
        return f"0.5 * {z} * (1 + tanh(0.7978845608028654 * ({z} + 0.044715 * {z}^3)))"
    return ACTIVATIONS[type(layer)].format(z=z)


def torch_output_transform(name: str, z: torch.Tensor) -> torch.Tensor:
    """The output transform `name` applied in torch (same formula as in SBML)."""
    if name == "identity":
        return z
    if name == "softplus":
        return torch.log1p(torch.exp(z))
    if name == "sigmoid":
        return torch.sigmoid(z)
    return torch.exp(z)


@dataclass
class UnitLayer:
    """One ``nn.Linear`` (with the activations that follow it) of an unrolled network.

    Attributes:
        index: Position of the Linear in the Sequential (state_dict key prefix).
        n_in, n_out: Its in/out features.
        bias: Whether it has a bias.
        activations: The element-wise modules applied after it, in order.
    """

    index: int
    n_in: int
    n_out: int
    bias: bool
    activations: list[nn.Module]


def check_module(module: nn.Module, n_inputs: int | None = None,
                 n_outputs: int | None = None, name: str = "network") -> list[UnitLayer]:
    """Validate a module and return its layers.

    Raises:
        InputError: not an ``nn.Sequential``; a layer that is neither ``nn.Linear`` nor a
            supported activation (the message names the layer and its index); GELU with
            ``approximate='none'``; a leading activation; input/output sizes that do not
            match `n_inputs`/`n_outputs`.
    """
    if not isinstance(module, nn.Sequential):
        raise InputError(Issue(f"{name}: only nn.Sequential of Linear and element-wise "
                               f"activations is supported, got {type(module).__name__}",
                               entity=name))
    issues: list[Issue] = []
    layers: list[UnitLayer] = []
    for idx, layer in enumerate(module):
        label = f"layer {idx} ({type(layer).__name__})"
        if isinstance(layer, nn.Linear):
            layers.append(UnitLayer(idx, layer.in_features, layer.out_features,
                                    layer.bias is not None, []))
            issues.extend(_non_finite(name, label, layer))
        elif type(layer) in ACTIVATIONS:
            if isinstance(layer, nn.GELU) and layer.approximate != "tanh":
                issues.append(Issue(f"{name}: {label}: GELU(approximate='none') needs erf, "
                                    "which SBML lacks; use nn.GELU(approximate='tanh')",
                                    entity=type(layer).__name__))
            elif not layers:
                issues.append(Issue(f"{name}: {label}: the first layer must be nn.Linear",
                                    entity=type(layer).__name__))
            else:
                layers[-1].activations.append(layer)
        else:
            issues.append(Issue(
                f"{name}: unsupported layer {label}; supported: Linear and "
                f"{', '.join(sorted(c.__name__ for c in ACTIVATIONS))}",
                entity=type(layer).__name__))
    if not layers and not issues:
        issues.append(Issue(f"{name}: the Sequential has no nn.Linear layer", entity=name))
    if not issues:
        for prev, nxt in zip(layers[:-1], layers[1:]):
            if prev.n_out != nxt.n_in:
                issues.append(Issue(f"{name}: layer {nxt.index} expects {nxt.n_in} inputs "
                                    f"but layer {prev.index} gives {prev.n_out}"))
        if n_inputs is not None and layers[0].n_in != n_inputs:
            issues.append(Issue(f"{name}: first Linear has {layers[0].n_in} inputs but "
                                f"{n_inputs} input(s) are named", entity=name))
        if n_outputs is not None and layers[-1].n_out != n_outputs:
            issues.append(Issue(f"{name}: last Linear has {layers[-1].n_out} outputs but "
                                f"{n_outputs} target(s) are named", entity=name))
    if issues:
        raise InputError(issues, header=f"Unsupported network {name!r}")
    return layers


def _non_finite(name: str, label: str, layer: nn.Linear) -> list[Issue]:
    """Issues for NaN/inf weights or biases of a Linear layer (first bad entry named)."""
    out = []
    for kind, tensor in (("weight", layer.weight), ("bias", layer.bias)):
        if tensor is None:
            continue
        values = tensor.detach()
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            where = tuple(int(i) for i in bad[0])
            out.append(Issue(f"{name}: {label}: {len(bad)} non-finite {kind} value(s), first "
                             f"at {kind}{list(where)} = {float(values[where])}", entity=name))
    return out


def weight_id(prefix: str, layer: int, row: int, col: int | None) -> str:
    """SBML/PEtab id of weight [row, col] (or bias[row] when col is None) of a layer."""
    return f"{prefix}__b{layer}_{row}" if col is None else f"{prefix}__W{layer}_{row}_{col}"


def weight_ids(prefix: str, layers: list[UnitLayer]) -> list[tuple[str, str, tuple[int, ...]]]:
    """(parameter id, state_dict key, index) for every weight and bias, in state_dict order."""
    out = []
    for lay in layers:
        for r in range(lay.n_out):
            for c in range(lay.n_in):
                out.append((weight_id(prefix, lay.index, r, c), f"{lay.index}.weight", (r, c)))
        if lay.bias:
            for r in range(lay.n_out):
                out.append((weight_id(prefix, lay.index, r, None), f"{lay.index}.bias", (r,)))
    return out


def module_weights(module: nn.Module, prefix: str, layers: list[UnitLayer]) -> dict[str, float]:
    """Parameter id -> value (Python float, exact for float32/float64 modules)."""
    sd = module.state_dict()
    return {pid: float(sd[key][idx].item()) for pid, key, idx in weight_ids(prefix, layers)}


def load_module_weights(module: nn.Module, prefix: str, layers: list[UnitLayer],
                        values: Mapping[str, float]) -> None:
    """Write parameter values into the module's state_dict in place (missing ids: error)."""
    ids = weight_ids(prefix, layers)
    missing = [pid for pid, _k, _i in ids if pid not in values]
    if missing:
        raise InputError(f"{prefix}: no value for {len(missing)} weight(s), e.g. {missing[:3]}")
    bad = [pid for pid, _k, _i in ids if not math.isfinite(float(values[pid]))]
    if bad:
        raise InputError(Issue(f"{prefix}: non-finite value for {len(bad)} weight(s), e.g. "
                               f"{bad[0]} = {values[bad[0]]}", entity=bad[0]))
    sd = {k: v.clone() for k, v in module.state_dict().items()}
    for pid, key, idx in ids:
        sd[key][idx] = values[pid]
    module.load_state_dict(sd)


def unroll(prefix: str, layers: list[UnitLayer], input_symbols: list[str],
           representation: str = "split") -> tuple[list[tuple[str, str]], list[str]]:
    """Assignment rules of the network body.

    Args:
        prefix: Id prefix of all generated symbols.
        layers: From `check_module`.
        input_symbols: SBML symbols of the (normalized) network inputs, length n_in.
        representation: "split" (a rule for z and one for act(z), the default) or "fused"
            (one rule ``act(b + sum W a)`` per unit; kept for the compile benchmark).

    Returns:
        (rules, outputs): rules as (variable id, L3 formula) in dependency order, and the ids
        of the last layer's post-activation values (length n_out; output transforms and
        scales are applied by the caller).
    """
    rules: list[tuple[str, str]] = []
    prev = list(input_symbols)
    for lay in layers:
        cur = []
        for r in range(lay.n_out):
            terms = [f"{weight_id(prefix, lay.index, r, c)} * {prev[c]}" for c in range(lay.n_in)]
            if lay.bias:
                terms.insert(0, weight_id(prefix, lay.index, r, None))
            z = f"{prefix}__z{lay.index}_{r}"
            if representation == "fused":
                z = "(" + " + ".join(terms) + ")"
            else:
                rules.append((z, " + ".join(terms)))
            sym = z
            for k, act in enumerate(lay.activations):
                if isinstance(act, nn.Identity):
                    continue
                a = f"{prefix}__a{lay.index}_{r}" + (f"_{k}" if k else "")
                rules.append((a, _activation_formula(act, sym)))
                sym = a
            if sym == z and representation == "fused":  # identity: still one rule per unit
                sym = f"{prefix}__z{lay.index}_{r}"
                rules.append((sym, z))
            cur.append(sym)
        prev = cur
    return rules, prev


def numpy_forward(module: nn.Module, x: np.ndarray) -> np.ndarray:
    """Module output in float64 for inputs (n, n_in) (a float64 copy; module untouched)."""
    import copy

    m = copy.deepcopy(module).double()
    with torch.no_grad():
        return m(torch.as_tensor(np.asarray(x, dtype=float))).numpy()
