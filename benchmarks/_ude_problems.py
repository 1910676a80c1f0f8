"""The two gray-box UDE problems of `benchmarks/ude_speed.py`: CHO fed-batch and stiff_binding.

Reused: `sbmlhybrid.hybrid.hybridize` and the gray-box terms of each problem
(`sbmlhybrid.hybrid.examples.cho_graybox_terms`, `petab_problems/stiff_binding/graybox.py`),
`sbmlhybrid.objective.create_objective` (AMICI, compile cache). Hand-written: the parameter
point of each problem, the data arrays the torch and JAX re-implementations compare against,
and the tolerance rules shared by all tools.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CHO = REPO / "petab_problems" / "cho_fedbatch"
STIFF = REPO / "petab_problems" / "stiff_binding"
PROBLEMS = ("cho", "stiff")
POINT = REPO / "benchmarks" / "results" / "ude_speed" / "cho_point.tsv"


@dataclass
class UDEProblem:
    """One benchmark problem at its parameter point.

    Attributes:
        name: "cho" or "stiff".
        hp: The hybridized PEtab v1 problem (`sbmlhybrid.hybrid.HybridProblem`).
        x: Free parameters on PEtab scale at which gradients are compared, shape (n_free,).
        x_ids: Their ids (the order of every gradient).
        states: State ids in the order of the torch state vector.
        atol_factor: atol = rtol * atol_factor for every tool (state units).
        description: One line for the JSON.
    """

    name: str
    hp: object
    x: np.ndarray
    x_ids: list[str]
    states: list[str]
    atol_factor: float
    description: str

    @property
    def x_hash(self) -> str:
        """Short hash of the parameter point (records measured elsewhere are not reused)."""
        return hashlib.sha1(np.round(self.x, 12).tobytes()).hexdigest()[:12]


def _cho() -> UDEProblem:
    from sbmlhybrid.hybrid import hybridize, set_nominal
    from sbmlhybrid.hybrid.examples import cho_graybox_terms
    from sbmlhybrid.problem import load_problem

    hp = hybridize(load_problem(CHO / "problem.yaml"), cho_graybox_terms())
    # weights and kinetic parameters of a gray-box fit of benchmarks/hybrid_cho.py, pinned
    # beside the records so that refitting the gray box does not move the comparison point
    tab = pd.read_csv(POINT, sep="\t")
    hp = set_nominal(hp, dict(zip(tab["parameterId"], tab["value"])))
    pp = hp.petab_problem
    return UDEProblem("cho", hp, np.asarray(pp.x_nominal_free_scaled, float),
                      list(pp.x_free_ids),
                      ["Xv", "Xd", "Glc", "Gln", "Lac", "Amm", "mAb", "V"], 1e-2,
                      "CHO fed-batch gray box: 8 states, 8 conditions, 15 kinetic parameters "
                      "+ (Lac, Glc) -> r_lac_shift 2-6-6-1 tanh network")


def _stiff() -> UDEProblem:
    sys.path.insert(0, str(STIFF))
    from graybox import graybox_problem  # noqa: E402

    hp = graybox_problem()
    pp = hp.petab_problem
    return UDEProblem("stiff", hp, np.asarray(pp.x_nominal_free_scaled, float),
                      list(pp.x_free_ids), ["L", "R", "C", "M", "P"], 1e-3,
                      "stiff_binding gray box: 5 states, 6 conditions, stiffness ratio >= 2e4, "
                      "6 kinetic parameters + C -> transcription 1-8-8-1 tanh network "
                      "(true kinetics, seeded initial weights)")


def load(name: str) -> UDEProblem:
    """The problem `name` ("cho" or "stiff") at its parameter point."""
    if name not in PROBLEMS:
        raise SystemExit(f"unknown problem {name!r}; choose from {PROBLEMS}")
    return _cho() if name == "cho" else _stiff()


def amici_objective(up: UDEProblem, rtol: float, method: str = "forward", threads: int = 1,
                    max_steps: int = 20_000):
    """sbmlhybrid objective of `up` with CVODES at rtol, atol = rtol * atol_factor.

    Args:
        up: The problem.
        rtol: Relative tolerance; also sets atol.
        method: "forward" or "adjoint" sensitivities (CVODES BDF + Newton, AMICI's adjoint
            quadrature tolerances), optionally followed by ``+quad`` (quadratures at rtol,
            atol) and ``+adams`` (Adams-Moulton with fixed-point iteration), e.g.
            "adjoint+adams+quad".
        threads: AMICI (OpenMP) threads over conditions.
        max_steps: CVODES step cap per condition (larger caps make adjoint checkpointing
            slower: 200,000 doubled the CHO adjoint time).
    """
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import SolverSettings

    sensitivity, *options = method.split("+")
    if set(options) - {"quad", "adams"}:
        raise SystemExit(f"unknown sbmlhybrid group {method!r}")
    atol = rtol * up.atol_factor
    quad = {"quadrature_rtol": rtol, "quadrature_atol": atol} if "quad" in options else {}
    adams = {"multistep": "adams", "nonlinear_iteration": "fixedpoint"} \
        if "adams" in options else {}
    solver = SolverSettings(rtol=rtol, atol=atol, max_steps=max_steps,
                            sensitivity_method=sensitivity, **quad, **adams)
    obj = create_objective(dataclasses.replace(up.hp, solver=solver))
    obj.n_threads = threads
    return obj


def condition_ids(obj) -> list[str]:
    """Simulation condition ids of an sbmlhybrid objective, in its order."""
    return [sim for _pre, sim in obj.conditions]


def data_arrays(up: UDEProblem, conditions: list[str]) -> dict[str, np.ndarray]:
    """Measurements on a (time, condition, state) grid, for the torch and JAX comparisons.

    Every observable of both problems is one state with a numeric sigma.

    Returns:
        ``t`` (n_t,) with 0 first (the initial time, h or d), ``y`` and ``sigma`` of shape
        (n_t, n_cond, n_states) with NaN / 1 where nothing is measured.
    """
    pp = up.hp.petab_problem
    mdf, obs = pp.measurement_df, pp.observable_df
    times = np.unique(np.concatenate([[0.0], mdf["time"].to_numpy(float)]))
    y = np.full((len(times), len(conditions), len(up.states)), np.nan)
    sigma = np.ones_like(y)
    for row in mdf.itertuples():
        k = up.states.index(str(obs.loc[row.observableId, "observableFormula"]).strip())
        it = int(np.searchsorted(times, row.time))
        ic = conditions.index(row.simulationConditionId)
        y[it, ic, k] = row.measurement
        sigma[it, ic, k] = float(obs.loc[row.observableId, "noiseFormula"])
    return {"t": times, "y": y, "sigma": sigma}


def rel_error(grad: np.ndarray, ref: np.ndarray) -> float:
    """Relative L2 error ||grad - ref|| / ||ref||."""
    return float(np.linalg.norm(np.asarray(grad) - ref) / np.linalg.norm(ref))
