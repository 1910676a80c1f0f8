"""Write the linear test problem: dA/dt = a, A(0) = b, observed with known noise.

The likelihood is exactly Gaussian in (a, b) (linear regression of y on [t, 1]), so profile
intervals and the posterior (flat prior within wide bounds) are known in closed form: see
`analytic` and tests/test_analysis.py. Data: true a = 1.3, b = 0.7 at t = 0..9, normal noise
sigma = 0.5 (seed 7). Run: python tests/data/linear/make_problem.py
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tiny"))
from make_tiny import sbml_two_species, write_problem_yaml  # noqa: E402

TRUE = {"a": 1.3, "b": 0.7}
SIGMA = 0.5
TIMES = np.arange(10.0)


def analytic(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(estimate (a, b), covariance) of the linear regression y = a t + b, noise SIGMA."""
    design = np.column_stack([TIMES, np.ones_like(TIMES)])
    cov = SIGMA**2 * np.linalg.inv(design.T @ design)
    return cov @ design.T @ y / SIGMA**2, cov


def main() -> None:
    sbml = sbml_two_species("linear", [("A0", TRUE["b"]), ("a", TRUE["a"])],
                            [("production", None, "A", "a")])
    (HERE / "model.xml").write_text(sbml)
    y = TRUE["a"] * TIMES + TRUE["b"] + np.random.default_rng(7).normal(0, SIGMA, len(TIMES))
    pd.DataFrame({"observableId": "obs_A", "simulationConditionId": "c0", "time": TIMES,
                  "measurement": y}).to_csv(HERE / "measurements.tsv", sep="\t", index=False)
    pd.DataFrame({"conditionId": ["c0"]}).to_csv(HERE / "conditions.tsv", sep="\t",
                                                 index=False)
    pd.DataFrame({"observableId": ["obs_A"], "observableFormula": ["A"],
                  "noiseFormula": [str(SIGMA)]}).to_csv(HERE / "observables.tsv", sep="\t",
                                                         index=False)
    pd.DataFrame({"parameterId": ["a", "A0"], "parameterScale": "lin", "lowerBound": -10.0,
                  "upperBound": 10.0, "nominalValue": [TRUE["a"], TRUE["b"]],
                  "estimate": 1}).to_csv(HERE / "parameters.tsv", sep="\t", index=False)
    write_problem_yaml(HERE)


if __name__ == "__main__":
    main()
