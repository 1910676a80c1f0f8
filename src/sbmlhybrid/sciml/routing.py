"""Where each network of a PEtab SciML problem reads from and writes to (hand-written).

The mapping table names network slots (``net1.inputs[0][1]``, ``net1.outputs[0][0]``,
``net1.parameters``); the hybridization table and the condition table say what feeds an
input slot (a model entity, a parameter, ``array`` = an array-file input, or a number) and
which model entity an output sets. `network_io` collects that per network; `as_sequential`
turns a network whose graph is ``[cat(inputs)] -> Linear/activation chain`` into the
``nn.Sequential`` the hybrid compile path (`sbmlhybrid.hybrid`) unrolls into SBML;
`argument_sizes` reads from that chain how many values an element-mapped argument takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from sbmlhybrid.errors import Issue, NotSupportedError
from sbmlhybrid.sciml.mapping import SLOT as _SLOT
from sbmlhybrid.sciml.nn import SciMLNet

# forward-graph activations the SBML unroll supports (torch.fx method/function names)
_ACTIVATION_NAMES: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus,
    "elu": nn.ELU, "identity": nn.Identity, "silu": nn.SiLU,
}


@dataclass
class InputSlot:
    """One network input element.

    Attributes:
        petab_id: The PEtab id mapped to it.
        arg: Forward-argument index.
        index: Element index in that argument (None: the whole argument, an array input).
        source: What feeds it (hybridization ``targetValue``: model/parameter id, number,
            or ``array``); None if only the condition or parameter table sets it.
    """

    petab_id: str
    arg: int
    index: int | None
    source: str | None = None


@dataclass
class NetworkIO:
    """Inputs and outputs of one network.

    Attributes:
        inputs: Input slots in (argument, element) order: once
            `sbmlhybrid.sciml.mapping.check_input_indices` passed, element j of an argument
            is at position j among that argument's slots.
        outputs: Output element index -> PEtab output id.
        targets: PEtab output id -> model entities it sets (hybridization table).
    """

    inputs: list[InputSlot] = field(default_factory=list)
    outputs: dict[int, str] = field(default_factory=dict)
    targets: dict[str, list[str]] = field(default_factory=dict)


def network_io(nets: dict[str, SciMLNet], mapping: dict[str, str],
               hybridization: dict[str, str], where: str | None = None
               ) -> dict[str, NetworkIO]:
    """Collect every network's slots from the mapping and hybridization tables.

    Args:
        nets: Network id -> module.
        mapping: petabEntityId -> modelEntityId.
        hybridization: targetId -> targetValue.
        where: File for error messages.

    Raises:
        NotSupportedError: output slots of a multi-output argument (``outputs[1]``) or a
            whole-array output.
    """
    out = {n: NetworkIO() for n in nets}
    for pid, model_id in mapping.items():
        m = _SLOT.match(model_id)
        if not m or m.group("net") not in nets:
            continue
        io = out[m.group("net")]
        i, j = int(m.group("i")), m.group("j")
        if m.group("kind") == "inputs":
            io.inputs.append(InputSlot(pid, i, None if j is None else int(j),
                                       hybridization.get(pid)))
        else:
            if i != 0 or j is None:
                raise NotSupportedError(Issue(f"network output slot {model_id!r}: only "
                                              "elements of the first output are supported",
                                              where, entity=pid))
            io.outputs[int(j)] = pid
    for target, value in hybridization.items():
        for io in out.values():
            if value in io.outputs.values():
                io.targets.setdefault(value, []).append(target)
    for io in out.values():
        io.inputs.sort(key=lambda s: (s.arg, -1 if s.index is None else s.index))
    return out


def as_sequential(net: SciMLNet) -> tuple[nn.Sequential, dict[int, str]]:
    """An ``nn.Sequential`` computing the same function on the concatenated inputs.

    Supported graphs: placeholders, optionally one ``cat`` of all of them, then a chain of
    ``Linear`` layers and element-wise activations (modules or tanh/relu/sigmoid/...
    methods and functions), then the output.

    Returns:
        (module, index -> layer id): Sequential position of every Linear and the SciML
        layer id whose ``weight``/``bias`` it holds. The Linear modules are the network's
        own (shared), so its current weights are used.

    Raises:
        NotSupportedError: naming the first node or layer outside that pattern.
    """
    nodes = list(net.spec.forward)
    placeholders = [n.name for n in nodes if n.op == "placeholder"]
    prev: str | None = placeholders[0] if len(placeholders) == 1 else None
    seq: list[nn.Module] = []
    layer_of: dict[int, str] = {}

    def fail(node: Any, why: str) -> NotSupportedError:
        return NotSupportedError(Issue(
            f"network {net.nn_model_id!r}: node {node.name!r} ({node.op} {node.target}) "
            f"cannot be unrolled into SBML: {why}", entity=str(node.target)))

    for node in nodes:
        if node.op == "placeholder":
            continue
        args = node.args
        if node.op == "output":
            if args != [prev] and args != [[prev]]:
                raise fail(node, "the output must be the last node of the chain")
            break
        if node.op == "call_function" and node.target == "cat" and prev is None:
            if [list(a) for a in args[:1]] != [placeholders] or \
                    node.kwargs.get("dim", args[1] if len(args) > 1 else 0) not in (0, -1):
                raise fail(node, "only a concatenation of all inputs along dim 0 is supported")
            prev = node.name
            continue
        if not args or args[0] != prev:
            raise fail(node, "only a single chain of layers is supported")
        if node.op == "call_module":
            layer = getattr(net, node.target)
            if isinstance(layer, nn.Linear):
                layer_of[len(seq)] = node.target
                seq.append(layer)
            elif type(layer) in _ACTIVATION_NAMES.values():
                seq.append(layer)
            else:
                raise fail(node, f"layer type {type(layer).__name__} is not supported (Linear "
                                 f"and {sorted(_ACTIVATION_NAMES)} are)")
        elif node.op in ("call_method", "call_function") and node.target in _ACTIVATION_NAMES \
                and len(args) == 1 and set(node.kwargs) <= {"inplace"}:  # no numeric effect
            seq.append(_ACTIVATION_NAMES[node.target]())
        else:
            raise fail(node, f"supported are Linear layers and {sorted(_ACTIVATION_NAMES)}")
        prev = node.name
    if prev is None:
        raise NotSupportedError(Issue(f"network {net.nn_model_id!r}: several inputs without "
                                      "a cat node", entity=net.nn_model_id))
    return nn.Sequential(*seq), layer_of


def array_size(group: Mapping[str, tuple[np.ndarray, Path]]) -> int | None:
    """Number of values of an array input (its datasets per condition key) if every
    dataset is 1-D of one size, else None (the size checks of the routings report it)."""
    shapes = {np.shape(a) for a, _ in group.values()}
    if len(shapes) != 1:
        return None
    (shape,) = shapes
    return shape[0] if len(shape) == 1 else None


def argument_sizes(net: SciMLNet, io: NetworkIO, array_sizes: Mapping[str, int | None]
                   ) -> dict[int, int]:
    """{argument: number of values} for the one element-mapped forward argument, where the
    graph tells it: a chain (`as_sequential`) whose first Linear takes the concatenated
    arguments, every other argument a 1-D array input of known size. Empty otherwise
    (other graphs, several element-mapped arguments: a trial evaluation decides)."""
    try:
        seq, _ = as_sequential(net)
    except NotSupportedError:
        return {}
    linear = [m for m in seq if isinstance(m, nn.Linear)]
    whole = {s.arg: s.petab_id for s in io.inputs if s.index is None}
    elements = {s.arg for s in io.inputs if s.index is not None}
    if not linear or len(elements) != 1 or elements & set(whole) \
            or elements | set(whole) != set(range(len(net.input_ids))):
        return {}
    others = [array_sizes.get(pid) for pid in whole.values()]
    if any(n is None for n in others):
        return {}
    size = linear[0].in_features - sum(n for n in others if n is not None)
    # not positive: the arrays alone overfill the layer, which the size checks report
    return {next(iter(elements)): size} if size > 0 else {}
