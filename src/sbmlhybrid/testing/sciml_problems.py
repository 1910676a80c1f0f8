"""``sciml_problem_import`` cases of the PEtab SciML test suite (hand-written).

Each case (``NNN/petab/problem.yaml`` + ``NNN/solutions.yaml``) gives the log-likelihood
(``llh``, ``tol_llh``), simulations (``simulations.tsv``, ``tol_simulations``) and gradients
(``grad_mech.tsv``; ``grad_<net>.hdf5`` in PyTorch layout, empty arrays for frozen
parameters) at the nominal parameters. The suite's gradient tolerance is 0.1; here
gradients are checked at relative `GRAD_RTOL` = 1e-4 of the largest reference entry of
the same file (a per-entry relative test is meaningless for entries near zero).
The references are gradients of the log-likelihood (ours: of the negative one; compared
with the sign flipped); for a problem whose parameter table has priors (on mechanistic or
network parameters) the reference value and gradients are those of the log-posterior, so
the log-prior and its gradient are added (`posterior`). `check_sciml_problem_case` reports
one `Check` each for llh, simulations, the mechanistic gradient and each network's
gradient; that they are within their tolerances is asserted in
``tests/test_sciml_problems.py``. Cases are loaded through the front door
(`sbmlhybrid.api.load_problem`, `create_objective`), the path users take.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from sbmlhybrid.api import create_objective, load_problem
from sbmlhybrid.errors import SbmlHybridError
from sbmlhybrid.sciml.hdf5 import read_parameters
from sbmlhybrid.testing.results import CaseResult, Check

GRAD_RTOL = 1e-4


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return float(np.max(np.abs(a - b))) / scale if scale > 0 else float(np.max(np.abs(a - b)))


def posterior(obj: Any, ev: Any) -> tuple[float, dict[str, float], dict[str, dict[str, Any]]]:
    """(log-posterior, mechanistic and network gradients of the negative log-posterior) of an
    evaluation at the nominal point; the likelihood's when the problem has no priors."""
    mech = dict(ev.mech_grad)
    net = {n: {k: np.array(v, dtype=float) for k, v in d.items()} for n, d in ev.net_grad.items()}
    if obj.prior is None:
        return -ev.fval, mech, net
    x = obj.x_nominal_free
    grad = obj.prior(x, sensi_orders=(1,))
    for i, pid in enumerate(obj.mech_ids):
        mech[pid] += float(grad[i])
    for (n, k, idx), g in zip(obj.net_ids, grad[len(obj.mech_ids):]):
        net[n][k][idx] += float(g)
    return -ev.fval + obj.log_prior(x), mech, net


def compare_case(case_dir: str | Path, sign: float = -1.0) -> dict[str, Any]:
    """Import, evaluate and compare one case; returns the numbers (no pass/fail).

    Returns:
        ``{"llh", "llh_ref", "tol_llh", "sim_err", "tol_sim", "grad_mech_rel",
        "grad_net_rel": {net: rel}, "seconds"}``.
    """
    case = Path(case_dir)
    sol = yaml.safe_load((case / "solutions.yaml").read_text())
    t0 = time.perf_counter()
    # the front door, as a user loads a SciML problem (not the deprecated
    # `SciMLProblem.objective()`)
    obj = create_objective(load_problem(case / "petab" / "problem.yaml"))
    ev = obj.evaluate()
    value, mech_grad, net_grad = posterior(obj, ev)
    sim = obj.simulate()
    ref = pd.concat(pd.read_csv(case / f, sep="\t") for f in sol["simulation_files"])
    keys = ["observableId", "experimentId", "time"]
    ref["experimentId"] = ref["experimentId"].fillna("")
    sim = sim.sort_values(keys).reset_index(drop=True)
    ref = ref.sort_values(keys).reset_index(drop=True)
    sim_err = math.inf if len(sim) != len(ref) else \
        float(np.max(np.abs(sim["simulation"].to_numpy() - ref["simulation"].to_numpy())))
    files = sol.get("grad_files") or {}
    mech_rel = None
    if "mech" in files:
        gm = pd.read_csv(case / files["mech"], sep="\t")
        ours = np.array([sign * mech_grad[p] for p in gm["parameterId"]])
        mech_rel = _rel(ours, gm["value"].to_numpy(float))
    net_rel: dict[str, float] = {}
    for net, f in files.items():
        if net == "mech":
            continue
        refs = read_parameters(case / f).get(net, {})
        ours_l, ref_l = [], []
        for layer, arrays in refs.items():
            for arr, values in arrays.items():
                if values.size:
                    ours_l.append(sign * net_grad[net][f"{layer}.{arr}"].ravel())
                    ref_l.append(np.asarray(values, dtype=float).ravel())
        net_rel[net] = _rel(np.concatenate(ours_l), np.concatenate(ref_l)) if ours_l else 0.0
    return {"llh": value, "llh_ref": float(sol["llh"]), "tol_llh": float(sol["tol_llh"]),
            "sim_err": sim_err, "tol_sim": float(sol["tol_simulations"]),
            "grad_mech_rel": mech_rel, "grad_net_rel": net_rel,
            "seconds": round(time.perf_counter() - t0, 2)}


def check_sciml_problem_case(case_dir: str | Path, grad_rtol: float = GRAD_RTOL) -> CaseResult:
    """One ``sciml_problem_import`` case: llh, simulations and gradients next to their
    tolerances (the suite's for llh and simulations, relative `grad_rtol` for gradients)."""
    case = Path(case_dir)
    try:
        r = compare_case(case)
    except SbmlHybridError as err:
        return CaseResult("sciml_problem_import", case.name, "error",
                          message=f"{type(err).__name__}: {err}")
    checks = [Check("llh", abs(r["llh"] - r["llh_ref"]), r["tol_llh"]),
              Check("simulations", r["sim_err"], r["tol_sim"])]
    grads = {"mech": r["grad_mech_rel"], **r["grad_net_rel"]}
    checks += [Check(f"gradient {k}", v, grad_rtol) for k, v in grads.items() if v is not None]
    return CaseResult("sciml_problem_import", case.name, "ran", checks,
                      values={"llh": r["llh"], "llh_ref": r["llh_ref"]}, seconds=r["seconds"])


def run_problem_suite(suite_dir: str | Path) -> list[CaseResult]:
    """Every ``sciml_problem_import`` case, in name order."""
    root = Path(suite_dir) / "sciml_problem_import"
    return [check_sciml_problem_case(d) for d in sorted(root.iterdir())
            if (d / "solutions.yaml").is_file()]
