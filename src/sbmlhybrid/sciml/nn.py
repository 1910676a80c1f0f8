"""Build `torch.nn.Module`s from PEtab SciML neural-network YAML files.

The PEtab SciML network format lists ``layers`` (PyTorch class name + constructor
arguments) and a ``forward`` graph serialised from torch.fx (nodes with ``op`` in
placeholder / call_module / call_function / call_method / output).

Hand-written here (no library builds torch modules from PEtab SciML YAML): the YAML
parsing and validation (every problem reported at once, as `InputError`), and `SciMLNet`,
a module that registers the layers under their ids (so ``state_dict`` keys are
``<layerId>.<arrayId>``, the HDF5 layout) and interprets the forward graph. Reused: the
`torch.nn` layer classes and torch functions (see `sbmlhybrid.sciml.layers`) and PyYAML.

Tensor conventions follow PyTorch (row-major, channels first): e.g. a Conv2d input is
``(C, H, W)`` or ``(N, C, H, W)``; a Linear input ``(..., in_features)``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.sciml.layers import build_layer, check_method, resolve_function

_OPS = ("placeholder", "call_module", "call_function", "call_method", "output")
_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class LayerSpec:
    """One entry of ``layers``: id, PyTorch class name and constructor arguments."""

    layer_id: str
    layer_type: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class NodeSpec:
    """One node of the ``forward`` graph (torch.fx node semantics)."""

    name: str
    op: str
    target: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class NetworkSpec:
    """A parsed PEtab SciML network YAML."""

    nn_model_id: str
    input_ids: list[str]
    layers: list[LayerSpec]
    forward: list[NodeSpec]

    def to_dict(self) -> dict[str, Any]:
        """The YAML document (plain dicts/lists) for this network."""
        return {
            "nn_model_id": self.nn_model_id,
            "inputs": [{"input_id": i} for i in self.input_ids],
            "layers": [
                {"layer_id": lay.layer_id, "layer_type": lay.layer_type, "args": dict(lay.args)}
                for lay in self.layers
            ],
            "forward": [
                {"name": n.name, "op": n.op, "target": n.target, "args": list(n.args),
                 "kwargs": dict(n.kwargs)}
                for n in self.forward
            ],
        }


def parse_network(doc: Mapping[str, Any], source: str | None = None) -> NetworkSpec:
    """Validate a network YAML document (already loaded) and return its spec.

    Raises:
        InputError: listing every structural problem (missing keys, duplicate ids,
            unknown ops, references to undefined nodes or layers).
    """
    issues: list[Issue] = []
    if not isinstance(doc, Mapping):
        raise InputError(Issue("network YAML must be a mapping", file=source))
    for key in ("nn_model_id", "inputs", "layers", "forward"):
        if key not in doc:
            issues.append(Issue(f"missing required key '{key}'", file=source))
    if issues:
        raise InputError(issues, header="Invalid PEtab SciML network")
    inputs = [str(i["input_id"]) if isinstance(i, Mapping) else str(i) for i in doc["inputs"]]
    layers: list[LayerSpec] = []
    seen: set[str] = set()
    for i, lay in enumerate(doc["layers"] or []):
        if not isinstance(lay, Mapping) or "layer_id" not in lay or "layer_type" not in lay:
            issues.append(Issue(f"layers[{i}] needs layer_id and layer_type", file=source))
            continue
        lid = str(lay["layer_id"])
        if not _ID_RE.match(lid):
            issues.append(Issue(f"layer id '{lid}' is not a valid identifier", file=source,
                                entity=lid))
        if lid in seen:
            issues.append(Issue(f"duplicate layer id '{lid}'", file=source, entity=lid))
        seen.add(lid)
        layers.append(LayerSpec(lid, str(lay["layer_type"]), dict(lay.get("args") or {})))
    nodes: list[NodeSpec] = []
    names: set[str] = set()
    for i, node in enumerate(doc["forward"] or []):
        if not isinstance(node, Mapping) or not {"name", "op", "target"} <= set(node):
            issues.append(Issue(f"forward[{i}] needs name, op and target", file=source))
            continue
        spec = NodeSpec(str(node["name"]), str(node["op"]), str(node["target"]),
                        list(node.get("args") or []), dict(node.get("kwargs") or {}))
        if spec.op not in _OPS:
            issues.append(Issue(f"forward node '{spec.name}' has unknown op '{spec.op}'",
                                file=source, entity=spec.name))
        if spec.op == "call_module" and spec.target not in seen:
            issues.append(Issue(f"forward node '{spec.name}' calls undefined layer "
                                f"'{spec.target}'", file=source, entity=spec.name))
        for ref in _references(spec.args) + _references(list(spec.kwargs.values())):
            if ref not in names and _looks_like_ref(ref, doc):
                issues.append(Issue(f"forward node '{spec.name}' uses '{ref}' before it is "
                                    "defined", file=source, entity=spec.name))
        if spec.name in names:
            issues.append(Issue(f"duplicate forward node '{spec.name}'", file=source,
                                entity=spec.name))
        names.add(spec.name)
        nodes.append(spec)
    n_placeholders = sum(n.op == "placeholder" for n in nodes)
    if n_placeholders != len(inputs):
        issues.append(Issue(f"{len(inputs)} input(s) declared but forward has "
                            f"{n_placeholders} placeholder(s)", file=source))
    if sum(n.op == "output" for n in nodes) != 1:
        issues.append(Issue("forward must have exactly one output node", file=source))
    if issues:
        raise InputError(issues, header="Invalid PEtab SciML network")
    return NetworkSpec(str(doc["nn_model_id"]), inputs, layers, nodes)


def _references(values: list[Any]) -> list[str]:
    out: list[str] = []
    for v in values:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list | tuple):
            out += _references(list(v))
    return out


def _looks_like_ref(value: str, doc: Mapping[str, Any]) -> bool:
    """A string argument is a node reference iff some forward node has that name."""
    return any(isinstance(n, Mapping) and str(n.get("name")) == value
               for n in doc.get("forward") or [])


def read_network_yaml(path: str | Path) -> NetworkSpec:
    """Read and validate a PEtab SciML network YAML file."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InputError(Issue(f"cannot read network YAML: {err}", file=str(path))) from err
    return parse_network(doc, source=str(path))


