"""The pyPESTO side of a PEtab SciML objective: problem, priors and start points.

Reused: pyPESTO's `Problem`, `AggregatedObjective`, `NegLogParameterPriors` and its start-
point base class (which honours ``x_guesses``); petab.v2's prior distributions
(`petab.v2.core.Parameter.prior_dist`, truncated to the bounds) with the log-density
derivatives of `sbmlhybrid.objective.petab_v2_priors`. Hand-written: the mapping of the
SciML parameter table onto the free vector (network priors: the most specific row's prior
for every entry it maps to, `sbmlhybrid.sciml.problem.initialize_networks`), and start
points for networks (PyTorch's default initialization of each layer, seeded from numpy's
global generator like pyPESTO's own start-point methods, so `sbmlhybrid.optimize.fit` seeds
them per start).

Bounds: the parameter table's, on PEtab scale (network entries: the bounds of the most
specific row that maps to them; the PEtab SciML suites leave networks unbounded, -inf/inf,
which pyPESTO's optimizers and samplers take, but its profiles do not).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import pandas as pd
import petab.v1 as petab
import pypesto
import torch
from petab.v2.core import Parameter
from pypesto.objective import AggregatedObjective, NegLogParameterPriors
from pypesto.startpoint import CheckedStartpoints

from sbmlhybrid.errors import InputError, Issue, NotSupportedError
from sbmlhybrid.objective import EvaluateObjective
from sbmlhybrid.objective.petab_v2_priors import log_density

__all__ = ["SciMLStartpoints", "prior_term", "sciml_pypesto_problem"]

_PRIOR = "priorDistribution"
_PRIOR_PARAMETERS = "priorParameters"


def _prior_entry(index: int, pid: str, kind: str, parameters: Any, bounds: tuple[float, float],
                 nominal: float) -> dict[str, Any]:
    """One entry of `NegLogParameterPriors` (linear scale; truncated to `bounds`); `pid` is
    made a PEtab id for petab's `Parameter` (network entries: ``net.layer.array[i,j]``)."""
    dist = Parameter(**{"parameterId": re.sub(r"\W", "_", pid), "lowerBound": bounds[0],
                        "upperBound": bounds[1], "nominalValue": nominal, "estimate": "true",
                        _PRIOR: kind.strip(), _PRIOR_PARAMETERS: parameters}).prior_dist
    fun, dx, ddx = log_density(dist)
    return {"index": index, "density_fun": fun, "density_dx": dx, "density_ddx": ddx,
            "type": type(dist).__name__, "parameters": repr(dist), "scale": "lin"}


def _network_priors(objective: Any, offset: int) -> list[dict[str, Any]]:
    """Priors of the free network entries (PEtab SciML: a row's prior applies to every value
    it maps to; the most specific row decides), truncated to the entries' bounds."""
    problem = objective.problem
    priors = []
    for k, (n, key, idx) in enumerate(objective.net_ids):
        spec = problem.net_priors.get(n, {}).get(key)
        entry = None if spec is None else spec[idx]
        if entry is None:
            continue
        lower, upper = problem.net_bounds[n]
        pid = objective.x_free_ids[offset + k]
        try:
            priors.append(_prior_entry(offset + k, pid, entry[0], entry[1],
                                       (float(lower[key][idx]), float(upper[key][idx])),
                                       float(objective.net_nominal[n][key][idx])))
        except (ValueError, TypeError) as err:
            raise InputError(Issue(f"prior {entry[0]!r} ({entry[1]!r}) of network entry "
                                   f"{pid!r}: {err}", str(problem.source), entity=pid)) from err
    return priors


def prior_term(objective: Any) -> NegLogParameterPriors | None:
    """Negative log-prior over the free vector of a `SciMLObjective` (parameter-table
    ``priorDistribution`` / ``priorParameters`` of estimated mechanistic parameters and
    network entries, linear scale), or None when no estimated parameter has a prior."""
    mech: pd.DataFrame = objective.problem.mech
    priors = []
    for i, pid in enumerate(objective.mech_ids if _PRIOR in mech else []):
        kind = mech.loc[pid, _PRIOR]
        if not isinstance(kind, str) or not kind.strip():
            continue
        if objective.scales[pid] != petab.LIN:
            raise NotSupportedError(Issue(f"prior of {pid!r} on {objective.scales[pid]} scale: "
                                          "only linear-scale parameters take priors here",
                                          str(objective.problem.source), entity=pid))
        row = mech.loc[pid]
        priors.append(_prior_entry(i, pid, kind, row.get(_PRIOR_PARAMETERS, ""),
                                   (row[petab.LOWER_BOUND], row[petab.UPPER_BOUND]),
                                   row[petab.NOMINAL_VALUE]))
    priors += _network_priors(objective, len(objective.mech_ids))
    if not priors:
        return None
    return NegLogParameterPriors(priors, x_names=objective.x_free_ids)


