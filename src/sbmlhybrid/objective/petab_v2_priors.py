"""Parameter priors of a PEtab v2 problem as a pyPESTO prior objective.

Reused: petab.v2's prior distributions (`Problem.get_priors`: all eleven PEtab v2 priors,
truncated to the parameter bounds; when any prior is given, estimated parameters without one
get a uniform prior over their bounds) for the log-density values, and pyPESTO's
`NegLogParameterPriors` to add them to the likelihood. Hand-written: the first and second
derivatives of those log-densities, which petab does not provide. pyPESTO's own v2 prior
import is not used: it knows normal, laplace, log-normal and uniform only and ignores the
truncation (the suite's ``log_prior`` values include it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import petab.v2 as v2
from petab.v1 import distributions as dist
from pypesto.objective import NegLogParameterPriors

Score = Callable[[float], tuple[float, float]]


def _score(d: dist.Distribution) -> Score:
    """y -> (d/dy, d²/dy²) of the log-density of `d` before its log transformation.

    Truncation scales the density by a constant inside the bounds: no effect here.
    """
    if isinstance(d, dist.Normal):
        return lambda y: (-(y - d.loc) / d.scale**2, -1.0 / d.scale**2)
    if isinstance(d, dist.Laplace):
        return lambda y: (-float(np.sign(y - d.loc)) / d.scale, 0.0)
    if isinstance(d, dist.Cauchy):
        def cauchy(y: float) -> tuple[float, float]:
            u, s2 = y - d.loc, d.scale**2
            return -2 * u / (s2 + u**2), -2 * (s2 - u**2) / (s2 + u**2) ** 2
        return cauchy
    if isinstance(d, dist.ChiSquare):
        return lambda y: ((d.dof / 2 - 1) / y - 0.5, -(d.dof / 2 - 1) / y**2)
    if isinstance(d, dist.Exponential):
        return lambda y: (-1.0 / d.scale, 0.0)
    if isinstance(d, dist.Gamma):
        return lambda y: ((d.shape - 1) / y - 1 / d.scale, -(d.shape - 1) / y**2)
    if isinstance(d, dist.Rayleigh):
        return lambda y: (1 / y - y / d.scale**2, -1 / y**2 - 1 / d.scale**2)
    if isinstance(d, dist.Uniform | dist.LogUniform):  # flat before the log transformation
        return lambda y: (0.0, 0.0)
    raise TypeError(f"no log-density derivative for {d!r}")


def log_density(d: dist.Distribution) -> tuple[Callable[[float], float], Callable[[float], float],
                                                Callable[[float], float]]:
    """(log p(x), d/dx log p(x), d²/dx² log p(x)) of a petab distribution, x linear.

    For a log-transformed distribution (log base b, y = log_b x) the density of x is
    p_y(y) / (x ln b), so d/dx log p = s1(y) c / x - 1/x and
    d²/dx² log p = (s2(y) c² - s1(y) c + 1) / x², with c = 1 / ln b and s1, s2 the
    derivatives of log p_y.
    """
    score = _score(d)

    def value(x: float) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.log(d.pdf(x)))

    if d.logbase is False:
        return value, lambda x: score(x)[0], lambda x: score(x)[1]
    c = 1.0 / np.log(d.logbase)

    def first(x: float) -> float:
        return (score(np.log(x) * c)[0] * c - 1.0) / x

    def second(x: float) -> float:
        s1, s2 = score(np.log(x) * c)
        return (s2 * c**2 - s1 * c + 1.0) / x**2

    return value, first, second


def prior_objective(problem: v2.Problem, x_ids: list[str]) -> NegLogParameterPriors | None:
    """Negative log-prior over the full parameter vector ordered as `x_ids`, or None when
    the problem has no priors (a maximum-likelihood problem)."""
    priors = problem.get_priors()
    if not priors:
        return None
    prior_list = []
    for pid, d in priors.items():
        fun, dx, ddx = log_density(d)
        prior_list.append({"index": x_ids.index(pid), "density_fun": fun, "density_dx": dx,
                           "density_ddx": ddx, "type": type(d).__name__,
                           "parameters": repr(d), "scale": "lin"})
    return NegLogParameterPriors(prior_list, x_names=list(x_ids))


__all__ = ["log_density", "prior_objective"]
