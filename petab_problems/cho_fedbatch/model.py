"""CHO fed-batch bioreactor model: the SBML definition and its documented true parameters.

Kinetics follow the unstructured Monod-type CHO models of Xing et al. (Biotechnol. Bioeng. 105,
2010, "Modeling kinetics of a large-scale fed-batch CHO cell culture by Markov chain Monte Carlo
method") and Kontoravdi et al. (Biotechnol. Prog. 21, 2005): growth limited by glucose and
glutamine and inhibited by lactate and ammonia, ammonia-driven death, yield + maintenance
uptake, lactate production from glucose and lactate consumption once glucose runs low
(the "lactate shift"), and growth-associated plus constant antibody productivity.

Units: time in days (d), concentrations in mmol/L (mM), cells in 1e9 cells/L (= 1e6 cells/mL),
antibody in mg/L, volume in L. Feeding is a smooth feed-rate function of time,
F(t) = feed_rate * V0 * sigmoid(8 (t - feed_start)) [L/d], so the right-hand side has no
discontinuity (no events: adjoint sensitivities stay exact).
"""

from __future__ import annotations

import libsbml

# (id, true value, unit id, lower bound, upper bound, description); all estimated on log10 scale.
KINETIC_PARAMETERS: list[tuple[str, float, str, float, float, str]] = [
    ("mu_max", 1.0, "per_day", 0.1, 5.0, "maximum specific growth rate"),
    ("K_glc", 1.0, "mM", 0.01, 20.0, "Monod constant for glucose"),
    ("K_gln", 0.3, "mM", 0.01, 10.0, "Monod constant for glutamine"),
    ("KI_lac", 30.0, "mM", 1.0, 1000.0, "lactate inhibition constant"),
    ("KI_amm", 5.0, "mM", 0.1, 100.0, "ammonia inhibition constant"),
    ("kd0", 0.03, "per_day", 1e-4, 1.0, "basal specific death rate"),
    ("kd_amm", 0.6, "per_day", 1e-3, 5.0, "maximum ammonia-induced death rate"),
    ("KD_amm", 6.0, "mM", 0.1, 100.0, "ammonia level of half-maximal death"),
    ("Y_x_glc", 1.5, "Gcell_per_mmol", 0.1, 100.0, "cell yield on glucose"),
    ("m_glc", 0.05, "mmol_per_Gcell_day", 1e-4, 1.0, "glucose maintenance uptake"),
    ("Y_x_gln", 6.0, "Gcell_per_mmol", 1.0, 500.0, "cell yield on glutamine"),
    ("Y_lac_glc", 1.2, "dimensionless", 0.1, 5.0, "lactate produced per glucose taken up"),
    ("q_lac_upt", 0.3, "mmol_per_Gcell_day", 1e-3, 5.0, "maximum specific lactate uptake"),
    ("K_sw", 2.0, "mM", 0.01, 50.0, "glucose level below which lactate is consumed"),
    ("Y_amm_gln", 0.9, "dimensionless", 0.05, 2.0, "ammonia released per glutamine"),
    ("alpha_mab", 5.0, "mg_per_Gcell", 0.01, 100.0, "growth-associated antibody yield"),
    ("beta_mab", 12.0, "mg_per_Gcell_day", 0.1, 200.0, "non-growth-associated productivity"),
]

# Per-condition inputs (PEtab condition table columns): id, default, unit, description.
CONDITION_PARAMETERS: list[tuple[str, float, str, str]] = [
    ("Xv0", 0.3, "Gcell_per_L", "inoculum viable cell density"),
    ("Glc0", 35.0, "mM", "glucose in the initial medium"),
    ("Gln0", 6.0, "mM", "glutamine in the initial medium"),
    ("feed_rate", 0.02, "per_day", "feed volume per day relative to V0"),
    ("feed_start", 3.0, "day", "day the feed starts"),
    ("Glc_feed", 200.0, "mM", "glucose in the feed"),
    ("Gln_feed", 20.0, "mM", "glutamine in the feed"),
]

# state id, initial value or parameter, unit, name
STATES: list[tuple[str, str, str, str]] = [
    ("Xv", "Xv0", "Gcell_per_L", "viable cell density"),
    ("Xd", "0", "Gcell_per_L", "dead cell density"),
    ("Glc", "Glc0", "mM", "glucose"),
    ("Gln", "Gln0", "mM", "glutamine"),
    ("Lac", "0.5", "mM", "lactate"),
    ("Amm", "0.3", "mM", "ammonia"),
    ("mAb", "0", "mg_per_L", "antibody titer"),
    ("V", "V0", "litre", "culture volume"),
]

# Intermediate rates (assignment rules), in dependency order.
RATES: list[tuple[str, str, str]] = [
    ("F", "feed_rate * V0 / (1 + exp(-8 * (time - feed_start)))", "litre_per_day"),
    ("D", "F / V", "per_day"),
    (
        "mu",
        "mu_max * Glc / (K_glc + Glc) * Gln / (K_gln + Gln)"
        " * KI_lac / (KI_lac + Lac) * KI_amm / (KI_amm + Amm)",
        "per_day",
    ),
    ("mu_d", "kd0 + kd_amm * Amm / (KD_amm + Amm)", "per_day"),
    ("q_glc", "mu / Y_x_glc + m_glc * Glc / (K_glc + Glc)", "mmol_per_Gcell_day"),
    ("q_gln", "mu / Y_x_gln", "mmol_per_Gcell_day"),
    ("r_lac_shift", "q_lac_upt * Lac / (1 + Lac) * K_sw / (K_sw + Glc)", "mmol_per_Gcell_day"),
    ("q_lac", "Y_lac_glc * q_glc - r_lac_shift", "mmol_per_Gcell_day"),
    ("q_amm", "Y_amm_gln * q_gln", "mmol_per_Gcell_day"),
    ("q_mab", "alpha_mab * mu + beta_mab", "mg_per_Gcell_day"),
]

