"""CHO fed-batch gray box with the flux-allocation layer between kinetics and mass balances.

Model: the gray box of `benchmarks/hybrid_cho.py` (a (Lac, Glc) -> r_lac_shift network, 15
kinetic parameters) whose six specific rates (glucose, glutamine, lactate, ammonia, growth,
antibody) pass through the 30-flux central-metabolism network
(`sbmlhybrid.hybrid.examples.cho_flux_coupling`) before entering the balances.

(a) compiled: the unconstrained allocation (fixed linear map) written into the AMICI model
    (`couple_flux_allocation`); multi-start fides fit with **adjoint** sensitivities.
(b) torch: the same model simulated in torch with the layer's flux bounds enforced on every
    right-hand-side evaluation (`TorchODE(..., flux_coupling=...)`, RK4), trained with torch
    L-BFGS from (a)'s optimum.

Held-out error as in hybrid_cho.py: RMSE vs the noise-free truth per observable / the
observable's range, mean over the 7 observables, on the 3 held-out feed strategies. Also
recorded: how far the kinetics at the *true* parameters are from stoichiometric consistency
(active bounds, residuals) at two cell dry masses; where (a)'s linear map leaves the flux
bounds; (b)'s active bounds and residuals; the agreement of the torch path with AMICI on the
compiled model; timings.

Usage: ``nice -n 10 python benchmarks/flux_cho.py [--starts 3] [--max-iter 200]
[--torch-iter 20]``. Writes ``benchmarks/results/flux_cho.json`` and
``petab_problems/cho_fedbatch/hybrid_fit_flux_{compiled,torch}.tsv``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import petab.v1 as petab
import torch
from _common import machine, write_json
from hybrid_cho import rmse_by_observable, rmse_table, truth_problem

REPO = Path(__file__).resolve().parents[1]
CHO = REPO / "petab_problems" / "cho_fedbatch"
OUT = REPO / "benchmarks" / "results" / "flux_cho.json"


def allocation_stats(ode, x_free: np.ndarray) -> tuple[Counter, torch.Tensor, float]:
    """Active bounds (count of points), relative rate changes (n_points, n_rates) and the
    largest residual (flux units) of the allocation along a TorchODE's trajectories."""
    with torch.no_grad():
        q, _v, qc = ode.coupled_trajectories(torch.tensor(x_free))
    n = q.shape[-1]
    f = torch.as_tensor(ode.coupling.factors)
    q, qc = q.reshape(-1, n), qc.reshape(-1, n)
    active = Counter(b for row in ode.coupling.layer.active_bounds(q * f) for b in row)
    rel = (qc - q).abs() / q.abs().clamp_min(1e-12)
    return active, rel, float(((qc - q) * f).abs().max())


def consistency_at_truth(network: Path, dry_mass: float) -> dict:
    """Kinetic rates along the true training trajectories, allocated with bounds."""
    from sbmlhybrid.hybrid.examples import cho_flux_coupling
    from sbmlhybrid.hybrid.torch_ode import TorchODE

    cpl = cho_flux_coupling(network, dry_mass)
    ode = TorchODE(truth_problem("train", "truth"), flux_coupling=cpl, max_step=0.05)
    active, rel, _res = allocation_stats(ode, ode.x_nominal_free)
    return {"dry_mass_g_per_1e9_cells": dry_mass, "n_points": rel.shape[0],
            "active_bounds_points": dict(active),
            "max_rel_change_per_rate": dict(zip(cpl.symbols, rel.max(0).values.tolist())),
            "median_rel_change_per_rate": dict(zip(cpl.symbols,
                                                   rel.median(0).values.tolist()))}


def torch_rmse(ode_truth, x_free: np.ndarray) -> dict[str, float]:
    """Per-observable RMSE / range of a TorchODE built on a truth problem."""
    with torch.no_grad():
        sim = ode_truth.measurement_simulations(torch.tensor(x_free)).numpy()
    mdf = ode_truth.measurements
    return rmse_by_observable(mdf["observableId"], sim, mdf["measurement"])


