"""Pool-based campaign replay on the METIS table: one (method, seed) of ``media_campaign.py``.

Hand-written. The pool is the METIS lysate table with replicate formulations merged (203
distinct formulations, mean yield). A replay starts from ``start`` pool rows picked by a Latin
hypercube (``lhs_pool_start``: the nearest not-yet-picked pool row to each LHS point, in
[0, 1]-scaled units), then runs ``rounds`` rounds: fit the method's model on the rows measured
so far, score every unmeasured pool row, pick ``batch`` rows by expected improvement over the
best measured yield with the library's greedy diverse selection (``select_batch``: best EI
first, skipping rows closer than ``min_distance`` RMS to a row already picked), then reveal
their yields. Methods: ``random`` (uniform picks), ``gp_ei`` (the tuned ARD GP of
``_media_baselines``), ``ensemble`` (TransferMLPRegressor from scratch) and
``ensemble_transfer`` (LP-FT from the model pretrained on the Borkowski table). All methods
share the seed's start design; model seeds depend on (seed, round).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from _media_baselines import gp_regressor

from sbmlhybrid.media.candidates import SearchSpace, acquisition, latin_hypercube, select_batch
from sbmlhybrid.media.estimator import TransferMLPRegressor

METHODS = ("random", "gp_ei", "ensemble", "ensemble_transfer")


def merged_pool(x: pd.DataFrame, y: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Distinct formulations (N, d) of x and their mean outcome (N,), first-seen order."""
    df = x.assign(_y=np.asarray(y, float)).groupby(list(x.columns), sort=False,
                                                   as_index=False)["_y"].mean()
    return df[list(x.columns)].reset_index(drop=True), df["_y"].to_numpy()


def unit_space(d: int) -> SearchSpace:
    """The unit cube [0, 1]^d as a SearchSpace (for LHS and distances in scaled units)."""
    return SearchSpace([f"u{j}" for j in range(d)], ["1"] * d, np.zeros(d), np.ones(d),
                       [np.array([0.5])] * d)


def unit_scale_pool(x: pd.DataFrame) -> np.ndarray:
    """Min-max scale the pool's columns to [0, 1] (constant columns -> 0): (N, d)."""
    a = x.to_numpy(float)
    lo, hi = a.min(0), a.max(0)
    return (a - lo) / np.where(hi > lo, hi - lo, 1.0)


def lhs_pool_start(z: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct pool rows (indices) nearest to n Latin-hypercube points in [0, 1]^d.

    z: (N, d) unit-scaled pool, N >= n. LHS points are taken in order; each takes the
    nearest (Euclidean) pool row not taken yet.
    """
    if n > len(z):
        raise ValueError(f"cannot pick {n} distinct rows from a pool of {len(z)}")
    points = latin_hypercube(unit_space(z.shape[1]), n, rng)
    free = np.ones(len(z), dtype=bool)
    out = np.empty(n, dtype=int)
    for i, p in enumerate(points):
        dist = np.where(free, ((z - p) ** 2).sum(1), np.inf)
        out[i] = int(np.argmin(dist))
        free[out[i]] = False
    return out


def top_set(y: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the top ``fraction`` of the pool: y >= the ceil(fraction * N)-th largest."""
    k = max(1, int(np.ceil(fraction * len(y))))
    return np.flatnonzero(y >= np.sort(y)[::-1][k - 1])


def _scores(method: str, ctx: dict[str, Any], obs: np.ndarray, cand: np.ndarray,
            seed: int, st: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Predictive (mean, std) (m,) of the candidate pool rows after fitting on obs."""
    x, z, y = ctx["x"], ctx["z"], ctx["y"]
    if method == "gp_ei":
        gp = gp_regressor(z.shape[1], seed, st["gp_restarts"]).fit(z[obs], y[obs])
        return gp.predict(z[cand], return_std=True)
    source = ctx["source"] if method == "ensemble_transfer" else None
    est = TransferMLPRegressor(source=source, strategy="lp-ft", random_state=seed,
                               **st["transfer_kw"]).fit(x.iloc[obs], y[obs])
    return est.predict(x.iloc[cand], return_std=True)


def propose(method: str, ctx: dict[str, Any], obs: np.ndarray, rng: np.random.Generator,
            seed: int, st: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """The next batch (pool indices, disjoint from obs) and what the model predicted."""
    cand = np.setdiff1d(np.arange(len(ctx["y"])), obs)
    n = min(st["batch"], len(cand))
    if method == "random":
        return rng.choice(cand, n, replace=False), {}
    mean, std = _scores(method, ctx, obs, cand, seed, st)
    acq = acquisition(mean, std, "ei", best=float(ctx["y"][obs].max()))
    pick = select_batch(ctx["z"][cand], acq, n, ctx["space"], min_distance=st["min_distance"])
    return cand[pick], {"predicted": mean[pick].tolist(), "std": std[pick].tolist()}


def replay(method: str, seed: int, ctx: dict[str, Any], st: dict[str, Any]) -> dict[str, Any]:
    """One campaign: start design, ``st["rounds"]`` batches; record per round what was
    picked, the best yield so far and when a top-5 % / top-1 % formulation was first seen."""
    y = ctx["y"]
    obs = lhs_pool_start(ctx["z"], st["start"], np.random.default_rng((31, seed)))
    rng = np.random.default_rng((32, seed))
    rounds = [{"round": 0, "picked": obs.tolist(), "cpu_s": 0.0}]
    for r in range(1, st["rounds"] + 1):
        c0 = time.process_time()
        pick, pred = propose(method, ctx, obs, rng, 1000 * seed + r, st)
        obs = np.concatenate([obs, pick])
        rounds.append({"round": r, "picked": pick.tolist(), "cpu_s": time.process_time() - c0,
                       **pred})
    best = [float(y[np.concatenate([np.asarray(q["picked"], int) for q in rounds[:i + 1]])]
                  .max()) for i in range(len(rounds))]
    return {"method": method, "seed": seed, "rounds": rounds, "best_by_round": best,
            "rounds_to_top5": _first_hit(rounds, ctx["top5"], st["rounds"]),
            "rounds_to_top1": _first_hit(rounds, ctx["top1"], st["rounds"]),
            "pool_max": float(y.max()), "n_measured": int(len(obs))}


def _first_hit(rounds: list[dict[str, Any]], top: np.ndarray, n_rounds: int) -> int:
    """First round (0 = start design) whose picks include a row of ``top``; n_rounds + 1
    when none did (censored)."""
    for q in rounds:
        if np.isin(q["picked"], top).any():
            return int(q["round"])
    return n_rounds + 1
