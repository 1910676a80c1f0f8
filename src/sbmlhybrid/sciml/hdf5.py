"""PEtab SciML array files (HDF5): network parameters, inputs and outputs.

Layout (PEtab SciML spec)::

    metadata/perm                         "row" (PyTorch indexing) | "column"
    inputs/<inputId>/<conditionIds|0>     input arrays ("data" in older test files)
    outputs/<outputId>/<key>              network outputs (test-suite files)
    parameters/<netId>/<layerId>/<arrayId>

Older files carry ``metadata/pytorch_format`` (1 = row-major PyTorch indexing) instead of
``perm``. Arrays are always returned with PyTorch indexing: a column-major file's arrays
(axes reversed when seen from a row-major reader) are transposed back.

Hand-written: the layout handling, parameter loading with shape checks and the checks for
non-finite values (errors name the file and the layer and array, or the input dataset).
Reused: h5py for the file IO.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sbmlhybrid.errors import InputError, Issue

#: ``{netId: {layerId: {arrayId: array}}}``
ParameterArrays = dict[str, dict[str, dict[str, np.ndarray]]]
#: ``{inputId: {conditionKey: array}}`` (also used for outputs)
ArrayGroup = dict[str, dict[str, np.ndarray]]


def _h5py():
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - h5py is a declared dependency
        raise InputError("reading PEtab SciML array files needs h5py") from err
    return h5py


def _is_column_major(f, path: str) -> bool:
    meta = f.get("metadata")
    if meta is None:
        return False
    if "perm" in meta:
        perm = meta["perm"][()]
        perm = perm.decode() if isinstance(perm, bytes) else str(perm)
        if perm not in ("row", "column"):
            raise InputError(Issue(f"metadata/perm must be 'row' or 'column', got '{perm}'",
                                   file=path))
        return perm == "column"
    if "pytorch_format" in meta:
        return not bool(meta["pytorch_format"][()])
    return False


def _read(ds, column_major: bool) -> np.ndarray:
    arr = np.asarray(ds[()])
    return np.ascontiguousarray(arr.T) if column_major and arr.ndim > 1 else arr


def read_parameters(path: str | Path) -> ParameterArrays:
    """All network parameter arrays of an array file, PyTorch indexing.

    Returns:
        ``{netId: {layerId: {arrayId: ndarray}}}``, e.g. a Linear layer's ``weight`` has
        shape ``(out_features, in_features)``; empty when the file has no parameters.
    """
    h5py = _h5py()
    out: ParameterArrays = {}
    with h5py.File(path, "r") as f:
        col = _is_column_major(f, str(path))
        grp = f.get("parameters")
        if grp is None:
            return out
        for net_id, net_grp in grp.items():
            out[net_id] = {}
            for layer_id, layer_grp in net_grp.items():
                if not isinstance(layer_grp, h5py.Group):
                    raise InputError(Issue(f"parameters/{net_id}/{layer_id} must be a group of "
                                           "arrays", file=str(path), entity=layer_id))
                out[net_id][layer_id] = {
                    name: _read(ds, col) for name, ds in layer_grp.items()
                }
    return out


def _non_finite(arr: np.ndarray) -> str | None:
    """``"<n> non-finite value(s) (first at index [i, ...])"`` for NaN/inf entries, else None."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fc":  # integers are finite; other kinds fail where they are used
        return None
    bad = ~np.isfinite(arr)
    if not bad.any():
        return None
    first = [int(i) for i in np.argwhere(bad)[0]] if bad.ndim else []
    return f"{int(bad.sum())} non-finite value(s) (first at index {first})"


def check_finite(layers: Mapping[str, Mapping[str, np.ndarray]], file: str, nn_id: str
                 ) -> list[Issue]:
    """Issues for arrays of ``{layerId: {arrayId: array}}`` with NaN or infinite entries."""
    issues = []
    for layer_id, arrays in layers.items():
        for array_id, arr in arrays.items():
            bad = _non_finite(arr)
            if bad:
                issues.append(Issue(
                    f"parameters/{nn_id}/{layer_id}/{array_id}: {bad} in network {nn_id!r}, "
                    f"layer {layer_id!r}, array {array_id!r}", file=file, entity=layer_id))
    return issues


def check_finite_inputs(inputs: Mapping[str, Mapping[str, np.ndarray]], file: str
                        ) -> list[Issue]:
    """Issues for input arrays ``{inputId: {conditionKey: array}}`` with NaN or infinite
    entries (a network fed one gives NaN outputs, hence a NaN objective)."""
    issues = []
    for input_id, per_key in inputs.items():
        for key, arr in per_key.items():
            bad = _non_finite(arr)
            if bad:
                issues.append(Issue(f"inputs/{input_id}/{key}: {bad} in array input "
                                    f"{input_id!r}", file=file, entity=input_id))
    return issues


