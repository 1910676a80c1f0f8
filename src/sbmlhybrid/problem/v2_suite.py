"""Checks against the official PEtab v2 test suite (SBML cases; hand-written).

Each case folder ``NNNN`` has ``_NNNN.yaml`` and ``_NNNN_solution.yaml`` with the reference
``llh``, ``chi2`` and simulation tables and absolute tolerances ``tol_llh``, ``tol_chi2``,
``tol_simulations``. Cases using PEtab v2 features without a v1 equivalent raise
`NotSupportedError` while loading (`sbmlhybrid.problem.v2`); they are reported as such.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from sbmlhybrid.errors import NotSupportedError, SbmlHybridError


def check_v2_case(folder: str | Path) -> dict[str, Any]:
    """Load, simulate and compare one case.

    Returns:
        ``{"case", "status": "passed" | "failed" | "not_supported" | "error", "message",
        "llh", "llh_ref", "chi2", "chi2_ref", "sim_err"}``.
    """
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import load_problem
    from sbmlhybrid.problem.v2 import simulation_table_to_v2

    folder = Path(folder)
    case = folder.name
    out: dict[str, Any] = {"case": case}
    try:
        problem = load_problem(folder / f"_{case}.yaml")
    except NotSupportedError as err:
        return out | {"status": "not_supported", "message": " ".join(str(err).split())}
    except SbmlHybridError as err:
        return out | {"status": "error", "message": f"{type(err).__name__}: {err}"}
    sol = yaml.safe_load((folder / f"_{case}_solution.yaml").read_text())
    problem.solver.rtol, problem.solver.atol = 1e-10, 1e-12
    objective = create_objective(problem)
    ev = objective.evaluate(gradient=False, return_rdatas=True)
    chi2 = float(sum(r.chi2 for r in ev.rdatas or []))
    sim = simulation_table_to_v2(objective.simulate(), problem.experiments or {})
    ref = pd.concat(pd.read_csv(folder / f, sep="\t") for f in sol["simulation_files"])
    ref["experimentId"] = ref["experimentId"].fillna("")
    keys = ["observableId", "experimentId", "time"]
    sim = sim.sort_values(keys).reset_index(drop=True)
    ref = ref.sort_values(keys).reset_index(drop=True)
    sim_err = math.inf if len(sim) != len(ref) else \
        float(np.max(np.abs(sim["simulation"].to_numpy() - ref["simulation"].to_numpy())))
    out |= {"llh": -ev.fval, "llh_ref": sol["llh"], "chi2": chi2, "chi2_ref": sol["chi2"],
            "sim_err": sim_err}
    fails = []
    if not abs(-ev.fval - sol["llh"]) <= sol["tol_llh"]:
        fails.append(f"llh {-ev.fval:.8g} vs {sol['llh']:.8g}")
    if not abs(chi2 - sol["chi2"]) <= sol["tol_chi2"]:
        fails.append(f"chi2 {chi2:.8g} vs {sol['chi2']:.8g}")
    if not sim_err <= sol["tol_simulations"]:
        fails.append(f"simulations max error {sim_err:.3g}")
    return out | {"status": "failed" if fails else "passed", "message": "; ".join(fails)}


def run_v2_suite(suite_dir: str | Path) -> dict[str, Any]:
    """All cases: ``{"petab_v2_passed", "petab_v2_total", "petab_v2_not_supported",
    "cases"}``."""
    folders = sorted(p for p in Path(suite_dir).iterdir() if p.is_dir())
    results = [check_v2_case(p) for p in folders]
    return {"petab_v2_passed": sum(r["status"] == "passed" for r in results),
            "petab_v2_total": len(results),
            "petab_v2_not_supported": sum(r["status"] == "not_supported" for r in results),
            "cases": results}