# Mass balances with dilution by the feed (rate rules).
BALANCES: dict[str, str] = {
    "Xv": "(mu - mu_d) * Xv - D * Xv",
    "Xd": "mu_d * Xv - D * Xd",
    "Glc": "-q_glc * Xv + D * (Glc_feed - Glc)",
    "Gln": "-q_gln * Xv + D * (Gln_feed - Gln)",
    "Lac": "q_lac * Xv - D * Lac",
    "Amm": "q_amm * Xv - D * Amm",
    "mAb": "q_mab * Xv - D * mAb",
    "V": "F",
}

# unit id -> list of (kind, exponent, scale, multiplier)
UNITS: dict[str, list[tuple[int, float, int, float]]] = {
    "day": [(libsbml.UNIT_KIND_SECOND, 1, 0, 86400.0)],
    "per_day": [(libsbml.UNIT_KIND_SECOND, -1, 0, 86400.0)],
    "mM": [(libsbml.UNIT_KIND_MOLE, 1, -3, 1.0), (libsbml.UNIT_KIND_LITRE, -1, 0, 1.0)],
    "Gcell_per_L": [(libsbml.UNIT_KIND_ITEM, 1, 9, 1.0), (libsbml.UNIT_KIND_LITRE, -1, 0, 1.0)],
    "Gcell_per_mmol": [(libsbml.UNIT_KIND_ITEM, 1, 9, 1.0), (libsbml.UNIT_KIND_MOLE, -1, -3, 1.0)],
    "mmol_per_Gcell_day": [
        (libsbml.UNIT_KIND_MOLE, 1, -3, 1.0),
        (libsbml.UNIT_KIND_ITEM, -1, 9, 1.0),
        (libsbml.UNIT_KIND_SECOND, -1, 0, 86400.0),
    ],
    "mg_per_L": [(libsbml.UNIT_KIND_GRAM, 1, -3, 1.0), (libsbml.UNIT_KIND_LITRE, -1, 0, 1.0)],
    "mg_per_Gcell": [(libsbml.UNIT_KIND_GRAM, 1, -3, 1.0), (libsbml.UNIT_KIND_ITEM, -1, 9, 1.0)],
    "mg_per_Gcell_day": [
        (libsbml.UNIT_KIND_GRAM, 1, -3, 1.0),
        (libsbml.UNIT_KIND_ITEM, -1, 9, 1.0),
        (libsbml.UNIT_KIND_SECOND, -1, 0, 86400.0),
    ],
    "litre_per_day": [
        (libsbml.UNIT_KIND_LITRE, 1, 0, 1.0), (libsbml.UNIT_KIND_SECOND, -1, 0, 86400.0)
    ],
}


def _check(code: int, what: str) -> None:
    if code != libsbml.LIBSBML_OPERATION_SUCCESS:
        reason = libsbml.OperationReturnValue_toString(code)
        raise RuntimeError(f"libsbml failed to {what}: {reason}")


def build_sbml() -> str:
    """Return the CHO fed-batch model as an SBML L3V2 string."""
    doc = libsbml.SBMLDocument(3, 2)
    model = doc.createModel()
    model.setId("cho_fedbatch")
    model.setName("CHO fed-batch bioreactor (Monod kinetics, lactate shift, smooth feed)")
    model.setTimeUnits("day")
    model.setVolumeUnits("litre")
    model.setSubstanceUnits("mole")
    for uid, parts in UNITS.items():
        ud = model.createUnitDefinition()
        ud.setId(uid)
        for kind, exponent, scale, multiplier in parts:
            unit = ud.createUnit()
            unit.setKind(kind)
            unit.setExponent(exponent)
            unit.setScale(scale)
            unit.setMultiplier(multiplier)
    comp = model.createCompartment()
    comp.setId("reactor")
    comp.setSize(1.0)
    comp.setConstant(True)
    comp.setUnits("litre")
    comp.setSpatialDimensions(3)

    def parameter(pid: str, value: float, unit: str, constant: bool = True, name: str = "") -> None:
        p = model.createParameter()
        p.setId(pid)
        p.setValue(value)
        p.setUnits(unit)
        p.setConstant(constant)
        if name:
            p.setName(name)

    for pid, value, unit, _lb, _ub, desc in KINETIC_PARAMETERS:
        parameter(pid, value, unit, name=desc)
    for pid, value, unit, desc in CONDITION_PARAMETERS:
        parameter(pid, value, unit, name=desc)
    parameter("V0", 1.0, "litre", name="initial culture volume")
    # States are non-constant parameters driven by rate rules: the balances are written per
    # volume of culture (concentrations), with dilution terms, as bioprocess models usually are.
    for sid, init, unit, name in STATES:
        parameter(sid, 0.0, unit, constant=False, name=name)
        ia = model.createInitialAssignment()
        ia.setSymbol(sid)
        _check(ia.setMath(libsbml.parseL3Formula(init)), f"set initial value of {sid}")
    for rid, formula, unit in RATES:
        parameter(rid, 0.0, unit, constant=False)
        rule = model.createAssignmentRule()
        rule.setVariable(rid)
        _check(rule.setMath(libsbml.parseL3Formula(formula)), f"set rule {rid}")
    for sid, formula in BALANCES.items():
        rule = model.createRateRule()
        rule.setVariable(sid)
        _check(rule.setMath(libsbml.parseL3Formula(formula)), f"set balance of {sid}")
    if doc.checkInternalConsistency():
        raise RuntimeError(doc.getErrorLog().toString())
    return libsbml.writeSBMLToString(doc)
