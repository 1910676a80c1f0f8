"""Profile likelihoods of a stored fit, resumable, with 95 % intervals.

Reused: pyPESTO's profiler (`pypesto.profile.parameter_profile`: re-optimization of the other
parameters along each profiled one), its threshold (`chi2_quantile_to_ratio`) and interval
(`calculate_approximate_ci`, linear interpolation of the profile at the threshold), and its
HDF5 store. Written here: one parameter at a time with an atomic checkpoint after each, so an
interrupted run resumes with the missing parameters; the interval table (PEtab and linear
scale, and whether a bound was hit, i.e. the parameter is not identifiable on that side).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pypesto
import pypesto.optimize as optimize
import pypesto.profile as pprofile
import pypesto.store
from tqdm.auto import tqdm

from sbmlhybrid.analysis.stored import read_fit, write_atomic
from sbmlhybrid.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["ProfileSettings", "profile", "profile_intervals"]


@dataclass
class ProfileSettings:
    """Settings of a profile computation.

    Attributes:
        parameters: Estimated parameter ids to profile (default: all).
        alpha: Confidence level of the intervals (likelihood-ratio threshold chi2(alpha, 1)).
        optimizer: "lbfgsb" or "fides": re-optimization at each profile point.
        max_iter: Iteration limit of each re-optimization.
        ratio_min: Stop a profile where the likelihood ratio falls below this (must lie
            below the threshold, exp(-chi2/2) = 0.147 at 95 %, so the interval is bracketed).
    """

    parameters: list[str] | None = None
    alpha: float = 0.95
    optimizer: str = "lbfgsb"
    max_iter: int = 200
    ratio_min: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InputError(f"alpha must lie in (0, 1), got {self.alpha}")
        if self.optimizer not in ("lbfgsb", "fides"):
            raise InputError(f"unknown profile optimizer {self.optimizer!r}; lbfgsb or fides")
        threshold = pprofile.chi2_quantile_to_ratio(self.alpha)
        if not 0 < self.ratio_min < threshold:
            raise InputError(f"ratio_min must lie in (0, {threshold:.3g}) for alpha "
                             f"{self.alpha}, got {self.ratio_min}")


def _indices(problem: pypesto.Problem, ids: list[str], wanted: list[str] | None) -> list[int]:
    if wanted is None:
        indices = list(problem.x_free_indices)
    else:
        unknown = sorted(set(wanted) - set(ids))
        if unknown:
            raise InputError(f"unknown estimated parameter(s) {unknown}; known: {ids}")
        indices = [problem.x_names.index(p) for p in wanted]
    lb, ub = np.asarray(problem.lb_full), np.asarray(problem.ub_full)
    unbounded = [problem.x_names[i] for i in indices
                 if not (np.isfinite(lb[i]) and np.isfinite(ub[i]))]
    if unbounded:  # pyPESTO's profiler needs both bounds (e.g. PEtab SciML network entries)
        raise InputError(f"profiles need finite bounds; unbounded: {unbounded} (give them "
                         "bounds in the parameter table, or choose parameters)")
    return indices


def profile(objective, fit: str | Path | pypesto.Result,
            settings: ProfileSettings | None = None, output: str | Path | None = None,
            progress: bool = True) -> pypesto.Result:
    """Profile likelihoods from the best start of a fit; resumes from `output`.

    Args:
        objective: The problem's objective (what `fit` was run on).
        fit: The fit's result file (``result.hdf5`` of `sbmlhybrid.optimize.fit`) or result.
        settings: What to profile and how.
        output: HDF5 file holding the fit and the profiles so far (written after every
            parameter; rerunning continues with the missing ones).
        progress: Progress bar over parameters.

    Returns:
        The pyPESTO result with `profile_result` filled for the profiled parameters.
    """
    settings = settings or ProfileSettings()
    problem = objective.pypesto_problem
    indices = _indices(problem, objective.x_free_ids, settings.parameters)
    path = Path(output) if output else None
    if path is not None and path.exists():
        result = read_fit(path, problem, profile=True)
    else:
        result = fit if isinstance(fit, pypesto.Result) else read_fit(fit, problem)
    options = pprofile.ProfileOptions(ratio_min=settings.ratio_min)
    optimizer = (optimize.ScipyOptimizer(method="L-BFGS-B",
                                         options={"maxiter": settings.max_iter})
                 if settings.optimizer == "lbfgsb" else
                 optimize.FidesOptimizer(verbose=logging.WARNING,
                                         options={"maxiter": settings.max_iter}))
    done = _done(result)
    bar = tqdm(indices, desc="profiles", unit="parameter", disable=not progress)
    for i in bar:
        bar.set_postfix(parameter=problem.x_names[i])
        if i in done:
            continue
        result = pprofile.parameter_profile(
            problem=problem, result=result, optimizer=optimizer, profile_index=[i],
            profile_list=0 if result.profile_result.list else None,
            profile_options=options, progress_bar=False)
        if path is not None:
            write_atomic(result, path, profile=True)
    return result


def _done(result: pypesto.Result) -> set[int]:
    if not result.profile_result.list:
        return set()
    return {i for i, p in enumerate(result.profile_result.list[0]) if p is not None}


def profile_intervals(result: pypesto.Result, alpha: float = 0.95) -> pd.DataFrame:
    """Per profiled parameter: estimate and `alpha` interval on PEtab and linear scale.

    Columns: parameterId, scale, estimate, lower, upper (PEtab scale), estimate_lin,
    lower_lin, upper_lin, lower_at_bound / upper_at_bound (the profile hit the bound before
    the threshold: not identifiable on that side).
    """
    problem = result.problem
    threshold = pprofile.chi2_quantile_to_ratio(alpha)
    best = np.asarray(result.optimize_result.list[0].x)
    rows = []
    for i, prof in enumerate(result.profile_result.list[0] if result.profile_result.list
                             else []):
        if prof is None:
            continue
        xs = np.asarray(prof.x_path)[i, :]
        ratios = np.asarray(prof.ratio_path)
        order = np.argsort(xs)
        lo, hi = pprofile.calculate_approximate_ci(xs[order], ratios[order], threshold)
        scale = problem.x_scales[i] if problem.x_scales is not None else "lin"
        rows.append({"parameterId": problem.x_names[i], "scale": scale, "estimate": best[i],
                     "lower": lo, "upper": hi,
                     "lower_at_bound": bool(ratios[order][0] >= threshold),
                     "upper_at_bound": bool(ratios[order][-1] >= threshold)})
    table = pd.DataFrame(rows)
    if len(table):
        for col in ("estimate", "lower", "upper"):
            table[f"{col}_lin"] = [_unscale(v, s) for v, s in zip(table[col], table["scale"])]
    return table


def _unscale(value: float, scale: str) -> float:
    return float(10 ** value if scale == "log10" else np.exp(value) if scale == "log"
                 else value)
