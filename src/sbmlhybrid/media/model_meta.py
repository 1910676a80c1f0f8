"""The meta.json schema of model files (see ``modelfile``) <-> TransferMLPRegressor.

Hand-written. ``model_to_meta`` describes a model as JSON-able metadata plus named
tensors, ``model_from_meta`` rebuilds it and raises KeyError/TypeError/ValueError on
inconsistent input. Used by ``modelfile`` (model files) and ``campaign`` (campaign files
embed a model), so neither of those imports the other for it.
"""

from __future__ import annotations

import numpy as np
import torch

from sbmlhybrid.media.container import (
    dec_float,
    dec_floats,
    dec_int,
    dec_strs,
    enc_float,
    enc_scalar,
)
from sbmlhybrid.media.estimator import TransferMLPRegressor
from sbmlhybrid.media.nets import ACTIVATIONS, EnsembleMLP, TrainResult
from sbmlhybrid.media.strategies import SourceSnapshot

_TUPLE_PARAMS = ("staged_depths", "surgical_depths")


def _enc(v):
    """JSON-able copy of a diagnostic value (dicts, sequences, arrays, scalars)."""
    if isinstance(v, dict):
        return {str(k): _enc(x) for k, x in v.items()}
    if isinstance(v, list | tuple | np.ndarray):
        return [_enc(x) for x in v]
    return enc_scalar(v)


def _float_map(v) -> dict[str, float]:
    return {str(k): dec_float(x) for k, x in dict(v).items()}


def _depth_map(v) -> dict[int, float]:
    return {int(k): dec_float(x) for k, x in dict(v).items()}


_DIAGNOSTICS = {
    "out_of_range_fraction_": dec_float, "out_of_range_by_column_": _float_map,
    "new_components_": dec_strs, "missing_components_": dec_strs, "guard_cv_rmse_": _float_map,
    "staged_depth_": dec_int, "staged_cv_rmse_": _depth_map, "freeze_depth_": dec_int,
    "surgical_cv_rmse_": _depth_map, "mutual_information_": dec_floats,
}


# ------------------------------------------------------------------------ encoding
def _snapshot_meta(snap: SourceSnapshot, tensors: dict, prefix: str) -> dict:
    for i, (w, b) in enumerate(zip(snap.weights, snap.biases)):
        tensors[f"{prefix}w{i}"] = torch.from_numpy(np.ascontiguousarray(w, np.float32))
        tensors[f"{prefix}b{i}"] = torch.from_numpy(np.ascontiguousarray(b, np.float32))
    return {"columns": list(map(str, snap.columns)), "x_min": _enc(snap.x_min),
            "x_max": _enc(snap.x_max), "x_mean": _enc(snap.x_mean),
            "y_mean": enc_float(snap.y_mean), "y_std": enc_float(snap.y_std),
            "activation": snap.activation, "n_layers": len(snap.weights)}


def _params_meta(model: TransferMLPRegressor) -> dict:
    out = {}
    for k, v in model.get_params(deep=False).items():
        if k == "source":
            continue
        if isinstance(v, tuple | list | np.ndarray):
            v = [int(e) for e in v]
        elif v is not None and not isinstance(v, bool | int | float | str | np.number | np.bool_):
            raise ValueError(f"parameter {k}={v!r} cannot be saved (not a JSON scalar)")
        out[k] = _enc(v)
    return out


