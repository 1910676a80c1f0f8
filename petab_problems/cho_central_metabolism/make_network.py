"""Generate ``cho_central_metabolism.xml``: a 30-flux CHO central carbon/nitrogen network.

Run from anywhere: ``python petab_problems/cho_central_metabolism/make_network.py``.
The output is committed; rerunning must reproduce it byte for byte.

SBML Level 3 Version 2 with the ``fbc`` package (version 2) for flux bounds.
Species with ``boundaryCondition="true"`` are exchanged (measured) species;
all others are internal and balanced (see README.md).
Units: fluxes in mmol gDW^-1 h^-1; the BIOMASS "species" is gDW (so the
GROWTH flux is the specific growth rate in h^-1) and ANTIBODY is g of mAb
(so the MAB_SYN flux is the specific productivity in g gDW^-1 h^-1).
"""

from __future__ import annotations

from pathlib import Path

import libsbml

HERE = Path(__file__).resolve().parent
OUT = HERE / "cho_central_metabolism.xml"

# id: (name, exchanged?)
SPECIES = {
    "GLC_ext": ("glucose (medium)", True),
    "GLN_ext": ("glutamine (medium)", True),
    "LAC_ext": ("lactate (medium)", True),
    "ALA_ext": ("alanine (medium)", True),
    "NH4_ext": ("ammonia (medium)", True),
    "O2_ext": ("oxygen (gas/medium)", True),
    "CO2_ext": ("carbon dioxide (gas/medium)", True),
    "BIOMASS": ("biomass (gDW)", True),
    "ANTIBODY": ("monoclonal antibody (g)", True),
    "G6P": ("hexose phosphates (G6P + F6P)", False),
    "GAP": ("triose phosphates (GAP + DHAP)", False),
    "Ru5P": ("pentose phosphates", False),
    "PYR": ("pyruvate (+ PEP)", False),
    "LAC": ("lactate (intracellular)", False),
    "AcCoA": ("acetyl-CoA", False),
    "CIT": ("citrate + isocitrate", False),
    "AKG": ("2-oxoglutarate", False),
    "SUC": ("succinyl-CoA + succinate", False),
    "MAL": ("fumarate + malate", False),
    "OAA": ("oxaloacetate", False),
    "ASP": ("aspartate (+ asparagine)", False),
    "GLN": ("glutamine (intracellular)", False),
    "GLU": ("glutamate", False),
    "ALA": ("alanine (intracellular)", False),
    "NH4": ("ammonium (intracellular)", False),
    "CO2": ("carbon dioxide (intracellular)", False),
    "O2": ("oxygen (intracellular)", False),
    "NADH": ("NADH (cytosolic + mitochondrial, lumped)", False),
    "FADH2": ("FADH2", False),
    "NADPH": ("NADPH", False),
    "ATP": ("ATP (high-energy phosphate bonds)", False),
}

# Biomass: mmol per gDW. Illustrative round values of the order reported for
# mammalian/CHO cells (see README); essential amino acids come from the medium
# and are not modelled.
BIOMASS = {"G6P": 0.15, "Ru5P": 0.20, "GAP": 0.25, "AcCoA": 2.0, "ASP": 0.50,
           "GLN": 0.50, "GLU": 0.40, "ALA": 0.50, "NADPH": 4.0, "ATP": 30.0}
# Antibody: mmol per g IgG (~8.8 mmol residues/g; ~4.3 ATP per peptide bond).
ANTIBODY = {"ALA": 0.45, "ASP": 0.70, "GLN": 0.40, "GLU": 0.50, "GAP": 0.90, "ATP": 38.0}

