"""Export torch modules to the PEtab SciML network YAML + HDF5 parameter format.

A `SciMLNet` is written back from its own spec. Any other module (e.g. an
``nn.Sequential`` of Linear + activations, or a custom ``nn.Module`` whose forward uses
supported layers, torch functions and tensor methods) is traced with ``torch.fx`` and
its graph serialised node by node. Layer ids must be identifiers, so traced submodule
paths are sanitised (``"0"`` -> ``"layer_0"``, ``"block.fc"`` -> ``"block_fc"``); the
parameter file uses the same ids.

Hand-written: the serialisation and the checks that every layer/function is one the
importer supports (errors name the offender). Reused: ``torch.fx.symbolic_trace`` (graph
capture), PyYAML and h5py (via `sbmlhybrid.sciml.hdf5`).
"""

from __future__ import annotations

import operator
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import fx, nn
from torch.nn import functional as F  # noqa: N812

from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.sciml.hdf5 import network_arrays, write_parameters
from sbmlhybrid.sciml.layers import SUPPORTED_FUNCTIONS, check_method, layer_spec_of
from sbmlhybrid.sciml.nn import LayerSpec, NetworkSpec, NodeSpec, SciMLNet

_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _layer_id(target: str, used: set[str]) -> str:
    base = target.replace(".", "_")
    if not _ID_RE.match(base):
        base = f"layer_{base}"
    lid, k = base, 1
    while lid in used:
        lid, k = f"{base}_{k}", k + 1
    return lid


def _function_name(fn: Any, node: str) -> str:
    name = getattr(fn, "__name__", repr(fn))
    known = SUPPORTED_FUNCTIONS.get(name)
    aliases = (known, getattr(torch, name, None), getattr(F, name, None),
               getattr(operator, name, None))
    if known is None or not any(fn is a for a in aliases if a is not None):
        raise InputError(Issue(f"cannot export forward node '{node}': function '{name}' is "
                               "not supported by the PEtab SciML importer", entity=node))
    return name


def _serialise(value: Any, node: str) -> Any:
    if isinstance(value, fx.Node):
        return value.name
    if isinstance(value, tuple | list):
        return [_serialise(v, node) for v in value]
    if isinstance(value, torch.Size):
        return [int(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise InputError(Issue(f"cannot export forward node '{node}': argument {value!r} "
                           f"({type(value).__name__}) is not YAML-serialisable", entity=node))


def network_spec_of(module: nn.Module, nn_model_id: str = "net0",
                    input_ids: list[str] | None = None) -> tuple[NetworkSpec, dict[str, str]]:
    """The PEtab SciML spec of a torch module.

    Args:
        module: A `SciMLNet` or any fx-traceable module built from supported layers.
        nn_model_id: Network id written to the YAML (ignored for a `SciMLNet`, which
            keeps its own).
        input_ids: Input ids, one per forward argument (default: the argument names).

    Returns:
        ``(spec, layer_ids)`` where ``layer_ids`` maps each submodule path to its layer id.

    Raises:
        InputError: untraceable module, unsupported layer/function/method (named), or
            attributes read in forward (``get_attr``), which the format cannot express.
    """
    if isinstance(module, SciMLNet):
        spec = NetworkSpec(module.spec.nn_model_id, list(input_ids or module.spec.input_ids),
                           [LayerSpec(la.layer_id, la.layer_type, dict(la.args))
                            for la in module.spec.layers],
                           [NodeSpec(n.name, n.op, n.target, list(n.args), dict(n.kwargs))
                            for n in module.spec.forward])
        return spec, {la.layer_id: la.layer_id for la in spec.layers}
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception as err:  # fx raises many types for untraceable code
        raise InputError(f"cannot trace module {type(module).__name__} with torch.fx: {err}"
                         ) from err
    layers: list[LayerSpec] = []
    layer_ids: dict[str, str] = {}
    nodes: list[NodeSpec] = []
    placeholders: list[str] = []
    issues: list[Issue] = []
    for node in graph.nodes:
        try:
            args = [_serialise(a, node.name) for a in node.args]
            kwargs = {k: _serialise(v, node.name) for k, v in node.kwargs.items()}
            if node.op == "placeholder":
                placeholders.append(node.name)
                nodes.append(NodeSpec(node.name, "placeholder", node.name, [], {}))
            elif node.op == "call_module":
                target = str(node.target)
                if target not in layer_ids:
                    layer_ids[target] = _layer_id(target, set(layer_ids.values()))
                    ltype, largs = layer_spec_of(module.get_submodule(target), layer_ids[target])
                    layers.append(LayerSpec(layer_ids[target], ltype, largs))
                nodes.append(NodeSpec(node.name, "call_module", layer_ids[target], args, kwargs))
            elif node.op == "call_function":
                name = _function_name(node.target, node.name)
                nodes.append(NodeSpec(node.name, "call_function", name, args, kwargs))
            elif node.op == "call_method":
                check_method(str(node.target), node.name)
                nodes.append(NodeSpec(node.name, "call_method", str(node.target), args, kwargs))
            elif node.op == "output":
                nodes.append(NodeSpec(node.name, "output", "output", args, {}))
            else:
                issues.append(Issue(f"cannot export forward node '{node.name}': op '{node.op}' "
                                    f"({node.target}) is not part of the format; register "
                                    "tensors used in forward as layer parameters",
                                    entity=node.name))
        except InputError as err:
            issues += err.issues
    if issues:
        raise InputError(issues, header="Cannot export network")
    ids = list(input_ids) if input_ids is not None else placeholders
    if len(ids) != len(placeholders):
        raise InputError(f"{len(ids)} input id(s) given for {len(placeholders)} forward "
                         "argument(s)")
    return NetworkSpec(nn_model_id, ids, layers, nodes), layer_ids


def write_network_yaml(spec: NetworkSpec, path: str | Path) -> None:
    """Write a network spec as PEtab SciML network YAML."""
    Path(path).write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))


def module_parameter_arrays(module: nn.Module, layer_ids: dict[str, str],
                            include_buffers: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """``{layerId: {arrayId: array}}`` for the layers of an exported module.

    Raises:
        InputError: a parameter lives outside the exported layers (it would be lost).
    """
    arrays = network_arrays(module, include_buffers=include_buffers)
    out: dict[str, dict[str, np.ndarray]] = {}
    lost = []
    for path, per_array in arrays.items():
        if path in layer_ids:
            out[layer_ids[path]] = per_array
        else:
            lost.append(path or "<root>")
    if lost:
        raise InputError(f"parameters of {lost} are not used through exported layers")
    return out


def export_network(
    module: nn.Module,
    yaml_path: str | Path,
    params_path: str | Path | None = None,
    nn_model_id: str = "net0",
    input_ids: list[str] | None = None,
    include_buffers: bool = False,
) -> NetworkSpec:
    """Write a module as network YAML (+ optionally its parameters as HDF5).

    Args:
        module: See `network_spec_of`.
        yaml_path: Destination of the network YAML.
        params_path: Destination of the parameter array file
            (``parameters/<nn_model_id>/<layerId>/<arrayId>``, PyTorch indexing).
        nn_model_id: Network id (a `SciMLNet` keeps its own).
        input_ids: Input ids (default: forward argument names).
        include_buffers: Also write BatchNorm running statistics.

    Returns:
        The spec written.
    """
    spec, layer_ids = network_spec_of(module, nn_model_id, input_ids)
    write_network_yaml(spec, yaml_path)
    if params_path is not None:
        arrays = module_parameter_arrays(module, layer_ids, include_buffers)
        write_parameters(params_path, {spec.nn_model_id: arrays})
    return spec
