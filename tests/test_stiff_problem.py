"""The stiff receptor-ligand problem (`petab_problems/stiff_binding`): stiffness, data, noise.

The stiffness is recomputed here from a hand-written Jacobian of the model (not the
generator's sympy one) along AMICI simulations of the truth.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PROBLEMS

FOLDER = PROBLEMS / "stiff_binding"


def _module(name: str):
    sys.path.insert(0, str(FOLDER))
    spec = importlib.util.spec_from_file_location(name, FOLDER / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gen():
    return _module("make_problem")


@pytest.fixture(scope="module")
def objective(gen):
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import load_problem

    problem = load_problem(FOLDER / "problem.yaml")
    problem.solver.rtol, problem.solver.atol = 1e-12, 1e-14
    return create_objective(problem)


def _x_true(gen, objective) -> np.ndarray:
    return np.log10([gen.PARAMETERS[p][0] for p in objective.x_free_ids])


def analytic_jacobian(x: np.ndarray, p: dict[str, float]) -> np.ndarray:
    """d(dx/dt)/dx of (L, R, C, M, P), written out by hand (Hill exponent 2)."""
    lig, rec, cpx = x[0], x[1], x[2]
    kon, kd = p["kon"], p["Kd"]
    dtx = p["k_tx"] * 2 * cpx * p["K_C"] ** 2 / (p["K_C"] ** 2 + cpx**2) ** 2
    return np.array([
        [-kon * rec, -kon * lig, kon * kd, 0, 0],
        [-kon * rec, -kon * lig - p["kt"], kon * kd, 0, 0],
        [kon * rec, kon * lig, -kon * kd - p["ke"], 0, 0],
        [0, 0, dtx, -p["kdm"], 0],
        [0, 0, 0, p["ktl"], -p["kdp"]],
    ])


def test_stiffness_ratio_at_truth(gen, objective):
    truth = {k: v[0] for k, v in gen.PARAMETERS.items()}
    trajectories = gen.true_trajectories(objective)
    assert set(trajectories) == set(gen.CONDITIONS)
    lowest = np.inf
    for x in trajectories.values():
        assert x.shape == (241, 5)
        for row in x:
            re = np.abs(np.linalg.eigvals(analytic_jacobian(row, truth)).real)
            re = re[re > 1e-12 * re.max()]
            lowest = min(lowest, re.max() / re.min())
    assert lowest >= 1e4
    recorded = json.loads((FOLDER / "stiffness.json").read_text())
    assert recorded["ratio_min_over_all"] == pytest.approx(lowest, rel=1e-3)
    assert f"{recorded['ratio_min_over_all']:.3g}" in (FOLDER / "README.md").read_text()


def test_sympy_jacobian_matches_hand_written(gen):
    states, jac = gen.sympy_jacobian()
    assert states == list(gen.STATES)
    import sympy as sp

    values = {k: v[0] for k, v in gen.PARAMETERS.items()}
    x = np.array([3.0, 0.4, 0.2, 0.5, 2.0])
    num = np.array(jac.subs({sp.Symbol(k): v for k, v in
                             {**values, **dict(zip(states, x))}.items()}), float)
    np.testing.assert_allclose(num, analytic_jacobian(x, values), rtol=1e-12, atol=1e-12)


def test_data_shapes_and_noise_are_deterministic(gen, tmp_path):
    data = pd.read_csv(FOLDER / "measurements.tsv", sep="\t")
    truth = pd.read_csv(FOLDER / "true_measurements.tsv", sep="\t")
    n = len(gen.CONDITIONS) * len(gen.OBSERVABLES) * len(gen.TIMES)
    assert len(data) == len(truth) == n
    assert data["measurement"].notna().all()
    key = ["observableId", "simulationConditionId", "time"]
    assert (data[key] == truth[key]).all().all()
    assert sorted(data["simulationConditionId"].unique()) == sorted(gen.CONDITIONS)
    sigma = truth["observableId"].map(lambda o: gen.OBSERVABLES[o][1]).to_numpy()
    noise = np.random.default_rng(gen.SEED).normal(0.0, sigma)
    # written with 10 significant digits
    np.testing.assert_allclose(data["measurement"] - truth["measurement"], noise, atol=5e-8)
    gen.write_tables(tmp_path)  # the SBML and the tables are regenerated identically
    for name in ("model.xml", "conditions.tsv", "parameters.tsv", "observables.tsv",
                 "problem.yaml"):
        assert (tmp_path / name).read_text() == (FOLDER / name).read_text(), name


def test_nominal_llh_equals_noise_model(gen, objective):
    data = pd.read_csv(FOLDER / "measurements.tsv", sep="\t")
    truth = pd.read_csv(FOLDER / "true_measurements.tsv", sep="\t")
    sigma = truth["observableId"].map(lambda o: gen.OBSERVABLES[o][1]).to_numpy()
    r = (data["measurement"].to_numpy() - truth["measurement"].to_numpy()) / sigma
    expected = float(np.sum(-0.5 * r**2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)))
    assert objective.llh(_x_true(gen, objective)) == pytest.approx(expected, abs=1e-6)


def test_graybox_replaces_transcription():
    gb = _module("graybox")
    hp = gb.graybox_problem()
    assert sorted(hp.hybrid.dropped) == ["K_C", "k_tx"]
    assert len(hp.hybrid.weight_ids) == 8 + 8 + 64 + 8 + 8 + 1
    c = np.linspace(0.0, 0.8, 5)
    assert hp.hybrid.term_values(gb.NAME, c[:, None]).shape == (5, 1)
    np.testing.assert_allclose(gb.true_transcription([0.1]), [1.0])
