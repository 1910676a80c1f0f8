"""What a network replaces and what it sees: `NetworkTerm` (hand-written).

A `NetworkTerm` names a torch module, the SBML symbols it reads (species, parameters,
assignment-rule variables or ``time``), how those are normalized, and what each output
replaces in the model:

* ``"assignment"`` – the value of an assignment-rule variable (e.g. an intermediate rate);
* ``"parameter"`` – a constant parameter (it becomes an assignment-rule variable and leaves
  the parameter table);
* ``"rate"`` – a state's rate of change (the math of its rate rule);
* ``"reaction"`` – a reaction's whole rate law (kinetic law math, substance/time);
* ``"term"`` – a sub-expression of a rule's or reaction's math, given as ``term=`` formula
  (matched structurally after libsbml's formula normalization).

``kind="auto"`` picks assignment / parameter / reaction from what the target id is; rate
and term must be asked for explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from sbmlhybrid.errors import InputError
from sbmlhybrid.hybrid.network import OUTPUT_TRANSFORMS, UnitLayer, check_module

KINDS = ("auto", "assignment", "parameter", "rate", "reaction", "term")


def _per_output(value: object, n: int, what: str) -> list:
    if isinstance(value, str | int | float) or value is None:
        return [value] * n
    values = list(value)  # type: ignore[call-overload]
    if len(values) != n:
        raise InputError(f"{what}: {len(values)} entries given for {n} output(s)")
    return values


@dataclass
class NetworkTerm:
    """A torch module that replaces unknown kinetics in an SBML model.

    Args:
        name: Identifier prefix of all generated SBML/PEtab ids (letters, digits, _).
        module: ``nn.Sequential`` of ``nn.Linear`` and element-wise activations; its
            initialization gives the weights' nominal (start) values.
        inputs: SBML ids the network reads, or ``"time"``; length = first Linear's
            in_features.
        targets: What output j replaces (one id per output; see module docstring).
        kind: One kind for all targets or one per target (`KINDS`).
        term: With ``kind="term"``: the sub-expression (L3 formula) of the target's math to
            replace, one per target.
        input_scales: ``input id -> (center, scale)``: the network sees
            ``(value - center) / scale``. Inputs not given are scaled from the data range of
            the observable equal to that input (or the measurement times for ``time``):
            center = mid-range, scale = half-range, so the data map to [-1, 1].
        output_transform: ``identity``, ``softplus`` (non-negative rates), ``sigmoid`` or
            ``exp``; one for all outputs or one per output.
        output_scale: Output j is ``output_scale[j] * transform(network output j)``, in the
            target's units.
        weight_bound: Weights are estimated on linear scale in [-bound, bound].
        weight_prior_sd: Standard deviation of a normal prior N(0, sd^2) on every weight
            (PEtab objective prior, so it enters the objective as an L2 penalty
            sum w^2 / (2 sd^2)); None: no prior. It keeps a network from using large
            weights where the data do not demand them (overfitting, extrapolation).
        frozen: Keep the weights fixed (not estimated; they become AMICI constants).
        representation: "split" (default: separate rules for pre-activation and
            activation, small derivative code) or "fused" (one rule per unit).
    """

    name: str
    module: nn.Module
    inputs: Sequence[str]
    targets: Sequence[str]
    kind: str | Sequence[str] = "auto"
    term: str | Sequence[str | None] | None = None
    input_scales: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    output_transform: str | Sequence[str] = "identity"
    output_scale: float | Sequence[float] = 1.0
    weight_bound: float = 10.0
    weight_prior_sd: float | None = None
    frozen: bool = False
    representation: str = "split"

    def __post_init__(self) -> None:
        if not self.name.replace("_", "a").isalnum() or self.name[0].isdigit() \
                or "__" in self.name:
            raise InputError(f"network name {self.name!r} must be an identifier without '__'")
        self.inputs = list(self.inputs)
        self.targets = [self.targets] if isinstance(self.targets, str) else list(self.targets)
        self.layers: list[UnitLayer] = check_module(self.module, len(self.inputs),
                                                    len(self.targets), self.name)
        n = len(self.targets)
        self.kinds: list[str] = _per_output(self.kind, n, f"{self.name}: kind")
        self.terms: list[str | None] = _per_output(self.term, n, f"{self.name}: term")
        self.transforms: list[str] = _per_output(self.output_transform, n,
                                                 f"{self.name}: output_transform")
        self.scales: list[float] = [float(s) for s in _per_output(
            self.output_scale, n, f"{self.name}: output_scale")]
        for k, t, tr in zip(self.kinds, self.terms, self.transforms):
            if k not in KINDS:
                raise InputError(f"{self.name}: unknown kind {k!r}; choose from {KINDS}")
            if (k == "term") != (t is not None):
                raise InputError(f"{self.name}: term= is required with kind='term' and only "
                                 "allowed with it")
            if tr not in OUTPUT_TRANSFORMS:
                raise InputError(f"{self.name}: unknown output_transform {tr!r}; choose from "
                                 f"{sorted(OUTPUT_TRANSFORMS)}")
        unknown = set(self.input_scales) - set(self.inputs)
        if unknown:
            raise InputError(f"{self.name}: input_scales for ids that are not inputs: "
                             f"{sorted(unknown)}")
        for iid, (_c, s) in self.input_scales.items():
            if not s > 0:
                raise InputError(f"{self.name}: input scale of {iid} must be > 0, got {s}")
        if self.representation not in ("split", "fused"):
            raise InputError(f"{self.name}: representation must be 'split' or 'fused'")
        if not self.weight_bound > 0:
            raise InputError(f"{self.name}: weight_bound must be > 0")
        sd = self.weight_prior_sd
        if sd is not None and not (np.isfinite(sd) and sd > 0):
            raise InputError(f"{self.name}: weight_prior_sd must be a positive number, got {sd}")
