"""Saving and loading TransferMLPRegressor models without pickle.

Hand-written. A model file is the zip container of ``container`` (meta.json +
tensors.pt, written atomically); ``load_model`` raises InputError for anything
that is not such a file and never executes its content. Schema of meta.json
(version 2; arrays are JSON lists, concentrations in the user's units):

    format, version   "sbmlhybrid.media.model", 2
    params            constructor parameters except ``source`` (depth tuples as lists)
    source            null, or the snapshot the model transfers from (``source`` param)
    snapshot          null, or the model's own pretrained snapshot (after ``pretrain``)
        snapshot fields: columns (d,), x_min, x_max, x_mean (d,), y_mean, y_std,
        activation, n_layers; weights in tensors "<source|snapshot>.w{i}" (E, d_in, d_out)
        and ".b{i}" (E, 1, d_out)
    fitted            null (unfitted) or: columns (d,), input_columns, x_min, x_max,
        x_fill (d,), selected (d bools or null), y_mean, y_std, noise_std (standardised
        units), n_new, strategy, guard_fired, net {n_layers, width, n_members,
        activation}, history {stage: {train_loss, val_loss, best_epoch}}, diagnostics
        (out_of_range_*, new/missing components, CV scores, chosen depths, MI); weights
        in tensors "net.w{i}"/"net.b{i}".

Weights are stored bit-exactly (float32) and floats through JSON round-trip
exactly, so a loaded model predicts identically. The encoding and decoding of this
schema is ``model_meta`` (campaign files embed it too). Version-1 files were pickles;
``resave_trusted_pickle`` converts one the user vouches for.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.media.container import (
    MODEL_FORMAT,
    VERSION,
    decoding,
    legacy_kind,
    read_container,
    write_container,
)
from sbmlhybrid.media.estimator import TransferMLPRegressor
from sbmlhybrid.media.model_meta import model_from_meta, model_to_meta
from sbmlhybrid.media.strategies import canonical_strategy


# ------------------------------------------------------------------------ files
def save_model(model: TransferMLPRegressor, path: str | Path) -> None:
    """Atomically write ``model`` (fitted or not) to ``path`` (a zip, see module doc)."""
    tensors: dict[str, torch.Tensor] = {}
    meta = {"format": MODEL_FORMAT, "version": VERSION, **model_to_meta(model, tensors)}
    write_container(path, meta, tensors)


def load_model(path: str | Path) -> TransferMLPRegressor:
    """Read a model written by ``save_model``; it predicts identically to the saved one.

    Raises FileNotFoundError for a missing path and InputError (CLI exit code 2)
    for a foreign, damaged, truncated or old (pickle) file; nothing in it is executed.
    """
    meta, tensors = read_container(path, MODEL_FORMAT)
    with decoding(path, "model"):
        return model_from_meta(meta, tensors)


def upgrade_legacy_model(model: TransferMLPRegressor) -> TransferMLPRegressor:
    """Rename a version-1 estimator's attributes in place: its "lp-ft" unfroze only the
    ``lpft_unfreeze`` layers next to the head, which is today's "staged"."""
    d = model.__dict__
    if "lpft_unfreeze" in d:
        d["staged_depths"] = d.pop("lpft_unfreeze")
        for key in ("strategy", "strategy_"):
            if key in d and str(d[key]).lower() in ("lp-ft", "lpft", "lp_ft"):
                d[key] = "staged"
        for old, new in (("lpft_unfreeze_", "staged_depth_"), ("lpft_cv_rmse_", "staged_cv_rmse_")):
            if old in d:
                d[new] = d.pop(old)
    if isinstance(d.get("source"), TransferMLPRegressor):
        upgrade_legacy_model(d["source"])
    return model


def resave_trusted_pickle(old: str | Path, new: str | Path) -> str:
    """Convert a version-1 (pickle) model or campaign file to the current format.

    This UNPICKLES ``old``, which runs whatever code the file carries: call it only
    for files you trust. Files that do not start like a version-1 file are refused
    (InputError) before anything is unpickled. Returns "model" or "campaign".
    """
    data = Path(old).read_bytes()
    kind = legacy_kind(data[:512])
    if kind not in ("model", "campaign"):
        raise InputError(Issue("not a version-1 sbmlhybrid model or campaign pickle; "
                               "nothing was unpickled", file=str(old)))
    try:
        state = pickle.loads(data)  # deliberate: the caller vouched for the file
    except Exception as err:  # any unpickling failure is bad input
        raise InputError(Issue(f"cannot read the old file ({err})", file=str(old))) from None
    with decoding(old, kind):
        if not isinstance(state, dict):
            raise TypeError(f"the old file holds a {type(state).__name__}, not a dict")
        if kind == "model":
            save_model(upgrade_legacy_model(state["model"]), new)
            return kind
        from sbmlhybrid.media.campaign import Campaign  # campaign files embed model files

        camp = Campaign.__new__(Campaign)
        camp.__dict__.update({k: v for k, v in state.items() if k != "format"})
        legacy = "lpft_unfreeze" in camp.model.__dict__
        camp.model = upgrade_legacy_model(camp.model)
        if legacy and canonical_strategy(camp.strategy) == "lp-ft":
            camp.strategy = "staged"
        camp.save(new)
    return kind
