"""Generate the flux-coupling test problem: substrate uptake -> product + biomass.

Kinetics (rate rules on concentrations, all states per litre):
    q_s = vmax * S / (K_s + S)      substrate uptake per biomass (mmol/g/h)
    q_p = Y_p * q_s                 product secretion
    mu  = Y_x * q_s                 growth (1/h)
    dS/dt = -q_s X,  dP/dt = q_p X,  dX/dt = mu X
The stoichiometric network of the tests (S_ext -> A, A -> P_ext, A -> BIOMASS) only admits
q_s = q_p + mu, while the true yields give Y_p + Y_x = 1.1: the kinetics are inconsistent,
so the flux layer changes the rates. Data: the *uncoupled* model at the true parameters with
5 % noise, two conditions (S0 = 10, 20 mM). Run: ``python make_problem.py`` (deterministic).
"""

import sys
from pathlib import Path

import libsbml
import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tiny"))
from make_tiny import write_problem_yaml  # noqa: E402

TRUE = {"vmax": 1.0, "K_s": 2.0, "Y_p": 0.6, "Y_x": 0.5}
CONDITIONS = {"low": 10.0, "high": 20.0}


def build() -> str:
    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId("flux_toy")
    c = m.createCompartment()
    c.setId("c")
    c.setSize(1.0)
    c.setConstant(True)

    def par(pid: str, value: float, constant: bool = True) -> None:
        p = m.createParameter()
        p.setId(pid)
        p.setValue(value)
        p.setConstant(constant)

    for k, v in TRUE.items():
        par(k, v)
    par("S0", 10.0)
    par("X0", 0.1)
    for sid, init in (("S", "S0"), ("P", "0"), ("X", "X0")):
        par(sid, 0.0, constant=False)
        ia = m.createInitialAssignment()
        ia.setSymbol(sid)
        ia.setMath(libsbml.parseL3Formula(init))
    for var, f in (("q_s", "vmax * S / (K_s + S)"), ("q_p", "Y_p * q_s"), ("mu", "Y_x * q_s")):
        par(var, 0.0, constant=False)
        r = m.createAssignmentRule()
        r.setVariable(var)
        r.setMath(libsbml.parseL3Formula(f))
    for var, f in (("S", "-q_s * X"), ("P", "q_p * X"), ("X", "mu * X")):
        r = m.createRateRule()
        r.setVariable(var)
        r.setMath(libsbml.parseL3Formula(f))
    return libsbml.writeSBMLToString(doc)


def rhs(_t: float, y: np.ndarray) -> list[float]:
    s, _p, x = y
    q = TRUE["vmax"] * s / (TRUE["K_s"] + s)
    return [-q * x, TRUE["Y_p"] * q * x, TRUE["Y_x"] * q * x]


def main() -> None:
    (HERE / "model.xml").write_text(build())
    rng = np.random.default_rng(7)
    times = np.arange(0.0, 11.0, 1.0)
    rows = []
    for cid, s0 in CONDITIONS.items():
        sol = solve_ivp(rhs, (0, 10), [s0, 0.0, 0.1], t_eval=times, rtol=1e-10, atol=1e-12)
        for k, oid in enumerate(("obs_S", "obs_P", "obs_X")):
            for t, y in zip(times, sol.y[k]):
                rows.append((oid, cid, t, y * (1 + 0.05 * rng.standard_normal())))
    pd.DataFrame(rows, columns=["observableId", "simulationConditionId", "time",
                                "measurement"]).to_csv(HERE / "measurements.tsv", sep="\t",
                                                       index=False, float_format="%.6g")
    pd.DataFrame({"conditionId": list(CONDITIONS), "S0": list(CONDITIONS.values())}).to_csv(
        HERE / "conditions.tsv", sep="\t", index=False)
    pd.DataFrame({"observableId": ["obs_S", "obs_P", "obs_X"],
                  "observableFormula": ["S", "P", "X"],
                  "noiseFormula": ["0.5", "0.3", "0.05"]}).to_csv(
        HERE / "observables.tsv", sep="\t", index=False)
    pd.DataFrame({"parameterId": list(TRUE), "parameterScale": "log10", "lowerBound": 0.01,
                  "upperBound": 100.0, "nominalValue": list(TRUE.values()), "estimate": 1}
                 ).to_csv(HERE / "parameters.tsv", sep="\t", index=False)
    write_problem_yaml(HERE)


if __name__ == "__main__":
    main()