def _uniform(lo: np.ndarray, hi: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Uniform draws within [lo, hi] (numpy's global generator); `fallback` where a bound
    is infinite."""
    finite = np.isfinite(lo) & np.isfinite(hi)
    draw = lo + np.random.random_sample(len(lo)) * np.where(finite, hi - lo, 0.0)
    return np.where(finite, draw, fallback)


class SciMLStartpoints(CheckedStartpoints):
    """Start points: ``x_guesses`` first; then mechanistic parameters uniform within their
    bounds (nominal where a bound is infinite) and network entries from PyTorch's default
    initialization of their layers (``reset_parameters``), uniform within the entry's
    bounds where that initialization falls outside them; seeded from numpy's generator."""

    def __init__(self, n_mech: int, networks: dict[str, torch.nn.Module],
                 net_ids: list[tuple[str, str, tuple[int, ...]]], nominal: np.ndarray):
        super().__init__(use_guesses=True, check_fval=False, check_grad=False)
        self.n_mech = n_mech
        self.networks = networks
        self.net_ids = list(net_ids)
        self.nominal = np.asarray(nominal, dtype=float)

    def _network_entries(self) -> np.ndarray:
        nets = {n: copy.deepcopy(m) for n, m in self.networks.items()}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.randint(0, 2**31 - 1)))
            for net in nets.values():
                for module in net.modules():
                    if module is not net and hasattr(module, "reset_parameters"):
                        module.reset_parameters()
        arrays = {n: dict(m.named_parameters()) for n, m in nets.items()}
        return np.array([float(arrays[n][k].detach()[i]) for n, k, i in self.net_ids])

    def sample(self, n_starts: int, lb: np.ndarray, ub: np.ndarray,
               priors: NegLogParameterPriors | None = None) -> np.ndarray:
        lb, ub, m = np.asarray(lb, float), np.asarray(ub, float), self.n_mech
        rows = []
        for _ in range(n_starts):
            mech = _uniform(lb[:m], ub[:m], self.nominal[:m])
            net = self._network_entries()
            outside = (net < lb[m:]) | (net > ub[m:])
            net = np.where(outside, _uniform(lb[m:], ub[m:], net), net)
            rows.append(np.concatenate([mech, net]))
        return np.asarray(rows, dtype=float).reshape(n_starts, len(self.nominal))


def sciml_pypesto_problem(objective: Any) -> pypesto.Problem:
    """pyPESTO problem of a `SciMLObjective`: its ``evaluate`` (`EvaluateObjective`) plus its
    prior term (``objective.prior``, from `prior_term`), the table's bounds, seeded start
    points."""
    mech = objective.problem.mech
    lb, ub = [], []
    for pid in objective.mech_ids:
        s = objective.scales[pid]
        lb.append(petab.scale(float(mech.loc[pid, petab.LOWER_BOUND]), s))
        ub.append(petab.scale(float(mech.loc[pid, petab.UPPER_BOUND]), s))
    bounds = objective.problem.net_bounds
    net_lb = [bounds[n][0][k][i] if n in bounds else -np.inf for n, k, i in objective.net_ids]
    net_ub = [bounds[n][1][k][i] if n in bounds else np.inf for n, k, i in objective.net_ids]
    lb, ub = np.array(lb + net_lb, dtype=float), np.array(ub + net_ub, dtype=float)
    likelihood = EvaluateObjective(objective)
    prior = objective.prior
    start = SciMLStartpoints(len(objective.mech_ids), objective.problem.networks,
                             objective.net_ids, objective.x_nominal_free)
    return pypesto.Problem(
        objective=likelihood if prior is None else AggregatedObjective([likelihood, prior]),
        lb=lb, ub=ub, x_names=objective.x_free_ids, x_scales=objective.x_scales,
        x_priors_defs=prior, startpoint_method=start, copy_objective=False)
