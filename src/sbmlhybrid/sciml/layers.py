"""Registry of the PEtab SciML layer types and forward-graph functions sbmlhybrid supports.

Hand-written: the whitelists, the argument validation (unknown or missing constructor
arguments are reported as `InputError` naming the layer), the conversion of YAML values
(lists) to the tuples PyTorch expects, and the reverse direction (reading a module's
constructor arguments back for export). Reused: the layer classes of `torch.nn` and the
functions of `torch` / `torch.nn.functional` / `torch.Tensor`, whose names and argument
conventions the PEtab SciML YAML format follows by design (it is a serialised torch.fx
graph).
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from sbmlhybrid.errors import InputError, Issue

#: Layer types (``layer_type`` in the YAML) -> torch.nn class.
_LAYER_NAMES = [
    "Linear", "Bilinear", "Identity", "Flatten", "Unflatten",
    "Conv1d", "Conv2d", "Conv3d",
    "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "LPPool1d", "LPPool2d", "LPPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d",
    "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
    "LayerNorm", "GroupNorm",
    "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
    # activation modules (as produced by exporting nn.Sequential(Linear, Tanh, ...))
    "ReLU", "ReLU6", "Tanh", "Sigmoid", "Softplus", "Softsign", "Softmax", "LogSoftmax",
    "ELU", "CELU", "SELU", "GELU", "SiLU", "Mish", "LeakyReLU", "Hardtanh",
    "Hardswish", "Hardsigmoid", "LogSigmoid", "Tanhshrink",
]
SUPPORTED_LAYERS: dict[str, type[nn.Module]] = {name: getattr(nn, name) for name in _LAYER_NAMES}

#: call_function targets resolved in `torch` (tensor ops); everything else in F.
_TORCH_FUNCTIONS = [
    "cat", "concat", "stack", "flatten", "reshape", "permute", "transpose", "squeeze",
    "unsqueeze", "add", "sub", "mul", "div", "matmul", "sum", "mean", "exp", "log",
    "abs", "sqrt", "square", "pow", "clamp", "neg", "tanh", "sigmoid", "maximum", "minimum",
]
_FUNCTIONAL = [
    "relu", "relu6", "hardtanh", "hardswish", "selu", "leaky_relu", "gelu", "logsigmoid",
    "tanhshrink", "softsign", "softplus", "hardsigmoid", "mish", "elu", "celu", "silu",
    "softmax", "log_softmax", "normalize",
]
SUPPORTED_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **{name: getattr(torch, name) for name in _TORCH_FUNCTIONS},
    **{name: getattr(F, name) for name in _FUNCTIONAL},
    # spellings produced by torch.fx tracing of Python operators / F aliases
    "log_sigmoid": F.logsigmoid,
    "getitem": operator.getitem,
    "truediv": torch.div,
    "neg": torch.neg,
}
#: call_method targets: methods of torch.Tensor.
SUPPORTED_METHODS: frozenset[str] = frozenset({
    "tanh", "sigmoid", "relu", "exp", "log", "abs", "sqrt", "neg", "flatten", "reshape",
    "view", "permute", "transpose", "squeeze", "unsqueeze", "sum", "mean", "softmax",
    "log_softmax", "add", "sub", "mul", "div", "pow", "contiguous", "clamp", "t",
})

_NO_EXPORT_ARGS = {"self", "device", "dtype"}


def _to_torch_value(value: Any) -> Any:
    """YAML lists become tuples (PyTorch stores kernel sizes, shapes, ... as tuples)."""
    if isinstance(value, list):
        return tuple(_to_torch_value(v) for v in value)
    return value


def _to_yaml_value(value: Any) -> Any:
    """Tuples become lists; only YAML scalars are allowed through."""
    if isinstance(value, tuple | list):
        return [_to_yaml_value(v) for v in value]
    if isinstance(value, torch.Size):
        return [int(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"value {value!r} of type {type(value).__name__} is not YAML-serialisable")


def build_layer(
    layer_id: str,
    layer_type: str,
    args: Mapping[str, Any] | None,
    dtype: torch.dtype = torch.float64,
    source: str | None = None,
) -> nn.Module:
    """Instantiate one layer of a PEtab SciML network.

    Args:
        layer_id: The layer's id (used in error messages).
        layer_type: PyTorch class name, e.g. ``"Conv2d"``.
        args: Constructor keyword arguments as written in the YAML (lists allowed).
        dtype: Floating dtype of the layer's parameters/buffers.
        source: File the layer was read from (error messages).

    Returns:
        The torch module (parameters in `dtype`, PyTorch default initialisation).

    Raises:
        InputError: Unsupported layer type, unknown/missing arguments, or invalid values.
    """
    cls = SUPPORTED_LAYERS.get(layer_type)
    if cls is None:
        raise InputError(Issue(
            f"layer '{layer_id}' has unsupported layer_type '{layer_type}' "
            f"(supported: {', '.join(sorted(SUPPORTED_LAYERS))})",
            file=source, entity=layer_id,
        ))
    kwargs = {str(k): _to_torch_value(v) for k, v in dict(args or {}).items()}
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(kwargs) - set(params) | (set(kwargs) & _NO_EXPORT_ARGS))
    if unknown:
        raise InputError(Issue(
            f"layer '{layer_id}' ({layer_type}) has unknown argument(s) {unknown}",
            file=source, entity=layer_id,
        ))
    if "dtype" in params:
        kwargs["dtype"] = dtype
    try:
        module = cls(**kwargs)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputError(Issue(
            f"layer '{layer_id}' ({layer_type}) cannot be built from args {dict(args or {})}: "
            f"{err}", file=source, entity=layer_id,
        )) from err
    return module.to(dtype)


def layer_spec_of(module: nn.Module, layer_id: str) -> tuple[str, dict[str, Any]]:
    """Read back ``(layer_type, args)`` of a supported module, for export.

    Every constructor argument (except device/dtype) is written explicitly, so that
    importers need not know PyTorch's defaults.

    Raises:
        InputError: The module's class is not a supported layer type, or an argument
            cannot be recovered from the module.
    """
    layer_type = type(module).__name__
    if SUPPORTED_LAYERS.get(layer_type) is not type(module):
        raise InputError(Issue(
            f"cannot export layer '{layer_id}': module type {type(module).__qualname__} is "
            "not a supported PEtab SciML layer", entity=layer_id,
        ))
    args: dict[str, Any] = {}
    for name, par in inspect.signature(type(module).__init__).parameters.items():
        if name in _NO_EXPORT_ARGS or par.kind in (par.VAR_POSITIONAL, par.VAR_KEYWORD):
            continue
        if name == "bias" and (par.default is True or par.default is inspect.Parameter.empty):
            value: Any = getattr(module, "bias", None) is not None
        elif name == "elementwise_affine" and isinstance(module, nn.LayerNorm):
            value = module.weight is not None
        elif hasattr(module, name):
            value = getattr(module, name)
        elif par.default is not inspect.Parameter.empty:
            value = par.default
        else:
            raise InputError(Issue(
                f"cannot export layer '{layer_id}' ({layer_type}): argument '{name}' is not "
                "recoverable from the module", entity=layer_id,
            ))
        try:
            args[name] = _to_yaml_value(value)
        except TypeError as err:
            raise InputError(Issue(
                f"cannot export layer '{layer_id}' ({layer_type}) argument '{name}': {err}",
                entity=layer_id,
            )) from err
    return layer_type, args


def resolve_function(name: str, node: str, source: str | None = None) -> Callable[..., Any]:
    """The callable of a ``call_function`` node target.

    Raises:
        InputError: naming the function and the node when it is not supported.
    """
    fn = SUPPORTED_FUNCTIONS.get(name)
    if fn is None:
        raise InputError(Issue(
            f"forward node '{node}' calls unsupported function '{name}' "
            f"(supported: {', '.join(sorted(SUPPORTED_FUNCTIONS))})", file=source, entity=node,
        ))
    return fn


def check_method(name: str, node: str, source: str | None = None) -> None:
    """Validate a ``call_method`` target (a torch.Tensor method name).

    Raises:
        InputError: naming the method and the node when it is not supported.
    """
    if name not in SUPPORTED_METHODS:
        raise InputError(Issue(
            f"forward node '{node}' calls unsupported tensor method '{name}' "
            f"(supported: {', '.join(sorted(SUPPORTED_METHODS))})", file=source, entity=node,
        ))


def function_name_of(fn: Any) -> str | None:
    """Name under which a traced callable is written to YAML, or None if unsupported."""
    name = getattr(fn, "__name__", None)
    if name is None:
        return None
    if name in SUPPORTED_FUNCTIONS:
        return name
    return None
