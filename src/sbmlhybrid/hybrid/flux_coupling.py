"""Couple a kinetic model to a flux-allocation layer: kinetics -> exchange rates -> consistent
rates in the mass balances (hand-written; libsbml edits the model, `FluxAllocation` does the
allocation).

A kinetic model (e.g. the CHO fed-batch model) computes specific rates — glucose uptake,
lactate secretion, growth — from its own rate laws. These rates need not be consistent with the
cell's stoichiometry. `couple_flux_allocation` inserts the allocation between the rate laws and
the mass balances: every coupled rate ``q`` (an assignment-rule variable) is split into

* ``q__kinetic``: the original rate law; every *other assignment rule* that used ``q`` (e.g.
  lactate production computed from glucose uptake) now reads the kinetic value, so the
  kinetics stay as written;
* ``q``: the stoichiometrically consistent rate ``(S_m v*)_q / factor``, which the rate rules,
  reactions and observables keep using.

Without active flux bounds ``v*`` is a fixed affine function of the exchange rates
(`FluxAllocation.linear_map`), so the whole allocation becomes assignment rules with numeric
coefficients: AMICI compiles it, and forward or adjoint sensitivities flow through it like
through any other rule. The model also gains read-outs (AMICI expressions, ``rdata.w``):
``flux__<reaction>`` for every flux (e.g. oxygen uptake, which no kinetic law gives) and
``flux__res_<metabolite>``, the inconsistency ``S_m v* - r`` in flux units.

When bounds can become active, the affine map is only valid where ``lb <= v* <= ub``; check
with `linear_map_violations`, and simulate with the bounds enforced along the torch path
(`sbmlhybrid.hybrid.torch_ode.TorchODE` with ``flux_coupling=``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import libsbml
import numpy as np
import pandas as pd
from petab.v1.models.sbml_model import SbmlModel

from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.flux import FluxAllocation
from sbmlhybrid.flux.layer import affine_formula
from sbmlhybrid.hybrid.sbml_edit import set_assignment_rule
from sbmlhybrid.problem import Problem
from sbmlhybrid.problem.validate import validate_problem

KINETIC_SUFFIX = "__kinetic"
FLUX_PREFIX = "flux__"
_TOL = 1e-14  # drop only round-off: eps-sized entries of R (~1e-5 for CHO) are real


@dataclass(frozen=True)
class ExchangeRate:
    """How one measured metabolite of the flux network is read from the kinetic model.

    Attributes:
        symbol: Assignment-rule variable of the kinetic model holding the rate (e.g.
            ``"q_glc"``, glucose uptake per cell).
        factor: Multiplies the model's rate to give the metabolite's *net production* in the
            network's flux unit; negative for uptake rates that the model writes as positive
            (e.g. ``-1 / (0.3 gDW/1e9 cells * 24 h/d)`` for mmol/(1e9 cells d) -> mmol/(gDW h)).
    """

    symbol: str
    factor: float


@dataclass(frozen=True)
class FluxCoupling:
    """A flux layer and which model rate feeds each of its measured metabolites.

    Attributes:
        layer: The allocation (its bounds are used by the torch path and by
            `linear_map_violations`; the compiled path uses its linear map).
        rates: measured metabolite id -> `ExchangeRate`, one per ``layer.measured_ids``.
    """

    layer: FluxAllocation
    rates: Mapping[str, ExchangeRate]

    def __post_init__(self) -> None:
        missing = [m for m in self.layer.measured_ids if m not in self.rates]
        extra = [m for m in self.rates if m not in self.layer.measured_ids]
        issues = [Issue(f"no model rate given for measured metabolite {m!r}", entity=m)
                  for m in missing]
        issues += [Issue(f"{m!r} is not a measured metabolite of the flux layer (measured: "
                         f"{', '.join(self.layer.measured_ids)})", entity=m) for m in extra]
        issues += [Issue(f"factor of {m!r} must be finite and non-zero, got {e.factor}",
                         entity=m) for m, e in self.rates.items()
                   if not (np.isfinite(e.factor) and e.factor != 0)]
        symbols = [e.symbol for e in self.rates.values()]
        issues += [Issue(f"model rate {s!r} feeds several metabolites", entity=s)
                   for s in sorted({s for s in symbols if symbols.count(s) > 1})]
        if issues:
            raise InputError(issues, header="Invalid flux coupling")

    @property
    def symbols(self) -> list[str]:
        """Model rate ids in the order of ``layer.measured_ids``."""
        return [self.rates[m].symbol for m in self.layer.measured_ids]

    @property
    def factors(self) -> np.ndarray:
        """(n_measured,) unit/sign factors in the order of ``layer.measured_ids``."""
        return np.array([self.rates[m].factor for m in self.layer.measured_ids])


def _sid(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


def couple_flux_allocation(problem: Problem, coupling: FluxCoupling, name: str | None = None,
                           model_id: str | None = None) -> Problem:
    """Insert the allocation's linear map between the rate laws and the balances.

    Args:
        problem: A validated PEtab problem whose model computes each coupled rate in an
            assignment rule.
        coupling: The layer and the rate of each measured metabolite.
        name: Problem name (cache folder prefix); default ``<model id>_flux``.
        model_id: SBML id of the coupled model; default ``<model id>_flux``. Train and
            held-out problems of one model get the same id, hence one compiled build.

    Returns:
        A new `Problem` (the input is not modified); no parameters are added, so parameter
        vectors of the uncoupled problem (and of networks hybridized afterwards) carry over.

    Raises:
        InputError: a rate is not an assignment-rule variable, or generated ids clash.
    """
    doc = problem.petab_problem.sbml_document.clone()
    model = doc.getModel()
    symbols, factors = coupling.symbols, coupling.factors
    issues = []
    for m, s in zip(coupling.layer.measured_ids, symbols):
        rule = model.getRuleByVariable(s)
        if rule is None or not rule.isAssignment():
            issues.append(Issue(f"rate {s!r} of metabolite {m!r} is not an assignment-rule "
                                "variable of the model", entity=s))
    taken = {e.getId() for e in doc.getListOfAllElements() if e.isSetId()}
    issues += [Issue(f"model id {i!r} clashes with the generated ids", entity=i) for i in taken
               if i.startswith(FLUX_PREFIX) or i.endswith(KINETIC_SUFFIX)]
    if issues:
        raise InputError(issues, header="Cannot couple the flux allocation")
    kinetic = {s: s + KINETIC_SUFFIX for s in symbols}
    # Kinetics keep reading kinetic values: rename in every existing assignment rule (the
    # coupled rules' own math included, before it moves to the __kinetic variable).
    for i in range(model.getNumRules()):
        rule = model.getRule(i)
        if rule.isAssignment():
            math = rule.getMath().deepCopy()
            for s, k in kinetic.items():
                math.renameSIdRefs(s, k)
            rule.setMath(math)
    for s in symbols:
        rule = model.getRuleByVariable(s)
        set_assignment_rule(model, kinetic[s], libsbml.formulaToL3String(rule.getMath()))
    lm = coupling.layer.linear_map()
    r_ids = [f"{FLUX_PREFIX}r_{_sid(m)}" for m in lm.measured_ids]
    for rid, s, f in zip(r_ids, symbols, factors):
        set_assignment_rule(model, rid, f"{f:.17g} * {kinetic[s]}")
    for fid, formula in lm.formulas(r_ids, _TOL).items():
        set_assignment_rule(model, f"{FLUX_PREFIX}{_sid(fid)}", formula)
    for i, (m, s, f) in enumerate(zip(lm.measured_ids, symbols, factors)):
        res_id = f"{FLUX_PREFIX}res_{_sid(m)}"
        set_assignment_rule(model, res_id, affine_formula(lm.R[i], r_ids, lm.c[i], _TOL))
        set_assignment_rule(model, s, f"({r_ids[i]} + {res_id}) / {f:.17g}")
    base = model.getId() or problem.name
    model.setId(model_id or f"{base}_flux")
    if doc.checkInternalConsistency():
        fatal = [doc.getError(i).getMessage() for i in range(doc.getNumErrors())
                 if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
        if fatal:
            raise InputError([Issue(f"SBML after flux coupling: {m.strip()}") for m in fatal])
    pp = copy.copy(problem.petab_problem)
    pp.model = SbmlModel(sbml_model=model, sbml_document=doc)
    files = {k: v for k, v in problem.files.items() if k != "sbml"}
    issues = validate_problem(pp, files)
    if issues:
        raise InputError(issues, header="Flux-coupled problem is not a valid PEtab problem")
    return Problem(pp, name or model.getId(), problem.source, files, problem.solver)


def linear_map_violations(coupling: FluxCoupling, fluxes: np.ndarray, tol: float = 1e-9
                          ) -> dict[str, float]:
    """Where the compiled (affine) allocation leaves the flux bounds.

    Args:
        coupling: The coupling the model was built with.
        fluxes: (n_points, n_fluxes) simulated ``flux__<reaction>`` read-outs, columns in
            ``coupling.layer.flux_ids`` order.
        tol: Absolute slack in flux units.

    Returns:
        ``"reaction:lower"``/``"reaction:upper"`` -> fraction of points that violate it (only
        bounds violated at least once).
    """
    v = np.asarray(fluxes, dtype=float)
    net = coupling.layer.network
    if v.ndim != 2 or v.shape[1] != len(coupling.layer.flux_ids):
        raise InputError(f"fluxes must be (n_points, {len(coupling.layer.flux_ids)}), "
                         f"got {v.shape}")
    out = {}
    for j, fid in enumerate(coupling.layer.flux_ids):
        for side, bound, bad in (("lower", net.lb[j], v[:, j] < net.lb[j] - tol),
                                 ("upper", net.ub[j], v[:, j] > net.ub[j] + tol)):
            if np.isfinite(bound) and bad.any():
                out[f"{fid}:{side}"] = float(bad.mean())
    return out


def flux_readout_ids(coupling: FluxCoupling) -> tuple[list[str], list[str]]:
    """Model ids of the flux and residual read-outs, in layer order."""
    lay = coupling.layer
    return ([f"{FLUX_PREFIX}{_sid(f)}" for f in lay.flux_ids],
            [f"{FLUX_PREFIX}res_{_sid(m)}" for m in lay.measured_ids])


def flux_readouts(objective: object, coupling: FluxCoupling,
                  x_free: Sequence[float] | None = None) -> pd.DataFrame:
    """Fluxes and residuals of a coupled, compiled model at the measurement times.

    Args:
        objective: `ModelObjective` of a problem built by `couple_flux_allocation`.
        coupling: The coupling it was built with.
        x_free: Parameters (PEtab scale); default nominal.

    Returns:
        Long table with columns ``conditionId, time, id, value``: ``id`` is a reaction id
        (flux, mmol/(gDW h) in the network's unit) or ``res_<metabolite>`` (inconsistency).
    """
    flux_ids, res_ids = flux_readout_ids(coupling)
    ev = objective.evaluate(x_free, gradient=False, return_rdatas=True)  # type: ignore[attr-defined]
    w_ids = list(objective.amici_objective.amici_model.get_expression_ids())  # type: ignore[attr-defined]
    cols = [w_ids.index(i) for i in [*flux_ids, *res_ids]]
    names = [*coupling.layer.flux_ids, *[f"res_{m}" for m in coupling.layer.measured_ids]]
    frames = []
    for (_pre, cid), rd in zip(objective.conditions, ev.rdatas):  # type: ignore[attr-defined]
        w = np.asarray(rd.w)[:, cols]
        t = np.asarray(rd.ts)
        frames.append(pd.DataFrame({"conditionId": cid, "time": np.repeat(t, len(names)),
                                    "id": np.tile(names, len(t)), "value": w.ravel()}))
    return pd.concat(frames, ignore_index=True)