class SciMLNet(nn.Module):
    """A network built from a `NetworkSpec`; layers are submodules named by layer id.

    ``forward(*inputs)`` takes one tensor per declared input (in ``input_ids`` order) and
    returns a tensor, or a tuple of tensors when the graph's output is a list/tuple.
    Shapes are those of the PyTorch layers, e.g. Linear ``(..., in) -> (..., out)``.

    The module is created in eval mode, so dropout layers are the identity (their
    expectation; call ``.train()`` for stochastic dropout). BatchNorm layers normalise
    with the statistics of the batch they receive, in train and eval mode alike, when
    `batch_norm_batch_stats` is true (the default): this is PyTorch's training-mode
    behaviour, which the PEtab SciML reference outputs use (a network exported from a
    freshly built torch module is in training mode). Set it false for running statistics.
    """

    def __init__(self, spec: NetworkSpec, dtype: torch.dtype = torch.float64,
                 source: str | None = None, batch_norm_batch_stats: bool = True) -> None:
        super().__init__()
        self.spec = copy.deepcopy(spec)
        self.dtype = dtype
        self.batch_norm_batch_stats = batch_norm_batch_stats
        issues: list[Issue] = []
        for lay in spec.layers:
            args = dict(lay.args)
            if batch_norm_batch_stats and lay.layer_type.startswith("BatchNorm"):
                args["track_running_stats"] = False  # no running buffers: batch statistics
            try:
                self.add_module(lay.layer_id, build_layer(lay.layer_id, lay.layer_type,
                                                          args, dtype, source))
            except InputError as err:
                issues += err.issues
        self._functions: dict[str, Any] = {}
        for node in spec.forward:
            try:
                if node.op == "call_function":
                    self._functions[node.name] = resolve_function(node.target, node.name, source)
                elif node.op == "call_method":
                    check_method(node.target, node.name, source)
            except InputError as err:
                issues += err.issues
        if issues:
            raise InputError(issues, header="Unsupported PEtab SciML network")
        self.eval()

    @property
    def nn_model_id(self) -> str:
        """The network id from the YAML."""
        return self.spec.nn_model_id

    @property
    def input_ids(self) -> list[str]:
        """Input ids, in forward-argument order."""
        return list(self.spec.input_ids)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Evaluate the forward graph on one tensor per declared input."""
        if len(inputs) != len(self.spec.input_ids):
            raise InputError(f"network '{self.nn_model_id}' takes {len(self.spec.input_ids)} "
                             f"input(s), got {len(inputs)}")
        env: dict[str, Any] = {}
        it = iter(inputs)
        for node in self.spec.forward:
            if node.op == "placeholder":
                env[node.name] = next(it)
                continue
            args = [_resolve(a, env) for a in node.args]
            kwargs = {k: _resolve(v, env) for k, v in node.kwargs.items()}
            if node.op == "call_module":
                layer = getattr(self, node.target)
                if isinstance(layer, nn.Dropout2d) and args and args[0].dim() == 3:
                    # unbatched (C, H, W): drop whole channels (PyTorch would read (N, C, L))
                    env[node.name] = layer(args[0].unsqueeze(0), **kwargs).squeeze(0)
                else:
                    env[node.name] = layer(*args, **kwargs)
            elif node.op == "call_function":
                env[node.name] = self._functions[node.name](*args, **kwargs)
            elif node.op == "call_method":
                env[node.name] = getattr(args[0], node.target)(*args[1:], **kwargs)
            else:  # output
                out = args[0]
                return tuple(out) if isinstance(out, list | tuple) else out
        raise AssertionError("unreachable: parse_network guarantees an output node")


def _resolve(value: Any, env: Mapping[str, Any]) -> Any:
    if isinstance(value, str) and value in env:
        return env[value]
    if isinstance(value, list | tuple):
        return [_resolve(v, env) for v in value]
    return value


def build_network(
    source: str | Path | Mapping[str, Any] | NetworkSpec,
    dtype: torch.dtype = torch.float64,
    batch_norm_batch_stats: bool = True,
) -> SciMLNet:
    """Build a `SciMLNet` from a YAML path, a loaded YAML document, or a `NetworkSpec`.

    Parameters get PyTorch's default initialisation; load values with
    `sbmlhybrid.sciml.hdf5.load_parameters`. See `SciMLNet` for the dropout / BatchNorm
    conventions (`batch_norm_batch_stats`).

    Raises:
        InputError: invalid YAML, or unsupported layers/functions (each named).
    """
    where: str | None = None
    if isinstance(source, NetworkSpec):
        spec = source
    elif isinstance(source, Mapping):
        spec = parse_network(source)
    else:
        spec = read_network_yaml(source)
        where = str(source)
    return SciMLNet(spec, dtype=dtype, source=where,
                    batch_norm_batch_stats=batch_norm_batch_stats)
