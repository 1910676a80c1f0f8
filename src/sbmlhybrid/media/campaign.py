"""Ask/tell medium-optimisation campaign with atomic on-disk state.

Hand-written. A ``Campaign`` holds the search space, linear constraints, the
current model (a TransferMLPRegressor), the observations told so far, the
pending proposals and the RNG state. ``ask`` proposes a plate of diverse
formulations by acquisition (UCB/EI) over generated candidates; ``tell`` adds
measured outcomes and re-transfers the pretrained model on every observation
(or re-fits from scratch when the model has no source). ``save`` writes the
whole state with a temp-file + fsync + ``os.replace`` (atomic on POSIX);
``load`` restores it bit-identically. Files are pickles: load trusted files only.
"""

from __future__ import annotations

import copy
import os
import pickle
import tempfile
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
from sbmlhybrid.media.estimator import TransferMLPRegressor

_FORMAT = "sbmlhybrid.media.campaign/1"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    def state(self) -> dict:
        """Everything needed to resume (plain objects, numpy, pandas, the model)."""
        return {"format": _FORMAT, **{k: v for k, v in self.__dict__.items()}}

    def save(self, path: str | Path) -> None:
        """Atomically write the campaign to ``path``."""
        atomic_write_bytes(path, pickle.dumps(self.state(), protocol=pickle.HIGHEST_PROTOCOL))

    @classmethod
    def load(cls, path: str | Path) -> Campaign:
        """Restore a campaign written by ``save`` (trusted files only)."""
        with open(path, "rb") as fh:
            try:
                state = pickle.load(fh)
            except Exception as err:  # any unpickling failure is bad input
                raise InputError(Issue(f"not a campaign file ({err})", file=str(path))) from None
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise InputError(Issue("not a campaign file", file=str(path)))
        obj = cls.__new__(cls)
        obj.__dict__.update({k: v for k, v in state.items() if k != "format"})
        return obj
