"""Fit the CHO fed-batch problem on its training conditions; predict the held-out feed strategies.

Multi-start fides fit (`--starts`, default 8) of petab_problems/cho_fedbatch/problem.yaml, then
simulation of problem_test.yaml (3 held-out conditions) at the best parameters, compared with
the noise-free trajectories of the true parameters (true_trajectories_test.tsv). Reports RMSE
per observable, also relative to each observable's noise sigma and range, and the parameter
recovery. Writes benchmarks/results/cho_heldout.json and benchmarks/results/cho_heldout.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, write_json  # noqa: E402

from sbmlhybrid.objective import create_objective  # noqa: E402
from sbmlhybrid.optimize import FitSettings, fit  # noqa: E402
from sbmlhybrid.problem import load_problem  # noqa: E402
from sbmlhybrid.results import best_x_free, plot_trajectories  # noqa: E402

CHO = REPO / "petab_problems" / "cho_fedbatch"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train = create_objective(load_problem(CHO / "problem.yaml"))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(train, FitSettings(n_starts=args.starts, seed=args.seed),
                     output=Path(tmp) / "r.hdf5")
    fit_s = time.perf_counter() - t0
    x = best_x_free(result, train)
    test = create_objective(load_problem(CHO / "problem_test.yaml"))
    pred = test.simulate(x)
    truth = pd.read_csv(CHO / "true_trajectories_test.tsv", sep="\t")
    keys = ["observableId", "simulationConditionId", "time"]
    merged = pred.merge(truth, on=keys, suffixes=("", "_true"))
    sigma = test.problem.petab_problem.observable_df["noiseFormula"].astype(float)
    per_obs = {}
    for oid, d in merged.groupby("observableId"):
        rmse = float(np.sqrt(np.mean((d["simulation"] - d["simulation_true"]) ** 2)))
        span = float(d["simulation_true"].max() - d["simulation_true"].min())
        per_obs[oid] = {"rmse": rmse, "rmse_over_sigma": rmse / float(sigma[oid]),
                        "rmse_over_range": rmse / span}
    true_x = train.x_nominal_free
    fig = plot_trajectories(test, x, title="CHO held-out feed strategies: prediction vs data")
    fig.savefig(RESULTS / "cho_heldout.png", dpi=110)
    write_json("cho_heldout.json", {
        "n_starts": args.starts, "fit_s": fit_s,
        "best_fval": float(result.optimize_result.list[0].fval),
        "fval_at_true_parameters": float(train.evaluate(true_x, gradient=False).fval),
        "n_starts_within_0.1_of_best": int(sum(
            r.fval - result.optimize_result.list[0].fval < 0.1
            for r in result.optimize_result.list)),
        "heldout_rmse_per_observable": per_obs,
        "heldout_rmse_over_range_mean": float(np.mean(
            [v["rmse_over_range"] for v in per_obs.values()])),
        "max_abs_log10_parameter_error": float(np.max(np.abs(x - true_x))),
        "parameter_estimates_log10": dict(zip(train.x_free_ids, map(float, x))),
    })


if __name__ == "__main__":
    main()
