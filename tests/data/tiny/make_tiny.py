"""Write the tiny test problem: A -> B -> (degraded), two conditions, 3 estimated parameters.

Data are exact simulations of the analytic solution at k1=0.8, k2=0.3, scale=2 (no noise),
so fits must recover those values. Run: python tests/data/tiny/make_tiny.py
"""

from pathlib import Path

import libsbml
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
TRUE = {"k1": 0.8, "k2": 0.3, "scale": 2.0}
TIMES = [0.5, 1, 2, 3, 5, 8]


PROBLEM_YAML = ("format_version: 1\nparameter_file: parameters.tsv\nproblems:\n"
                "- sbml_files: [model.xml]\n  condition_files: [conditions.tsv]\n"
                "  measurement_files: [measurements.tsv]\n  observable_files: [observables.tsv]\n")


def write_problem_yaml(folder: Path, extra: str = "") -> None:
    """problem.yaml over the standard table file names of the test problems (+ `extra`)."""
    (folder / "problem.yaml").write_text(PROBLEM_YAML + extra)


def sbml_two_species(model_id: str, parameters: list[tuple[str, float]],
                     reactions: list[tuple[str, str | None, str | None, str]]) -> str:
    """SBML of species A, B in one compartment, A(0) = A0, mass-action-style reactions.

    Args:
        model_id: SBML model id.
        parameters: (id, value) of constant parameters (must include A0).
        reactions: (id, reactant or None, product or None, rate law).
    """
    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId(model_id)
    c = m.createCompartment()
    c.setId("cell"), c.setSize(1.0), c.setConstant(True)
    for sid in ("A", "B"):
        s = m.createSpecies()
        s.setId(sid), s.setCompartment("cell"), s.setInitialConcentration(0.0)
        s.setHasOnlySubstanceUnits(False), s.setBoundaryCondition(False), s.setConstant(False)
    for pid, v in parameters:
        p = m.createParameter()
        p.setId(pid), p.setValue(v), p.setConstant(True)
    ia = m.createInitialAssignment()
    ia.setSymbol("A"), ia.setMath(libsbml.parseL3Formula("A0"))
    for rid, sub, prod, law in reactions:
        r = m.createReaction()
        r.setId(rid), r.setReversible(False)
        if sub:
            sr = r.createReactant()
            sr.setSpecies(sub), sr.setStoichiometry(1), sr.setConstant(True)
        if prod:
            pr = r.createProduct()
            pr.setSpecies(prod), pr.setStoichiometry(1), pr.setConstant(True)
        r.createKineticLaw().setMath(libsbml.parseL3Formula(law))
    return libsbml.writeSBMLToString(doc)


def sbml() -> str:
    return sbml_two_species(
        "tiny", [("k1", 0.5), ("k2", 0.5), ("scale", 1.0), ("A0", 1.0)],
        [("conv", "A", "B", "k1 * A"), ("deg", "B", None, "k2 * B")])


def exact(a0: float, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k1, k2 = TRUE["k1"], TRUE["k2"]
    a = a0 * np.exp(-k1 * t)
    b = a0 * k1 / (k2 - k1) * (np.exp(-k1 * t) - np.exp(-k2 * t))
    return a, b


def main() -> None:
    (HERE / "model.xml").write_text(sbml())
    pd.DataFrame({"conditionId": ["c0", "c1"], "A0": [1.0, 2.0]}).to_csv(
        HERE / "conditions.tsv", sep="\t", index=False)
    pd.DataFrame({"observableId": ["obs_a", "obs_b"], "observableFormula": ["A", "scale * B"],
                  "noiseFormula": [0.05, 0.05], "noiseDistribution": ["normal", "normal"]}
                 ).to_csv(HERE / "observables.tsv", sep="\t", index=False)
    pd.DataFrame({"parameterId": ["k1", "k2", "scale"], "parameterScale": ["log10"] * 3,
                  "lowerBound": [0.01] * 3, "upperBound": [10.0] * 3,
                  "nominalValue": [0.5, 0.5, 1.0], "estimate": [1, 1, 1]}
                 ).to_csv(HERE / "parameters.tsv", sep="\t", index=False)
    rows = []
    for cid, a0 in (("c0", 1.0), ("c1", 2.0)):
        t = np.array(TIMES, dtype=float)
        a, b = exact(a0, t)
        rows += [{"observableId": "obs_a", "simulationConditionId": cid, "time": ti,
                  "measurement": v} for ti, v in zip(t, a)]
        rows += [{"observableId": "obs_b", "simulationConditionId": cid, "time": ti,
                  "measurement": TRUE["scale"] * v} for ti, v in zip(t, b)]
    pd.DataFrame(rows).to_csv(HERE / "measurements.tsv", sep="\t", index=False)
    write_problem_yaml(HERE)


if __name__ == "__main__":
    main()
