"""Mechanistic-prior transfer learning on the binding-chain example: learning curves.

Steps (petab_problems/binding_chain, see its README for the ground truth):
1. fit the kinetic model to the in vitro PEtab problem (4 fides starts, seed 0);
2. for every seed and in vivo training size (nested random subsets of the 300-sample pool),
   train and evaluate on the 200 held-out in vivo samples:
   (a) ``mech``: the in vitro fit, no correction (independent of seed and size);
   (b) ``nn``: MLP 6-32-32-1 (sigmoid) on the same 6 features, Adam 1000 steps, wd 1e-3;
   (c) ``transfer``: encoder 6-16-7 (last layer zero) -> Delta on the 7 log-rates ->
       frozen mechanistic layer -> P(25 min); Adam 100 steps lr 0.03, L2(Delta) 1e-2;
   (d) ``unfrozen``: (c) then 40 more steps (lr 0.01) with the 10 mechanistic parameters
       trainable, L2 pull 0.1 towards the in vitro fit.
Features (all learned models): accessibility, expression, competition, mismatch counts
seed/middle/distal, z-scored with the training subset's statistics.

RMSE is against the noisy held-out outcomes (noise sigma 0.03 -> floor ~0.03); ``*_vs_truth``
against the noise-free outcome. Fields ``rmse_mech``, ``rmse_nn``, ``rmse_transfer``,
``rmse_unfrozen``: mean over seeds at the smallest size. Environment: ``BENCH_SEEDS`` (10),
``BENCH_SIZES`` ("8,16,32,64"). Run from the repository root:
``nice -n 10 .venv/bin/python benchmarks/mechanistic_transfer.py``
-> benchmarks/results/mechanistic_transfer.json (rewritten after every seed).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import write_json

from sbmlhybrid.problem import SolverSettings
from sbmlhybrid.transfer import (
    MechanisticTransferModel,
    fit_mechanistic,
    load_outcomes,
    mechanistic_layer,
    train,
    train_network,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "petab_problems" / "binding_chain"
OUT = REPO / "benchmarks" / "results" / "mechanistic_transfer.json"
RATES = ["lk_on", "lk_off", "lk_f1", "lk_r1", "lk_f2", "lk_r2", "lk_cat"]
FEATURES = ["access", "expr", "comp", "m_seed", "m_mid", "m_dist"]
T_IN_VIVO, E_IN_VIVO = 25.0, 3.0  # as in make_problem.py
SEEDS = int(os.environ.get("BENCH_SEEDS", "10"))
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "8,16,32,64").split(",")]
METHODS = ["mech", "nn", "transfer", "unfrozen"]


def rmse(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float(torch.sqrt(((pred.detach() - target) ** 2).mean()))


def summarize(per_seed: dict, sizes: list[int]) -> dict:
    curve = {}
    for m in METHODS:
        curve[m] = {}
        for n in sizes:
            vals = np.array([r[m] for r in per_seed[n]])
            curve[m][str(n)] = {"mean": float(vals.mean()), "std": float(vals.std()),
                                "median": float(np.median(vals)), "n_seeds": len(vals)}
    return curve


def main() -> dict:
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    mech = fit_mechanistic(EXAMPLE / "problem.yaml", n_starts=4, seed=0)
    t_fit = time.perf_counter() - t_start
    print(f"in vitro fit: fval {mech.fval:.2f} in {t_fit:.0f} s: {mech.parameters}")
    layer = mechanistic_layer(mech, [T_IN_VIVO], sensitivity="forward",
                              solver=SolverSettings(rtol=1e-6, atol=1e-8, max_steps=10_000))
    data = load_outcomes(EXAMPLE / "invivo.tsv", FEATURES, layer.fixed_ids, {"E": E_IN_VIVO})
    truth = torch.tensor(pd.read_csv(EXAMPLE / "invivo.tsv", sep="\t")["outcome_true"]
                         .to_numpy(float)).reshape(-1, 1)
    test_idx = np.where(data.split == "test")[0]
    pool = np.where(data.split == "train")[0]
    test, test_truth = data.subset(test_idx), truth[test_idx]
    noise_floor = rmse(test_truth, test.target)
    probe = MechanisticTransferModel(layer, len(FEATURES), RATES, "obs_product")
    with torch.no_grad():
        pred_mech = probe(test.features, test.fixed)
    r_mech, r_mech_truth = rmse(pred_mech, test.target), rmse(pred_mech, test_truth)
    per_seed: dict[int, list] = {n: [] for n in SIZES}
    result: dict = {}
    for seed in range(SEEDS):
        order = np.random.default_rng(seed).permutation(pool)
        for n in SIZES:
            t0 = time.perf_counter()
            tr_raw = data.subset(order[:n])
            tr, te = tr_raw.standardized(tr_raw), test.standardized(tr_raw)
            row = {"seed": seed, "mech": r_mech, "mech_vs_truth": r_mech_truth}
            net = train_network(tr.features, tr.target, seed=seed)
            with torch.no_grad():
                p = net(te.features)
            row["nn"], row["nn_vs_truth"] = rmse(p, te.target), rmse(p, test_truth)
            torch.manual_seed(seed)
            model = MechanisticTransferModel(layer, len(FEATURES), RATES, "obs_product",
                                             hidden=(16,), l2=1e-2, l2_mechanistic=0.1)
            train(model, [tr.features, tr.fixed], tr.target, steps=100, lr=0.03)
            with torch.no_grad():
                p = model(te.features, te.fixed)
                d = model.delta(te.features)
            row["transfer"], row["transfer_vs_truth"] = rmse(p, te.target), rmse(p, test_truth)
            row["mean_abs_delta"] = dict(zip(RATES, d.abs().mean(0).tolist()))
            model.set_frozen(False)
            train(model, [tr.features, tr.fixed], tr.target, steps=40, lr=0.01)
            with torch.no_grad():
                p = model(te.features, te.fixed)
            row["unfrozen"], row["unfrozen_vs_truth"] = rmse(p, te.target), rmse(p, test_truth)
            row["unfrozen_param_shift"] = (model.net.base - model.base_fit).abs().max().item()
            row["seconds"] = time.perf_counter() - t0
            per_seed[n].append(row)
            print(f"seed {seed} n {n}: " + ", ".join(f"{m} {row[m]:.4f}" for m in METHODS)
                  + f" ({row['seconds']:.1f} s)", flush=True)
        done = [n for n in SIZES if per_seed[n]]
        curve = summarize(per_seed, done)
        small = str(SIZES[0])
        res_small = {m: curve[m][small]["mean"] for m in METHODS}
        wins = [r["transfer"] < min(r["mech"], r["nn"]) for r in per_seed[SIZES[0]]]
        result = {
            "sizes": SIZES, "n_seeds": seed + 1, "n_test": len(test_idx),
            "smallest_size": SIZES[0],
            "rmse_mech": res_small["mech"], "rmse_nn": res_small["nn"],
            "rmse_transfer": res_small["transfer"], "rmse_unfrozen": res_small["unfrozen"],
            "transfer_beats_mech_and_nn_at_smallest": bool(
                res_small["transfer"] < min(res_small["mech"], res_small["nn"])),
            "seeds_where_transfer_beats_both_at_smallest": int(sum(wins)),
            "noise_floor_rmse": noise_floor,
            "learning_curve": curve,
            "in_vitro_fit": {"fval": mech.fval, "parameters": mech.parameters,
                             "seconds": t_fit},
            "per_seed": {str(n): per_seed[n] for n in done},
            "wall_seconds": time.perf_counter() - t_start,
            "cpu_seconds": time.process_time(),
            "load_avg": os.getloadavg()[0],
            "settings": {"layer_rtol": 1e-6, "transfer_steps": 100, "unfrozen_steps": 40,
                         "nn_steps": 1000, "threads": torch.get_num_threads()},
        }
        OUT.parent.mkdir(parents=True, exist_ok=True)
        write_json(OUT.name, result)
    return result


if __name__ == "__main__":
    res = main()
    print({k: res[k] for k in ("rmse_mech", "rmse_nn", "rmse_transfer", "rmse_unfrozen",
                               "wall_seconds")})