# id: (name, reversible, reactants, products)
REACTIONS = [
    ("HK", "glucose uptake + hexokinase", False, {"GLC_ext": 1, "ATP": 1}, {"G6P": 1}),
    ("PFK", "PGI + PFK + aldolase + TPI (lumped)", False, {"G6P": 1, "ATP": 1}, {"GAP": 2}),
    ("GAPDH", "GAPDH ... pyruvate kinase (lumped)", False, {"GAP": 1}, {"PYR": 1, "NADH": 1,
                                                                       "ATP": 2}),
    ("G6PDH", "oxidative pentose phosphate pathway (lumped)", False, {"G6P": 1},
     {"Ru5P": 1, "CO2": 1, "NADPH": 2}),
    ("TKT", "non-oxidative PPP: 3 Ru5P <-> 2 F6P + GAP", True, {"Ru5P": 3}, {"G6P": 2, "GAP": 1}),
    ("LDH", "lactate dehydrogenase", True, {"PYR": 1, "NADH": 1}, {"LAC": 1}),
    ("PDH", "pyruvate dehydrogenase", False, {"PYR": 1}, {"AcCoA": 1, "CO2": 1, "NADH": 1}),
    ("PC", "pyruvate carboxylase", False, {"PYR": 1, "CO2": 1, "ATP": 1}, {"OAA": 1}),
    ("ME", "malic enzyme (NADP)", False, {"MAL": 1}, {"PYR": 1, "CO2": 1, "NADPH": 1}),
    ("CS", "citrate synthase", False, {"AcCoA": 1, "OAA": 1}, {"CIT": 1}),
    ("IDH", "aconitase + isocitrate dehydrogenase", False, {"CIT": 1},
     {"AKG": 1, "CO2": 1, "NADH": 1}),
    ("AKGDH", "2-oxoglutarate dehydrogenase + succinyl-CoA synthetase", False, {"AKG": 1},
     {"SUC": 1, "CO2": 1, "NADH": 1, "ATP": 1}),
    ("SDH", "succinate dehydrogenase + fumarase", False, {"SUC": 1}, {"MAL": 1, "FADH2": 1}),
    ("MDH", "malate dehydrogenase", True, {"MAL": 1}, {"OAA": 1, "NADH": 1}),
    ("GLNS", "glutaminase", False, {"GLN": 1}, {"GLU": 1, "NH4": 1}),
    ("GS", "glutamine synthetase", False, {"GLU": 1, "NH4": 1, "ATP": 1}, {"GLN": 1}),
    ("GLDH", "glutamate dehydrogenase", True, {"GLU": 1}, {"AKG": 1, "NH4": 1, "NADH": 1}),
    ("ALT", "alanine aminotransferase", True, {"PYR": 1, "GLU": 1}, {"ALA": 1, "AKG": 1}),
    ("AST", "aspartate aminotransferase", True, {"OAA": 1, "GLU": 1}, {"ASP": 1, "AKG": 1}),
    ("OXPHOS", "NADH oxidation, P/O 2.5", False, {"NADH": 1, "O2": 0.5}, {"ATP": 2.5}),
    ("OXPHOS_FAD", "FADH2 oxidation, P/O 1.5", False, {"FADH2": 1, "O2": 0.5}, {"ATP": 1.5}),
    ("ATPM", "ATP maintenance (hydrolysis)", False, {"ATP": 1}, {}),
    ("EX_GLN", "glutamine transport", True, {"GLN_ext": 1}, {"GLN": 1}),
    ("EX_LAC", "lactate transport (secretion > 0)", True, {"LAC": 1}, {"LAC_ext": 1}),
    ("EX_ALA", "alanine transport (secretion > 0)", True, {"ALA": 1}, {"ALA_ext": 1}),
    ("EX_NH4", "ammonia transport (secretion > 0)", True, {"NH4": 1}, {"NH4_ext": 1}),
    ("EX_O2", "oxygen uptake", False, {"O2_ext": 1}, {"O2": 1}),
    ("EX_CO2", "carbon dioxide release", False, {"CO2": 1}, {"CO2_ext": 1}),
    ("GROWTH", "biomass synthesis (1 gDW)", False, BIOMASS, {"BIOMASS": 1}),
    ("MAB_SYN", "antibody synthesis (1 g IgG)", False, ANTIBODY, {"ANTIBODY": 1}),
]


def _check(code: int) -> None:
    if code != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise RuntimeError(libsbml.OperationReturnValue_toString(code))


def build() -> libsbml.SBMLDocument:
    ns = libsbml.SBMLNamespaces(3, 2, "fbc", 2)
    doc = libsbml.SBMLDocument(ns)
    _check(doc.setPackageRequired("fbc", False))
    model = doc.createModel()
    _check(model.setId("cho_central_metabolism"))
    model.setName("CHO central carbon and nitrogen metabolism (30 fluxes, lumped)")
    _check(model.getPlugin("fbc").setStrict(True))
    comp = model.createCompartment()
    _check(comp.setId("cell"))
    comp.setConstant(True)
    comp.setSize(1.0)
    comp.setSpatialDimensions(3)
    for sid, (name, exchanged) in SPECIES.items():
        sp = model.createSpecies()
        _check(sp.setId(sid))
        sp.setName(name)
        sp.setCompartment("cell")
        sp.setHasOnlySubstanceUnits(True)
        sp.setBoundaryCondition(exchanged)
        sp.setConstant(False)
        sp.setInitialAmount(0.0)
    for pid, value in (("FB_zero", 0.0), ("FB_minus_inf", -float("inf")),
                       ("FB_plus_inf", float("inf"))):
        par = model.createParameter()
        _check(par.setId(pid))
        par.setValue(value)
        par.setConstant(True)
        par.setSBOTerm(626)  # default flux bound
    for rid, name, reversible, reactants, products in REACTIONS:
        rxn = model.createReaction()
        _check(rxn.setId(rid))
        rxn.setName(name)
        rxn.setReversible(reversible)
        for sid, coef in reactants.items():
            ref = rxn.createReactant()
            ref.setSpecies(sid)
            ref.setStoichiometry(float(coef))
            ref.setConstant(True)
        for sid, coef in products.items():
            ref = rxn.createProduct()
            ref.setSpecies(sid)
            ref.setStoichiometry(float(coef))
            ref.setConstant(True)
        fbc = rxn.getPlugin("fbc")
        _check(fbc.setLowerFluxBound("FB_minus_inf" if reversible else "FB_zero"))
        _check(fbc.setUpperFluxBound("FB_plus_inf"))
    return doc


def main() -> None:
    doc = build()
    doc.checkInternalConsistency()
    doc.checkConsistency()
    errors = [doc.getError(i) for i in range(doc.getNumErrors())
              if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    if errors:
        raise RuntimeError("\n".join(e.getMessage() for e in errors))
    libsbml.writeSBMLToFile(doc, str(OUT))
    print(f"wrote {OUT} ({len(SPECIES)} species, {len(REACTIONS)} reactions)")


if __name__ == "__main__":
    main()