def _fitted_meta(model: TransferMLPRegressor, tensors: dict, prefix: str) -> dict | None:
    if not hasattr(model, "net_"):
        return None
    net = model.net_
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        tensors[f"{prefix}w{i}"], tensors[f"{prefix}b{i}"] = w.detach(), b.detach()
    sel = getattr(model, "selected_", None)
    hist = {k: {"train_loss": _enc(r.train_loss), "val_loss": _enc(r.val_loss),
                "best_epoch": None if r.best_epoch is None else _enc(r.best_epoch)}
            for k, r in model.history_.items()}
    return {
        "columns": list(model.columns_), "input_columns": list(model.input_columns_),
        "x_min": _enc(model.x_min_), "x_max": _enc(model.x_max_), "x_fill": _enc(model.x_fill_),
        "selected": None if sel is None else _enc(sel), "y_mean": enc_float(model.y_mean_),
        "y_std": enc_float(model.y_std_), "noise_std": enc_float(model.noise_std_),
        "n_new": int(model.n_new_), "strategy": model.strategy_,
        "guard_fired": bool(model.guard_fired_),
        "net": {"n_layers": net.n_layers, "width": net.width, "n_members": net.n_members,
                "activation": net.activation},
        "history": hist,
        "diagnostics": {a: _enc(getattr(model, a)) for a in _DIAGNOSTICS if hasattr(model, a)},
    }


def model_to_meta(model: TransferMLPRegressor, tensors: dict[str, torch.Tensor],
                  prefix: str = "") -> dict:
    """JSON-able description of ``model``; its tensors are added to ``tensors`` under
    names starting with ``prefix``. ValueError for parameters JSON cannot hold."""
    src = model.source
    if isinstance(src, TransferMLPRegressor):
        src = getattr(src, "source_snapshot_", None)
        if src is None:
            raise ValueError("the model's `source` was never pretrained; nothing to save")
    own = getattr(model, "source_snapshot_", None)
    return {
        "params": _params_meta(model),
        "source": None if src is None else _snapshot_meta(src, tensors, f"{prefix}source."),
        "snapshot": None if own is None else _snapshot_meta(own, tensors, f"{prefix}snapshot."),
        "fitted": _fitted_meta(model, tensors, f"{prefix}net."),
    }


# ------------------------------------------------------------------------ decoding
def _check_layers(ws: list[torch.Tensor], bs: list[torch.Tensor], n_in: int) -> None:
    """Raise ValueError unless weights (E, d_in, d_out) and biases (E, 1, d_out) chain
    from ``n_in`` inputs to one output with one ensemble size, all float32."""
    if not ws or len(ws) != len(bs):
        raise ValueError("missing or unpaired layer tensors")
    e, d = ws[0].shape[0] if ws[0].ndim == 3 else -1, n_in
    for i, (w, b) in enumerate(zip(ws, bs)):
        if w.dtype != torch.float32 or b.dtype != torch.float32:
            raise ValueError(f"layer {i} is not float32")
        if w.ndim != 3 or w.shape[0] != e or w.shape[1] != d or tuple(b.shape) != (
                e, 1, w.shape[2]):
            raise ValueError(f"layer {i} has shapes {tuple(w.shape)}/{tuple(b.shape)}")
        d = w.shape[2]
    if d != 1 or e < 1:
        raise ValueError("the last layer must have one output")