def _read_group(path: str | Path, group: str) -> ArrayGroup:
    h5py = _h5py()
    out: ArrayGroup = {}
    with h5py.File(path, "r") as f:
        col = _is_column_major(f, str(path))
        grp = f.get(group)
        if grp is None:
            return out
        for item_id, item in grp.items():
            if isinstance(item, h5py.Dataset):  # tolerate inputs/<id> directly a dataset
                out[item_id] = {"0": _read(item, col)}
            else:
                out[item_id] = {key: _read(ds, col) for key, ds in item.items()}
    return out


def read_inputs(path: str | Path) -> ArrayGroup:
    """Input arrays: ``{inputId: {conditionKey: ndarray}}`` (key ``"0"`` = all conditions)."""
    return _read_group(path, "inputs")


def read_outputs(path: str | Path) -> ArrayGroup:
    """Output arrays (test-suite reference files): ``{outputId: {key: ndarray}}``."""
    return _read_group(path, "outputs")


def _write_meta(f) -> None:
    meta = f.require_group("metadata")
    meta.create_dataset("perm", data=np.bytes_("row"))


def write_parameters(path: str | Path, params: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]
                     ) -> None:
    """Write ``{netId: {layerId: {arrayId: array}}}`` (PyTorch indexing, ``perm = "row"``)."""
    h5py = _h5py()
    with h5py.File(path, "w") as f:
        _write_meta(f)
        root = f.create_group("parameters")
        for net_id, layers in params.items():
            ng = root.create_group(net_id)
            for layer_id, arrays in layers.items():
                lg = ng.create_group(layer_id)
                for name, arr in arrays.items():
                    lg.create_dataset(name, data=np.asarray(arr, dtype=np.float64))


def _write_group(path: str | Path, group: str, arrays: Mapping[str, Mapping[str, np.ndarray]]
                 ) -> None:
    h5py = _h5py()
    with h5py.File(path, "w") as f:
        _write_meta(f)
        root = f.create_group(group)
        for item_id, per_key in arrays.items():
            g = root.create_group(item_id)
            for key, arr in per_key.items():
                g.create_dataset(key, data=np.asarray(arr, dtype=np.float64))


def write_inputs(path: str | Path, inputs: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Write ``{inputId: {conditionKey: array}}`` input arrays (``"0"`` = all conditions)."""
    _write_group(path, "inputs", inputs)


def write_outputs(path: str | Path, outputs: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Write ``{outputId: {key: array}}`` output arrays."""
    _write_group(path, "outputs", outputs)


def network_arrays(net: nn.Module, include_buffers: bool = False
                   ) -> dict[str, dict[str, np.ndarray]]:
    """``{layerId: {arrayId: ndarray}}`` of a module's parameters (PyTorch indexing).

    Args:
        net: Module whose direct children are the layers (as `SciMLNet`); nested names
            ``a.b.weight`` are grouped by everything before the last dot.
        include_buffers: Also export floating buffers (BatchNorm running_mean/var).
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    items = list(net.named_parameters())
    if include_buffers:
        items += [(n, b) for n, b in net.named_buffers() if b.is_floating_point()]
    for name, tensor in items:
        layer_id, _, array_id = name.rpartition(".")
        out.setdefault(layer_id, {})[array_id] = tensor.detach().cpu().numpy().copy()
    return out


def load_parameters(net: nn.Module, arrays: Mapping[str, Mapping[str, np.ndarray]],
                    strict: bool = True, source: str | None = None) -> None:
    """Copy ``{layerId: {arrayId: array}}`` into the module's parameters/buffers in place.

    Args:
        net: Target module (state_dict keys ``<layerId>.<arrayId>``).
        arrays: Arrays in PyTorch indexing; each must match the target's shape.
        strict: Every parameter of `net` must be given (buffers are optional).
        source: File name for error messages.

    Raises:
        InputError: unknown layer/array, shape mismatch, or (strict) missing parameters.
    """
    state = dict(net.named_parameters()) | dict(net.named_buffers())
    issues: list[Issue] = []
    given: set[str] = set()
    with torch.no_grad():
        for layer_id, per_array in arrays.items():
            for array_id, value in per_array.items():
                key = f"{layer_id}.{array_id}"
                target = state.get(key)
                if target is None:
                    issues.append(Issue(f"network has no array '{array_id}' in layer "
                                        f"'{layer_id}'", file=source, entity=layer_id))
                    continue
                value = np.asarray(value)
                if tuple(value.shape) != tuple(target.shape):
                    issues.append(Issue(f"layer '{layer_id}' array '{array_id}' has shape "
                                        f"{tuple(value.shape)}, expected "
                                        f"{tuple(target.shape)}", file=source, entity=layer_id))
                    continue
                target.copy_(torch.as_tensor(value, dtype=target.dtype))
                given.add(key)
    if strict:
        for key in dict(net.named_parameters()):
            if key not in given:
                layer_id, _, array_id = key.rpartition(".")
                issues.append(Issue(f"no value for array '{array_id}' of layer '{layer_id}'",
                                    file=source, entity=layer_id))
    if issues:
        raise InputError(issues, header="Cannot load network parameters")
