"""Write the mini-batch test problem: 6 experimental conditions, one of which blows up.

Model: production p -> A, A -> B (k1), B -> (k2), autocatalysis u * g * A^2 -> A.
Conditions (condition-table parameters A0, p = kin, u = auto_on):
  c0, c1, c2, c3: plain decays (u = 0) from different A0, c2 with production;
  c4:             production p = 1 from A = 0;
  cboom:          u = 1, A0 = 1: A' = -k1 A + g A^2 explodes in finite time when g > k1,
                  so the integration fails for large g (true g = 0.6 is close to k1 = 0.8).
Estimated (log10): k1, k2, scale, g; `scale` has a parameter-scale normal prior (so the
pyPESTO objective is an AggregatedObjective with priors). Data: the model at TRUE plus 2 %
Gaussian noise (seed 1). No pre-equilibration: petab 0.8.2's timepoint-mapping check
miscounts measurement tables that mix rows with and without pre-equilibration.
Run: python tests/data/minibatch_blowup/make_problem.py
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tiny"))
from make_tiny import sbml_two_species, write_problem_yaml  # noqa: E402

TRUE = {"k1": 0.8, "k2": 0.3, "scale": 2.0, "g": 0.6}
TIMES = [0.5, 1, 2, 3, 5, 8]
CONDITIONS = {  # id: (A0, p, u)
    "c0": (1.0, 0.0, 0.0), "c1": (2.0, 0.0, 0.0), "c2": (0.5, 0.5, 0.0),
    "c3": (1.5, 0.0, 0.0), "c4": (0.0, 1.0, 0.0),
    "cboom": (1.0, 0.0, 1.0),
}
EXPERIMENTS = ["c0", "c1", "c2", "c3", "c4", "cboom"]


def sbml() -> str:
    return sbml_two_species(
        "minibatch_blowup",
        [("k1", 0.5), ("k2", 0.5), ("scale", 1.0), ("g", 0.1), ("A0", 1.0), ("kin", 0.0),
         ("auto_on", 0.0)],
        [("prod", None, "A", "kin"), ("conv", "A", "B", "k1 * A"),
         ("deg", "B", None, "k2 * B"), ("auto", None, "A", "auto_on * g * A^2")])


def rhs(t: float, y: np.ndarray, p: float, u: float) -> list[float]:
    a, b = y
    k1, k2, g = TRUE["k1"], TRUE["k2"], TRUE["g"]
    return [p - k1 * a + u * g * a * a, k1 * a - k2 * b]


def simulate(sim: str) -> np.ndarray:
    a0, p, u = CONDITIONS[sim]
    y0 = np.array([a0, 0.0])
    sol = solve_ivp(rhs, (0, max(TIMES)), y0, t_eval=TIMES, args=(p, u), rtol=1e-11,
                    atol=1e-12, method="LSODA")
    return sol.y


def main() -> None:
    rng = np.random.default_rng(1)
    (HERE / "model.xml").write_text(sbml())
    pd.DataFrame([{"conditionId": k, "A0": v[0], "kin": v[1], "auto_on": v[2]}
                  for k, v in CONDITIONS.items()]).to_csv(HERE / "conditions.tsv", sep="\t",
                                                         index=False)
    pd.DataFrame({"observableId": ["obs_a", "obs_b"], "observableFormula": ["A", "scale * B"],
                  "noiseFormula": [0.05, 0.05], "noiseDistribution": ["normal", "normal"]}
                 ).to_csv(HERE / "observables.tsv", sep="\t", index=False)
    pd.DataFrame({"parameterId": ["k1", "k2", "scale", "g"], "parameterScale": ["log10"] * 4,
                  "lowerBound": [0.01] * 4, "upperBound": [10.0] * 4,
                  "nominalValue": [0.5, 0.5, 1.0, 0.1], "estimate": [1] * 4,
                  "objectivePriorType": ["", "", "parameterScaleNormal", ""],
                  "objectivePriorParameters": ["", "", "0.3;0.5", ""]}
                 ).to_csv(HERE / "parameters.tsv", sep="\t", index=False)
    rows = []
    for sim in EXPERIMENTS:
        a, b = simulate(sim)
        for obs, vals in (("obs_a", a), ("obs_b", TRUE["scale"] * b)):
            for t, v in zip(TIMES, vals):
                rows.append({"observableId": obs, "simulationConditionId": sim, "time": t,
                             "measurement": v * (1 + 0.02 * rng.standard_normal())})
    pd.DataFrame(rows).to_csv(HERE / "measurements.tsv", sep="\t", index=False)
    write_problem_yaml(HERE,
        "sbmlhybrid:\n  solver:\n    rtol: 1.0e-10\n    atol: 1.0e-12\n"
        "    sensitivity_method: forward\n")


if __name__ == "__main__":
    main()
