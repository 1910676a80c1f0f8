"""Read a reaction network from SBML for `FluxAllocation.from_sbml`.

Conventions:

* Every reaction is one flux; its stoichiometric coefficients are the
  ``stoichiometry`` attributes of its reactants (negative) and products
  (positive). Modifiers and kinetic laws are ignored.
* A species with ``boundaryCondition="true"`` is *exchanged*: it is not
  balanced, and by default its net production rate is *measured* (a column of
  ``r``). A species without it is *internal*: balanced, ``S_int v = 0``.
  ``from_sbml(measured=..., internal=...)`` overrides both lists; a boundary
  species in neither list is a free (unmeasured) exchange.
* Flux bounds come from the SBML ``fbc`` package (version 2,
  ``fbc:lowerFluxBound``/``fbc:upperFluxBound`` naming constant parameters;
  ``INF``/``-INF`` allowed). Without ``fbc`` bounds a reaction with
  ``reversible="false"`` gets ``[0, inf)`` and a reversible one ``(-inf, inf)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sbmlhybrid.errors import InputError, Issue


@dataclass(frozen=True)
class SbmlNetwork:
    """Stoichiometry and bounds read from SBML.

    Attributes:
        S: (n_species, n_reactions) stoichiometric matrix.
        species_ids, reaction_ids: SBML ids, in document order.
        boundary: (n_species,) ``boundaryCondition`` flags.
        lb, ub: (n_reactions,) flux bounds (model flux units).
    """

    S: np.ndarray
    species_ids: list[str]
    reaction_ids: list[str]
    boundary: list[bool]
    lb: np.ndarray
    ub: np.ndarray


def read_network(path: str | Path) -> SbmlNetwork:
    """Parse ``path``; raises `InputError` listing every problem found."""
    import libsbml

    path = str(path)
    if not Path(path).is_file():
        raise InputError(Issue("SBML file not found", file=path))
    doc = libsbml.readSBMLFromFile(path)
    issues = []
    for i in range(doc.getNumErrors()):
        err = doc.getError(i)
        if err.getSeverity() >= libsbml.LIBSBML_SEV_ERROR:
            issues.append(Issue(err.getMessage().strip(), file=path, row=err.getLine(),
                                column=err.getColumn()))
    model = doc.getModel()
    if model is None and not issues:
        issues.append(Issue("document has no model", file=path))
    if issues:
        raise InputError(issues, header="Invalid SBML")
    species = [model.getSpecies(i) for i in range(model.getNumSpecies())]
    sp_ids = [s.getId() for s in species]
    index = {s: i for i, s in enumerate(sp_ids)}
    reactions = [model.getReaction(j) for j in range(model.getNumReactions())]
    rx_ids = [r.getId() for r in reactions]
    S = np.zeros((len(sp_ids), len(rx_ids)))
    lb = np.full(len(rx_ids), -np.inf)
    ub = np.full(len(rx_ids), np.inf)
    for j, rxn in enumerate(reactions):
        for sign, refs in ((-1.0, rxn.getListOfReactants()), (1.0, rxn.getListOfProducts())):
            for ref in refs:
                coef = ref.getStoichiometry()
                if not np.isfinite(coef) or (hasattr(ref, "isSetStoichiometryMath")
                                             and ref.isSetStoichiometryMath()):
                    issues.append(Issue(f"reaction {rxn.getId()!r}: species {ref.getSpecies()!r}"
                                        " has no constant numeric stoichiometry", file=path,
                                        row=ref.getLine(), entity=rxn.getId()))
                    continue
                S[index[ref.getSpecies()], j] += sign * coef
        fbc = rxn.getPlugin("fbc")
        if not rxn.getReversible():
            lb[j] = 0.0
        for attr, target in (("LowerFluxBound", lb), ("UpperFluxBound", ub)):
            if fbc is not None and getattr(fbc, f"isSet{attr}")():
                pid = getattr(fbc, f"get{attr}")()
                par = model.getParameter(pid)
                if par is None or not par.isSetValue():
                    issues.append(Issue(f"reaction {rxn.getId()!r}: flux bound parameter "
                                        f"{pid!r} is missing or has no value", file=path,
                                        row=rxn.getLine(), entity=rxn.getId()))
                    continue
                target[j] = par.getValue()
    if issues:
        raise InputError(issues, header="Unsupported SBML reaction network")
    return SbmlNetwork(S, sp_ids, rx_ids, [bool(s.getBoundaryCondition()) for s in species],
                       lb, ub)
