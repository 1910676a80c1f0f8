"""Generate the CHO fed-batch PEtab problem: SBML model, tables and noisy synthetic data.

Run from the repository root: ``python petab_problems/cho_fedbatch/make_problem.py``.
Data are simulated with sbmlhybrid itself (AMICI, rtol 1e-10) at the true parameters in
`model.KINETIC_PARAMETERS`, then normal noise with the observables' sigmas is added
(seed `SEED`) and ~8 % of the samples after day 0 are dropped (missed samplings).
Training conditions go to ``measurements_train.tsv`` (problem.yaml), held-out feed strategies
to ``measurements_test.tsv`` (problem_test.yaml, same model).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from model import CONDITION_PARAMETERS, KINETIC_PARAMETERS, build_sbml  # noqa: E402

SEED = 20261122
DAYS = np.arange(0.0, 15.0)  # daily samples, 14-day cultures
DROP_FRACTION = 0.08

# observable id, state, noise sigma (units of the state)
OBSERVABLES = [
    ("obs_Xv", "Xv", 0.4), ("obs_Xd", "Xd", 0.3), ("obs_Glc", "Glc", 1.0),
    ("obs_Gln", "Gln", 0.2), ("obs_Lac", "Lac", 1.0), ("obs_Amm", "Amm", 0.25),
    ("obs_mAb", "mAb", 40.0),
]

# condition id, name, split, then values of CONDITION_PARAMETERS in order:
# Xv0 [1e9 cells/L], Glc0 [mM], Gln0 [mM], feed_rate [1/d of V0], feed_start [d],
# Glc_feed [mM], Gln_feed [mM]
CONDITIONS = [
    ("batch", "batch culture, no feed", "train", 0.3, 35, 6, 0.0, 3, 200, 20),
    ("fed_standard", "standard feed from day 3", "train", 0.3, 35, 6, 0.02, 3, 200, 20),
    ("fed_high", "high feed rate", "train", 0.3, 35, 6, 0.035, 3, 200, 20),
    ("fed_early", "feed from day 1.5", "train", 0.3, 35, 6, 0.02, 1.5, 200, 20),
    ("fed_late", "feed from day 5", "train", 0.3, 35, 6, 0.025, 5, 200, 20),
    ("rich_medium", "rich initial medium", "train", 0.3, 50, 8, 0.015, 3, 200, 20),
    ("lean_medium", "lean medium, concentrated feed", "train", 0.3, 25, 4, 0.02, 2, 300, 30),
    ("high_seed", "doubled inoculum", "train", 0.6, 35, 6, 0.02, 3, 200, 20),
    ("concentrated_feed", "low-volume concentrated feed", "test", 0.3, 35, 6, 0.012, 3, 400, 40),
    ("glutamine_feed", "glutamine-rich feed", "test", 0.4, 30, 6, 0.025, 3, 150, 40),
    ("late_high_feed", "late, high feed", "test", 0.3, 40, 6, 0.04, 4, 200, 20),
]


def write_tables() -> None:
    (HERE / "model.xml").write_text(build_sbml())
    pd.DataFrame(
        [{"observableId": oid, "observableName": state, "observableFormula": state,
          "observableTransformation": "lin", "noiseFormula": sigma,
          "noiseDistribution": "normal"} for oid, state, sigma in OBSERVABLES]
    ).to_csv(HERE / "observables.tsv", sep="\t", index=False)
    rows = []
    for cid, name, _split, *values in CONDITIONS:
        rows.append({"conditionId": cid, "conditionName": name,
                     **{p[0]: v for p, v in zip(CONDITION_PARAMETERS, values)}})
    pd.DataFrame(rows).to_csv(HERE / "conditions.tsv", sep="\t", index=False)
    par = [{"parameterId": pid, "parameterName": desc, "parameterScale": "log10",
            "lowerBound": lb, "upperBound": ub, "nominalValue": value, "estimate": 1}
           for pid, value, _unit, lb, ub, desc in KINETIC_PARAMETERS]
    par.append({"parameterId": "V0", "parameterName": "initial culture volume",
                "parameterScale": "lin", "lowerBound": 1.0, "upperBound": 1.0,
                "nominalValue": 1.0, "estimate": 0})
    pd.DataFrame(par).to_csv(HERE / "parameters.tsv", sep="\t", index=False)
    for split in ("train", "test"):
        ids = [c[0] for c in CONDITIONS if c[2] == split]
        template = pd.DataFrame(
            [{"observableId": oid, "simulationConditionId": cid, "time": t, "measurement": 0.0}
             for cid in ids for t in DAYS for oid, _s, _sig in OBSERVABLES])
        template.to_csv(HERE / f"measurements_{split}.tsv", sep="\t", index=False)
        config = {
            "format_version": 1,
            "parameter_file": "parameters.tsv",
            "problems": [{"sbml_files": ["model.xml"], "condition_files": ["conditions.tsv"],
                          "measurement_files": [f"measurements_{split}.tsv"],
                          "observable_files": ["observables.tsv"]}],
            "sbmlhybrid": {"solver": {"rtol": 1e-8, "atol": 1e-10,
                                      "sensitivity_method": "forward"}},
        }
        name = "problem.yaml" if split == "train" else "problem_test.yaml"
        (HERE / name).write_text(yaml.safe_dump(config, sort_keys=False))


def simulate_data() -> None:
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import load_problem

    rng = np.random.default_rng(SEED)
    sigma = {oid: s for oid, _state, s in OBSERVABLES}
    for split, name in (("train", "problem.yaml"), ("test", "problem_test.yaml")):
        problem = load_problem(HERE / name)
        problem.solver.rtol, problem.solver.atol = 1e-10, 1e-12
        sim = create_objective(problem).simulate()
        noise = rng.normal(size=len(sim)) * sim["observableId"].map(sigma).to_numpy()
        sim["measurement"] = np.round(sim["simulation"] + noise, 4)
        drop = (sim["time"] > 0) & (rng.random(len(sim)) < DROP_FRACTION)
        out = sim.loc[~drop, ["observableId", "simulationConditionId", "time", "measurement"]]
        out.to_csv(HERE / f"measurements_{split}.tsv", sep="\t", index=False)
        truth = sim[["observableId", "simulationConditionId", "time", "simulation"]]
        truth.to_csv(HERE / f"true_trajectories_{split}.tsv", sep="\t", index=False)
        print(f"{split}: {len(out)} measurements ({int(drop.sum())} dropped)")


if __name__ == "__main__":
    write_tables()
    simulate_data()