def main() -> None:
    from sbmlhybrid import create_objective
    from sbmlhybrid.hybrid import hybridize, parameter_values
    from sbmlhybrid.hybrid.examples import (
        CENTRAL_METABOLISM,
        cho_flux_coupling,
        cho_graybox_terms,
    )
    from sbmlhybrid.hybrid.flux_coupling import (
        couple_flux_allocation,
        flux_readouts,
        linear_map_violations,
    )
    from sbmlhybrid.hybrid.torch_ode import TorchODE, train
    from sbmlhybrid.optimize import FitSettings, fit
    from sbmlhybrid.problem import load_problem
    from sbmlhybrid.results.plots import best_x_free

    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--torch-iter", type=int, default=20)
    ap.add_argument("--torch-step", type=float, default=0.1)
    ap.add_argument("--dry-mass", type=float, default=0.1)
    ap.add_argument("--reuse-fit", action="store_true",
                    help="take (a)'s fit from hybrid_fit_flux_compiled.tsv and the JSON's "
                         "'compiled' entry instead of fitting again (re-scored)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("amici").setLevel(logging.ERROR)
    network = REPO / "petab_problems" / CENTRAL_METABOLISM
    res: dict = {"machine": machine(), "loadavg_1min_start": round(os.getloadavg()[0], 2),
                 "dry_mass_g_per_1e9_cells": args.dry_mass}
    res["consistency_at_truth"] = [consistency_at_truth(network, d) for d in (0.3, 0.1)]
    print(json.dumps(res["consistency_at_truth"]), flush=True)

    cpl = cho_flux_coupling(network, args.dry_mass)
    terms = cho_graybox_terms()
    train_p = load_problem(CHO / "problem.yaml")
    t0 = time.perf_counter()
    hp = hybridize(couple_flux_allocation(train_p, cpl), terms)
    obj = create_objective(hp, sensitivity_method="adjoint")
    res["compile_or_cache_s"] = round(time.perf_counter() - t0, 1)
    lm = cpl.layer.linear_map()
    res["linear_map_max_abs_R"] = float(np.abs(lm.R).max())

    # (a) compiled linear map, adjoint gradients
    t0 = time.perf_counter()
    obj.evaluate(obj.x_nominal_free)
    res["compiled_gradient_s_adjoint"] = round(time.perf_counter() - t0, 3)
    if args.reuse_fit:
        earlier = json.loads(OUT.read_text())["compiled"]
        a = {k: earlier[k] for k in ("fit_s", "n_starts", "max_iter", "sensitivity_method",
                                     "best_nll", "nll_per_start") if k in earlier}
        tab = pd.read_csv(CHO / "hybrid_fit_flux_compiled.tsv", sep="\t")
        values_a = dict(zip(tab["parameterId"], tab["value"]))
        pdf = hp.petab_problem.parameter_df
        x_a = np.array([petab.scale(values_a[p], pdf.loc[p, petab.PARAMETER_SCALE])
                        for p in obj.x_free_ids])
    else:
        t0 = time.perf_counter()
        result = fit(obj, FitSettings(n_starts=args.starts, seed=0, max_iter=args.max_iter),
                     progress=False)
        fvals = [float(r.fval) for r in result.optimize_result.list]
        x_a = best_x_free(result, obj)
        values_a = parameter_values(obj, x_a)
        pd.DataFrame({"parameterId": list(values_a), "value": list(values_a.values())}).to_csv(
            CHO / "hybrid_fit_flux_compiled.tsv", sep="\t", index=False, float_format="%.17g")
        a = {"fit_s": round(time.perf_counter() - t0, 1), "n_starts": args.starts,
             "max_iter": args.max_iter, "sensitivity_method": obj.sensitivity_method,
             "best_nll": fvals[0], "nll_per_start": fvals}
    scores = {}
    for split in ("train", "test"):
        truth = truth_problem(split, hp.name)
        eval_obj = create_objective(
            hp.hybrid.apply(couple_flux_allocation(truth, cpl), values_a))
        scores[split] = rmse_table(eval_obj)
        if split == "test":
            fl = flux_readouts(eval_obj, cpl)
            wide = fl[~fl["id"].str.startswith("res_")].pivot_table(
                index=["conditionId", "time"], columns="id", values="value")
            a["bound_violations_test"] = linear_map_violations(
                cpl, wide[cpl.layer.flux_ids].to_numpy())
            resid = fl[fl["id"].str.startswith("res_")]
            a["max_abs_residual_test"] = float(resid["value"].abs().max())
    a["train_rmse_per_observable"], a["test_rmse_per_observable"] = scores["train"], \
        scores["test"]
    a["train_rmse"] = float(np.mean(list(scores["train"].values())))
    a["test_rmse"] = float(np.mean(list(scores["test"].values())))
    res["compiled"] = a
    print(json.dumps({k: v for k, v in a.items() if "per_observable" not in k}), flush=True)
    write_json(OUT.name, res)  # (b) below takes long: keep (a) if it fails

    # cross-check: torch on the compiled (linear-map) model == AMICI
    ode_lin = TorchODE(hp, max_step=0.05)
    with torch.no_grad():
        res["torch_vs_amici_nll_at_fit"] = {
            "amici": float(obj.evaluate(x_a, gradient=False).fval),
            "torch_rk4_h0.05": float(ode_lin.nll(torch.tensor(x_a)))}

    # (b) torch path, bounds enforced, from (a)'s optimum
    hp0 = hybridize(train_p, terms)
    ode = TorchODE(hp0, flux_coupling=cpl, max_step=args.torch_step)
    assert ode.x_free_ids == list(obj.x_free_ids)
    t0 = time.perf_counter()
    with torch.no_grad():
        nll_start = float(ode.nll(torch.tensor(x_a)))
    x_b, trace = train(ode, x_a, max_iter=args.torch_iter,
                       callback=lambda i, f: print(f"L-BFGS-B {i}: {f:.4f}", flush=True))
    b = {"train_s": round(time.perf_counter() - t0, 1), "iterations": args.torch_iter,
         "rk4_max_step_days": args.torch_step, "nll_at_compiled_optimum": nll_start,
         "best_nll": float(min(trace + [nll_start])), "nll_trace": trace}
    values_b = {pid: float(petab.unscale(x, s)) for pid, x, s in
                zip(ode.x_free_ids, x_b, ode.scales)}
    pd.DataFrame({"parameterId": list(values_b), "value": list(values_b.values())}).to_csv(
        CHO / "hybrid_fit_flux_torch.tsv", sep="\t", index=False, float_format="%.17g")
    for split in ("train", "test"):
        truth = hp0.hybrid.apply(truth_problem(split, hp0.name))
        ode_t = TorchODE(truth, flux_coupling=cpl, max_step=0.05)
        b[f"{split}_rmse_per_observable"] = torch_rmse(ode_t, x_b)
        b[f"{split}_rmse"] = float(np.mean(list(b[f"{split}_rmse_per_observable"].values())))
        if split == "test":
            active, rel, maxres = allocation_stats(ode_t, x_b)
            b["active_bounds_test_points"] = dict(active)
            b["n_test_points"] = rel.shape[0]
            b["max_abs_residual_test"] = maxres
    res["torch_bounds"] = b
    print(json.dumps({k: v for k, v in b.items() if "per_observable" not in k}), flush=True)
    gray = json.loads((OUT.parent / "hybrid_cho.json").read_text()).get("test_rmse_gray")
    res["reference_test_rmse_gray_without_flux_layer"] = gray
    res["metric"] = ("held-out RMSE vs noise-free truth per observable / the observable's range "
                     "in the truth, mean over the 7 observables")
    write_json(OUT.name, res)


if __name__ == "__main__":
    main()