def _layer_tensors(tensors: dict[str, torch.Tensor], prefix: str, n_layers: int, n_in: int
                  ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Weights and biases ``{prefix}w{i}``/``{prefix}b{i}`` of ``n_layers`` layers, checked."""
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 2:
        raise ValueError(f"bad layer count {n_layers!r}")
    ws = [tensors[f"{prefix}w{i}"] for i in range(n_layers)]
    bs = [tensors[f"{prefix}b{i}"] for i in range(n_layers)]
    _check_layers(ws, bs, n_in)
    return ws, bs


def _activation(v) -> str:
    if v not in ACTIVATIONS:
        raise ValueError(f"unknown activation {v!r}")
    return v


def _sized(v, d: int, what: str) -> np.ndarray:
    arr = dec_floats(v)
    if arr.shape != (d,):
        raise ValueError(f"{what} has {arr.size} values for {d} columns")
    return arr


def _snapshot_from(m: dict, tensors: dict, prefix: str) -> SourceSnapshot:
    cols = dec_strs(m["columns"])
    ws, bs = _layer_tensors(tensors, prefix, m["n_layers"], len(cols))
    d = len(cols)
    return SourceSnapshot(
        cols, _sized(m["x_min"], d, "x_min"), _sized(m["x_max"], d, "x_max"),
        _sized(m["x_mean"], d, "x_mean"), dec_float(m["y_mean"]), dec_float(m["y_std"]),
        [w.numpy() for w in ws], [b.numpy() for b in bs], _activation(m["activation"]))


def _params_from(m: dict) -> dict:
    names = set(TransferMLPRegressor().get_params(deep=False)) - {"source"}
    unknown = sorted(set(m) - names)
    if unknown:
        raise ValueError(f"unknown parameters {unknown}")
    out = {}
    for k, v in m.items():
        if isinstance(v, list) and k in _TUPLE_PARAMS:
            v = tuple(dec_int(e) for e in v)
        elif v is not None and not isinstance(v, bool | int | float | str):
            raise TypeError(f"parameter {k} has a {type(v).__name__} value")
        out[k] = v
    return out


def _net_from(spec: dict, tensors: dict, prefix: str, d: int) -> EnsembleMLP:
    ws, bs = _layer_tensors(tensors, prefix, spec["n_layers"], d)
    net = EnsembleMLP(d, ws[0].shape[2], len(ws), ws[0].shape[0], _activation(spec["activation"]))
    with torch.no_grad():
        for p, t in zip([*net.weights, *net.biases], [*ws, *bs]):
            if p.shape != t.shape:  # equal widths are required; copy_ would broadcast
                raise ValueError(f"layer tensor {tuple(t.shape)} does not fit {tuple(p.shape)}")
            p.copy_(t)
    net.requires_grad_(False)
    return net


def _restore_fitted(model: TransferMLPRegressor, f: dict, tensors: dict, prefix: str) -> None:
    cols = dec_strs(f["columns"])
    d = len(cols)
    inputs = dec_strs(f["input_columns"])
    if not set(inputs) <= set(cols):
        raise ValueError("input_columns must be a subset of columns")
    model.columns_, model.input_columns_, model.n_features_in_ = cols, inputs, d
    model.x_min_, model.x_max_ = _sized(f["x_min"], d, "x_min"), _sized(f["x_max"], d, "x_max")
    model.x_fill_ = _sized(f["x_fill"], d, "x_fill")
    sel = f["selected"]
    if sel is not None and (not isinstance(sel, list) or len(sel) != d
                            or not all(isinstance(v, bool) for v in sel)):
        raise ValueError("selected must be null or one boolean per column")
    model.selected_ = None if sel is None else np.array(sel, dtype=bool)
    model.y_mean_, model.y_std_ = dec_float(f["y_mean"]), dec_float(f["y_std"])
    model.noise_std_, model.n_new_ = dec_float(f["noise_std"]), dec_int(f["n_new"])
    model.strategy_, model.guard_fired_ = str(f["strategy"]), bool(f["guard_fired"])
    model.net_ = _net_from(f["net"], tensors, prefix, d)
    model.history_ = {str(k): TrainResult(
        dec_floats(r["train_loss"]).tolist(), dec_floats(r["val_loss"]).tolist(),
        None if r["best_epoch"] is None else np.array([dec_int(e) for e in r["best_epoch"]]))
        for k, r in dict(f["history"]).items()}
    for k, v in dict(f["diagnostics"]).items():
        if k not in _DIAGNOSTICS:
            raise ValueError(f"unknown diagnostic {k!r}")
        setattr(model, k, _DIAGNOSTICS[k](v))


def model_from_meta(meta: dict, tensors: dict[str, torch.Tensor],
                    prefix: str = "") -> TransferMLPRegressor:
    """Inverse of ``model_to_meta``; KeyError/TypeError/ValueError on inconsistent input."""
    src = meta["source"]
    model = TransferMLPRegressor(**_params_from(dict(meta["params"])), source=None if src is None
                                 else _snapshot_from(src, tensors, f"{prefix}source."))
    if meta["snapshot"] is not None:
        model.source_snapshot_ = _snapshot_from(meta["snapshot"], tensors, f"{prefix}snapshot.")
    if meta["fitted"] is not None:
        _restore_fitted(model, meta["fitted"], tensors, f"{prefix}net.")
    return model
