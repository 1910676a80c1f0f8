"""MCMC sampling of the posterior from a stored fit, resumable in chunks, with diagnostics.

Reused: pyPESTO's adaptive Metropolis sampler (`pypesto.sample.AdaptiveMetropolisSampler`),
its Geweke burn-in test and effective sample size, and its HDF5 store. Written here: the chain
runs in chunks, each seeded by (seed, chunk) and started at the last sample of the previous
one, with an atomic checkpoint after each chunk, so an interrupted run continues where it
stopped (the sampler's covariance adaptation restarts per chunk from the chain so far's
covariance); and the posterior summary (mean, standard deviation, Monte-Carlo standard error =
sd / sqrt(effective sample size), 95 % credible interval) after burn-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pypesto
import pypesto.sample as psample
from pypesto.result import McmcPtResult
from tqdm.auto import tqdm

from sbmlhybrid.analysis.stored import read_fit, write_atomic
from sbmlhybrid.errors import InputError

__all__ = ["SampleSettings", "posterior_summary", "sample"]


@dataclass
class SampleSettings:
    """Settings of an MCMC run.

    Attributes:
        n_samples: Length of the chain (samples after the start point).
        chunk: Samples per checkpoint.
        seed: Seed of the chain (chunk k uses the seed sequence (seed, k)).
    """

    n_samples: int = 10_000
    chunk: int = 2_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_samples", "chunk"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")


def _chain(result: pypesto.Result) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    sr = result.sample_result
    if sr is None or getattr(sr, "trace_x", None) is None or not len(sr.trace_x):
        return None
    return (np.asarray(sr.trace_x)[0], np.asarray(sr.trace_neglogpost)[0],
            np.asarray(sr.trace_neglogprior)[0])


def sample(objective, fit: str | Path | pypesto.Result, settings: SampleSettings | None = None,
           output: str | Path | None = None, progress: bool = True) -> pypesto.Result:
    """Sample the posterior (likelihood x priors, flat within bounds) from the best fit.

    Args:
        objective: The problem's objective (what `fit` was run on).
        fit: The fit's result file (``result.hdf5``) or result.
        settings: Chain length, chunking, seed.
        output: HDF5 file with the fit and the chain so far (rerun to continue).
        progress: Progress bar over samples.

    Returns:
        The result with `sample_result` (one chain; `burn_in` from Geweke's test,
        `effective_sample_size` after burn-in).
    """
    settings = settings or SampleSettings()
    problem = objective.pypesto_problem
    path = Path(output) if output else None
    if path is not None and path.exists():
        result = read_fit(path, problem, sample=True)
    else:
        result = fit if isinstance(fit, pypesto.Result) else read_fit(fit, problem)
    chain = _chain(result)
    x0 = np.asarray(result.optimize_result.list[0].x)[problem.x_free_indices]
    have = 0 if chain is None else len(chain[0]) - 1
    bar = tqdm(total=settings.n_samples, initial=min(have, settings.n_samples), unit="sample",
               desc="sampling", disable=not progress)
    while have < settings.n_samples:
        k = have // settings.chunk
        n = min(settings.chunk, settings.n_samples - have)
        start = x0 if chain is None else chain[0][-1]
        np.random.seed(np.random.SeedSequence([settings.seed, k]).generate_state(1)[0])
        piece = psample.sample(problem, n_samples=n, sampler=psample.AdaptiveMetropolisSampler(
                                   options={"show_progress": False}),  # our bar instead
                               x0=np.asarray(start), result=pypesto.Result(problem))
        new = _chain(piece)
        chain = new if chain is None else tuple(np.concatenate([old, part[1:]])
                                                for old, part in zip(chain, new))
        have = len(chain[0]) - 1
        result.sample_result = McmcPtResult(
            trace_x=chain[0][None], trace_neglogpost=chain[1][None],
            trace_neglogprior=chain[2][None], betas=[1.0])
        psample.geweke_test(result)
        psample.effective_sample_size(result)
        if path is not None:
            write_atomic(result, path, sample=True)
        bar.update(n)
    bar.close()
    return result


def posterior_summary(result: pypesto.Result, level: float = 0.95) -> pd.DataFrame:
    """Per estimated parameter (PEtab scale), after burn-in: mean, sd, Monte-Carlo standard
    error of the mean (sd / sqrt(ESS)), and the central `level` credible interval."""
    chain = _chain(result)
    if chain is None:
        raise InputError("result holds no samples")
    sr = result.sample_result
    burn = int(sr.burn_in or 0)
    xs = chain[0][burn:]
    ess = float(sr.effective_sample_size or len(xs))
    problem = result.problem
    names = [problem.x_names[i] for i in problem.x_free_indices]
    q = (1 - level) / 2
    return pd.DataFrame({
        "parameterId": names, "mean": xs.mean(axis=0), "sd": xs.std(axis=0, ddof=1),
        "mc_se": xs.std(axis=0, ddof=1) / np.sqrt(max(ess, 1.0)),
        "lower": np.quantile(xs, q, axis=0), "upper": np.quantile(xs, 1 - q, axis=0),
        "ess": ess, "burn_in": burn, "n_samples": len(chain[0]) - 1})
