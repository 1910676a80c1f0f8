"""Ask/tell medium-optimisation campaign with atomic on-disk state.

Hand-written. A ``Campaign`` holds the search space, linear constraints, the
current model (a TransferMLPRegressor), the observations told so far, the
pending proposals and the RNG state. ``ask`` proposes a plate of diverse
formulations by acquisition (UCB/EI) over generated candidates; ``tell`` adds
measured outcomes and re-transfers the pretrained model on every observation
(or re-fits from scratch when the model has no source). ``save`` writes the
whole state with a temp-file + fsync + ``os.replace`` (atomic on POSIX) as the
zip container of ``container``: meta.json holds the settings, search space,
constraints, RNG state, observation/pending tables (column lists with dtypes)
and the model's metadata (``modelfile`` schema under "model"); tensors.pt the
model's weights (names prefixed "model."). ``load`` restores it bit-identically
and, like ``modelfile.load_model``, never unpickles anything.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd

from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.media.candidates import (
    LinearConstraint,
    SearchSpace,
    acquisition,
    generate_candidates,
    score_candidates,
    select_batch,
)
from sbmlhybrid.media.container import (
    CAMPAIGN_FORMAT,
    VERSION,
    atomic_write_bytes,
    dec_float,
    dec_floats,
    dec_int,
    dec_strs,
    decoding,
    enc_float,
    enc_scalar,
    read_container,
    write_container,
)
from sbmlhybrid.media.estimator import TransferMLPRegressor
from sbmlhybrid.media.model_meta import model_from_meta, model_to_meta

__all__ = ["Campaign", "atomic_write_bytes", "propose"]
# bit generators whose state is plain (big) integers, so it fits JSON exactly
_RNG_KINDS = ("PCG64", "PCG64DXSM", "SFC64")


def _dec_str(v) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {v!r}")
    return v


_SETTINGS = {"plate_size": dec_int, "acquisition": _dec_str, "beta": dec_float,
             "n_candidates": dec_int, "strategy": _dec_str, "objective": _dec_str,
             "min_distance": dec_float, "round": dec_int, "_next_id": dec_int}


def _enc_cell(v):
    """JSON value of one table cell (numpy scalars to Python, NaN/inf as strings)."""
    return enc_scalar(v, "table value")


def _frame_meta(df: pd.DataFrame) -> dict:
    return {"columns": [str(c) for c in df.columns], "dtypes": [str(t) for t in df.dtypes],
            "values": [[_enc_cell(v) for v in df.iloc[:, j].tolist()]
                       for j in range(df.shape[1])]}


def _frame_from(m: dict) -> pd.DataFrame:
    """Inverse of ``_frame_meta`` for float64, int64 and object (scalar) columns."""
    cols, dtypes, values = dec_strs(m["columns"]), dec_strs(m["dtypes"]), list(m["values"])
    if not len(cols) == len(dtypes) == len(values) or len({len(v) for v in values}) > 1:
        raise ValueError("table columns, dtypes and values do not match")
    data = {}
    for j, (dt, vals) in enumerate(zip(dtypes, values)):
        if dt == "float64":
            data[j] = pd.Series(dec_floats(vals), dtype=dt)
        elif dt == "int64":
            data[j] = pd.Series([dec_int(v) for v in vals], dtype=dt)
        elif dt == "object":
            if not all(v is None or isinstance(v, int | float | str) for v in vals):
                raise TypeError("object column holds a non-scalar value")
            data[j] = pd.Series(vals, dtype=dt)
        else:
            raise ValueError(f"unsupported column dtype {dt!r}")
    df = pd.DataFrame(data) if data else pd.DataFrame(index=pd.RangeIndex(0))
    df.columns = cols
    return df


def _space_meta(space: SearchSpace) -> dict:
    return {"components": list(space.components), "units": list(space.units),
            "lower": [enc_float(v) for v in space.lower],
            "upper": [enc_float(v) for v in space.upper],
            "levels": [[enc_float(v) for v in lev] for lev in space.levels]}


def _space_from(m: dict) -> SearchSpace:
    comps, units = dec_strs(m["components"]), dec_strs(m["units"])
    lo, hi = dec_floats(m["lower"]), dec_floats(m["upper"])
    levels = [dec_floats(v) for v in m["levels"]]
    if not len(comps) == len(units) == len(lo) == len(hi) == len(levels):
        raise ValueError("search-space fields have different lengths")
    return SearchSpace(comps, units, lo, hi, levels)


def _constraint_meta(c: LinearConstraint) -> dict:
    return {"name": c.name, "coefficients": [enc_float(v) for v in c.coefficients],
            "lower": enc_float(c.lower), "upper": enc_float(c.upper),
            "offset": enc_float(c.offset)}


def _constraint_from(m: dict, d: int) -> LinearConstraint:
    coef = dec_floats(m["coefficients"])
    if coef.shape != (d,):
        raise ValueError(f"constraint {m.get('name')!r} has {coef.size} coefficients for {d}")
    return LinearConstraint(str(m["name"]), coef, dec_float(m["lower"]),
                            dec_float(m["upper"]), dec_float(m["offset"]))


def _rng_from(state: dict) -> np.random.Generator:
    kind = state["bit_generator"]
    if kind not in _RNG_KINDS:
        raise ValueError(f"unsupported bit generator {kind!r}")
    bits = getattr(np.random, kind)()
    bits.state = state
    return np.random.Generator(bits)


def propose(model: TransferMLPRegressor, space: SearchSpace, n: int,
            rng: np.random.Generator, constraints: list[LinearConstraint] | None = None,
            n_candidates: int = 100_000, kind: str = "ucb", beta: float = 2.0,
            top: np.ndarray | None = None, best: float | None = None,
            min_distance: float = 0.1) -> pd.DataFrame:
    """One plate of ``n`` proposals: generate, score (batched), acquire, select diverse.

    Returns a DataFrame with the components (search-space units) and columns
    ``predicted``, ``std``, ``acquisition``.
    """
    cands = generate_candidates(space, n_candidates, rng, top=top, constraints=constraints)
    if len(cands) == 0:
        raise InputError(Issue("no candidate satisfies the constraints"))
    mean, std = score_candidates(model, cands, space.components)
    acq = acquisition(mean, std, kind, beta=beta, best=best)
    idx = select_batch(cands, acq, n, space, min_distance=min_distance)
    out = pd.DataFrame(cands[idx], columns=space.components)
    out["predicted"], out["std"], out["acquisition"] = mean[idx], std[idx], acq[idx]
    return out


class Campaign:
    """Stateful ask/tell loop.

    Args:
        space: Search space. model: fitted TransferMLPRegressor (pretrained or transferred).
        constraints: Linear constraints every proposal satisfies.
        plate_size: Default batch size of ``ask``. acquisition: "ucb" or "ei". beta: UCB weight.
        n_candidates: Candidates generated per ask. strategy: transfer strategy used by ``tell``.
        objective: Name of the outcome column expected by ``tell``.
        seed: RNG seed.
    """

    def __init__(self, space: SearchSpace, model: TransferMLPRegressor,
                 constraints: list[LinearConstraint] | None = None, plate_size: int = 96,
                 acquisition: str = "ucb", beta: float = 2.0, n_candidates: int = 100_000,
                 strategy: str = "lp-ft", objective: str = "yield", seed: int = 0,
                 min_distance: float = 0.1) -> None:
        self.space, self.model = space, model
        self.constraints = list(constraints or [])
        self.plate_size, self.acquisition, self.beta = plate_size, acquisition, beta
        self.n_candidates, self.strategy, self.objective = n_candidates, strategy, objective
        self.min_distance = min_distance
        self.rng = np.random.default_rng(seed)
        self.observations = pd.DataFrame(columns=[*space.components, objective])
        self.pending = pd.DataFrame(columns=["proposal_id", *space.components])
        self.round = 0
        self._next_id = 0

    def ask(self, n: int | None = None) -> pd.DataFrame:
        """Propose a plate (n or ``plate_size`` rows) with a ``proposal_id`` column."""
        n = n or self.plate_size
        obs = self.observations
        top = best = None
        if len(obs):
            k = max(1, int(np.ceil(0.1 * len(obs))))
            top = obs.nlargest(k, self.objective)[self.space.components].to_numpy(float)
            best = float(obs[self.objective].max())
        plate = propose(self.model, self.space, n, self.rng, self.constraints,
                        self.n_candidates, self.acquisition, self.beta, top, best,
                        self.min_distance)
        plate.insert(0, "proposal_id", np.arange(self._next_id, self._next_id + len(plate)))
        self._next_id += len(plate)
        self.round += 1
        plate.insert(1, "round", self.round)
        self.pending = pd.concat([self.pending, plate[["proposal_id", *self.space.components]]],
                                 ignore_index=True)
        return plate

    def tell(self, results: pd.DataFrame) -> TransferMLPRegressor:
        """Add measured rows (components + objective; ``proposal_id`` optional) and refit."""
        need = [*self.space.components, self.objective]
        issues = [Issue("column is missing from the results", column=c)
                  for c in need if c not in results.columns]
        if issues:
            raise InputError(issues, header="Invalid campaign results")
        bad = results[need].apply(pd.to_numeric, errors="coerce").isna()
        issues = [Issue("missing or non-numeric value", row=int(r) + 1, column=c)
                  for c in need for r in np.flatnonzero(bad[c].to_numpy())[:1]]
        if issues:
            raise InputError(issues, header="Invalid campaign results")
        rows = results[need].astype(float)
        self.observations = pd.concat([self.observations.astype(float), rows],
                                      ignore_index=True)
        if "proposal_id" in results.columns:
            done = set(results["proposal_id"].astype(int))
            self.pending = self.pending[~self.pending["proposal_id"].isin(done)].reset_index(
                drop=True)
        x = self.observations[self.space.components]
        y = self.observations[self.objective].to_numpy(float)
        model = copy.deepcopy(self.model)
        if getattr(model, "source_snapshot_", None) is not None or model.source is not None:
            model.transfer(x, y, self.strategy)
        else:
            model.fit(x, y)
        self.model = model
        return model

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Atomically write the campaign to ``path`` (zip container, see module doc)."""
        state = self.rng.bit_generator.state
        if state["bit_generator"] not in _RNG_KINDS:
            raise ValueError(f"cannot save a {state['bit_generator']} RNG; use {_RNG_KINDS}")
        tensors: dict = {}
        meta = {
            "format": CAMPAIGN_FORMAT, "version": VERSION,
            "settings": {k: _enc_cell(getattr(self, k)) for k in _SETTINGS},
            "space": _space_meta(self.space),
            "constraints": [_constraint_meta(c) for c in self.constraints],
            "rng": state, "observations": _frame_meta(self.observations),
            "pending": _frame_meta(self.pending),
            "model": model_to_meta(self.model, tensors, "model."),
        }
        write_container(path, meta, tensors)

    @classmethod
    def load(cls, path: str | Path) -> Campaign:
        """Restore a campaign written by ``save``.

        Raises FileNotFoundError for a missing path and InputError for a foreign,
        damaged, truncated or old (pickle) file; nothing in it is executed.
        """
        meta, tensors = read_container(path, CAMPAIGN_FORMAT)
        obj = cls.__new__(cls)
        with decoding(path, "campaign"):
            settings = dict(meta["settings"])
            if set(settings) != set(_SETTINGS):
                raise ValueError(f"settings must be {sorted(_SETTINGS)}")
            obj.__dict__.update({k: _SETTINGS[k](v) for k, v in settings.items()})
            obj.space = _space_from(meta["space"])
            obj.constraints = [_constraint_from(c, obj.space.dim) for c in meta["constraints"]]
            obj.rng = _rng_from(meta["rng"])
            obj.observations = _frame_from(meta["observations"])
            obj.pending = _frame_from(meta["pending"])
            obj.model = model_from_meta(meta["model"], tensors, "model.")
        return obj
