"""Issue 14's last items: the torch layer takes any objective, the torch-side ODE is itself
an objective, and `sbmlhybrid validate` prints the defaults a bare SBML model got.

References: the objectives' own `evaluate` (the layer must reproduce it exactly: same call),
central finite differences (the layer's gradient is the objective's, which is checked too),
AMICI's `ModelObjective` on the same problem for the RK4 path (`TorchODE`, h = 0.01 against
CVODES at rtol 1e-12: measured relative differences <= 6e-10 in value, 1.3e-9 in gradient
(norm), 8e-10 in simulated values; asserted at 1e-8, 1e-6, 1e-8), and the loaded problem's
own tables for the printed defaults.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import sbmlhybrid as sh
from sbmlhybrid.cli.main import main
from sbmlhybrid.errors import InputError, NotSupportedError
from sbmlhybrid.layers import ObjectiveLayer, layer_from_objective
from sbmlhybrid.objective import Objective
from tests.conftest import REPO, SHARED, fd_gradient

V2_0027 = SHARED / "petab_test_suite" / "v2.0.0" / "sbml" / "0027" / "_0027.yaml"
TOY = REPO / "tests" / "data" / "flux_toy" / "problem.yaml"
TINY = REPO / "tests" / "data" / "tiny"
SCIML_003 = SHARED / "petab_sciml_testsuite" / "sciml_problem_import" / "003" / "petab" / \
    "problem.yaml"


# ---- 1. the torch layer over any objective -------------------------------------------------
@pytest.fixture(scope="module")
def v2_objective():
    if not V2_0027.exists():
        pytest.skip(f"{V2_0027} absent (../shared not checked out)")
    from sbmlhybrid.problem import SolverSettings

    # tight tolerances: the finite differences below are compared at 1e-6
    return sh.create_objective(sh.load_problem(V2_0027, solver=SolverSettings(rtol=1e-12,
                                                                             atol=1e-14)))


def test_layer_over_a_petab_v2_objective(v2_objective) -> None:
    """Value = evaluate, autograd gradient = evaluate's gradient = central differences, on
    all experiments and on one; batches and input subsets pick the right entries."""
    objective = v2_objective
    assert type(objective).__name__ == "PetabV2Objective"
    assert objective.conditions == ["e1", "e2"]
    x = objective.x_nominal_free + 0.1  # b0's nominal value 0 is its lower bound
    layer = ObjectiveLayer(objective)
    for conditions in (None, ["e2"]):
        theta = torch.tensor(x, requires_grad=True)
        value = layer(theta, conditions)
        value.backward()
        ev = objective.evaluate(x, conditions)
        assert value.shape == () and float(value.detach()) == pytest.approx(ev.fval, rel=1e-12)
        np.testing.assert_allclose(theta.grad.numpy(), ev.grad, rtol=1e-6, atol=1e-12)
    fd = fd_gradient(objective, x, 1e-5)
    full = objective.evaluate(x).grad
    assert np.linalg.norm(full - fd) <= 1e-6 * np.linalg.norm(fd), (full, fd)
    # a batch of two points, weighted cotangents; only k1 and k2 as inputs
    sub = ObjectiveLayer(objective, ["k2", "k1"], x_free=x, conditions=["e1"])
    i1, i2 = objective.x_free_ids.index("k1"), objective.x_free_ids.index("k2")
    theta = torch.tensor([[x[i2], x[i1]], [x[i2] + 0.2, x[i1] - 0.1]], requires_grad=True)
    values = sub(theta)
    (values * torch.tensor([2.0, -3.0], dtype=torch.float64)).sum().backward()
    for row, weight, (d2, d1) in ((0, 2.0, (0.0, 0.0)), (1, -3.0, (0.2, -0.1))):
        xr = x.copy()
        xr[i1] += d1
        xr[i2] += d2
        ev = objective.evaluate(xr, ["e1"])
        assert float(values[row].detach()) == pytest.approx(ev.fval, rel=1e-12)
        np.testing.assert_allclose(theta.grad[row].numpy(), weight * ev.grad[[i2, i1]],
                                   rtol=1e-6)
    np.testing.assert_array_equal(sub.default_inputs().numpy(), x[[i2, i1]])


@pytest.mark.parametrize("kind", ["v1", "sciml"])
def test_layer_over_v1_and_sciml_objectives(kind) -> None:
    """The same layer over a PEtab v1 `ModelObjective` and a `SciMLObjective` (case 003:
    mechanistic and network parameters): value and gradient = evaluate's, per experiment."""
    path = TINY / "problem.yaml" if kind == "v1" else SCIML_003
    if not path.exists():
        pytest.skip(f"{path} absent")
    objective = sh.create_objective(sh.load_problem(path))
    x = objective.x_nominal_free + 0.01
    ids = objective.x_free_ids[:4]
    layer = ObjectiveLayer(objective, ids, x_free=x)
    theta = torch.tensor(x[:4], requires_grad=True)
    condition = objective.conditions[-1]
    condition = condition[1] if isinstance(condition, tuple) else condition  # v1: (pre, sim)
    value = layer(theta, [condition])
    value.backward()
    ev = objective.evaluate(x, [condition])
    assert float(value.detach()) == pytest.approx(ev.fval, rel=1e-12)
    np.testing.assert_allclose(theta.grad.numpy(), ev.grad[:4], rtol=1e-10)
    assert np.abs(ev.grad[:4]).max() > 0
    with torch.no_grad():  # a layer's forward: the network gradients must not vanish
        quiet = objective.evaluate(x, [condition])
    np.testing.assert_array_equal(quiet.grad, ev.grad)
    assert np.count_nonzero(ev.grad) > len(ev.grad) // 2


def test_observables_layer_names_the_layer_for_other_objectives(v2_objective) -> None:
    with pytest.raises(NotSupportedError, match="ObjectiveLayer"):
        layer_from_objective(v2_objective, ["k1"], timepoints=[1.0])
    with pytest.raises(InputError, match="not free parameters"):
        ObjectiveLayer(v2_objective, ["offset_A2_c0"])  # fixed in the table


# ---- 2. the torch-side ODE implements the protocol ----------------------------------------
@pytest.fixture(scope="module")
def toy():
    """The flux toy with the allocation compiled in (rate rules only): AMICI at tight
    tolerances and the torch ODE of the same problem."""
    from sbmlhybrid.hybrid import TorchODE, couple_flux_allocation
    from sbmlhybrid.problem import SolverSettings
    from tests.test_flux_coupling import coupling

    problem = sh.load_problem(TOY, solver=SolverSettings(rtol=1e-12, atol=1e-14))
    coupled = couple_flux_allocation(problem, coupling())
    return sh.create_objective(coupled, sensitivity_method="forward"), \
        TorchODE(coupled, max_step=0.01)


def test_torch_ode_is_an_objective_equal_to_amici(toy) -> None:
    amici, ode = toy
    assert isinstance(ode, Objective)
    assert ode.x_free_ids == amici.x_free_ids and ode.conditions == ["low", "high"]
    x = amici.x_nominal_free + np.array([0.05, -0.05, 0.02, -0.02])
    parts = []
    for conditions in (None, ["low"], ["high"]):
        ev, ref = ode.evaluate(x, conditions=conditions), amici.evaluate(x, conditions)
        assert ev.fval == pytest.approx(ref.fval, rel=1e-8), conditions
        assert np.linalg.norm(ev.grad - ref.grad) <= 1e-6 * np.linalg.norm(ref.grad)
        parts.append(ev)
    assert parts[1].fval + parts[2].fval == pytest.approx(parts[0].fval, rel=1e-12)
    # AMICI's table runs over its conditions (sorted ids) and keeps the measurement rows'
    # index; the torch table is in measurement-table order
    table, ref_table = ode.simulate(x), amici.simulate(x).sort_index().reset_index(drop=True)
    assert list(table.columns) == list(ref_table.columns)
    keys = ["observableId", "simulationConditionId", "time"]
    pd.testing.assert_frame_equal(table[keys], ref_table[keys])
    np.testing.assert_allclose(table["simulation"], ref_table["simulation"], rtol=1e-8,
                               atol=1e-10)
    assert len(ode.simulate(x, ["high"])) == (ref_table.simulationConditionId == "high").sum()
    pp = ode.pypesto_problem
    np.testing.assert_allclose(pp.lb, amici.pypesto_problem.lb, rtol=1e-12)
    np.testing.assert_allclose(pp.ub, amici.pypesto_problem.ub, rtol=1e-12)
    assert pp.objective(x) == pytest.approx(parts[0].fval, rel=1e-12)
    # the torch layer takes it like any objective
    theta = torch.tensor(x, requires_grad=True)
    value = ObjectiveLayer(ode)(theta, ["low"])
    value.backward()
    assert float(value.detach()) == pytest.approx(parts[1].fval, rel=1e-12)
    np.testing.assert_allclose(theta.grad.numpy(), parts[1].grad, rtol=1e-10)


def test_fit_takes_the_torch_ode(toy) -> None:
    """Five iterations of a one-start fit lower the objective."""
    from sbmlhybrid.hybrid import TorchODE

    ode = TorchODE(toy[1].problem, max_step=0.1)
    result = sh.fit(ode, sh.FitSettings(n_starts=1, max_iter=5, seed=0), progress=False)
    best = result.optimize_result.list[0]
    start = ode.evaluate(best.x0, gradient=False).fval
    assert best.fval < start - 1.0, (start, best.fval)
    assert best.fval == pytest.approx(ode.evaluate(best.x, gradient=False).fval, rel=1e-10)


# ---- 3. validate prints the bare-SBML defaults ---------------------------------------------
def test_validate_prints_the_defaults_of_a_bare_sbml_model(tmp_path, capsys) -> None:
    """No condition column, observable = species id: the printed defaults are those in the
    loaded tables (condition, observable id and formula, sigma parameter and its bounds)."""
    data = pd.read_csv(TINY / "measurements.tsv", sep="\t")
    rows = data[(data.observableId == "obs_a") & (data.simulationConditionId == "c0")]
    rows[["time", "measurement"]].assign(observableId="A").to_csv(
        tmp_path / "m.tsv", sep="\t", index=False)
    args = [str(TINY / "model.xml"), "--measurements", str(tmp_path / "m.tsv")]
    assert main(["validate", *args]) == 0
    out = capsys.readouterr().out
    problem = sh.load_problem(*args[::2])
    pp = problem.petab_problem
    assert problem.condition_ids == ["condition1"]
    assert list(pp.observable_df.index) == ["obs_A"]
    assert pp.observable_df.loc["obs_A", "observableFormula"] == "A"
    assert pp.observable_df.loc["obs_A", "noiseFormula"] == "sigma_obs_A"
    sigma = pp.parameter_df.loc["sigma_obs_A"]
    assert (sigma.parameterScale, sigma.lowerBound, sigma.upperBound, sigma.estimate) == \
        ("log10", 1e-3, 1e3, 1)
    n = len(rows)
    assert f"{n} measurements, 1 conditions, {len(pp.x_free_ids)} estimated" in out
    expected = [
        f"no simulationConditionId column: one condition 'condition1' added for all {n} "
        "measurements",
        "observable 'A' (a model entity) -> observable id 'obs_A', formula A",
        "sigma of 'obs_A' estimated: noise parameter 'sigma_obs_A' added, normal noise, "
        "log10 scale, bounds [0.001, 1000], nominal 1",
        "estimated on log10 scale in [nominal/1000, nominal*1000]",
    ]
    lines = out.splitlines()
    assert "defaults applied:" in lines
    for text in expected:
        assert any(text in line for line in lines), (text, out)
    assert problem.notes == sh.describe(problem)["defaults"]
    # a complete PEtab problem gets no defaults and prints none
    assert main(["validate", str(TINY / "problem.yaml")]) == 0
    assert "defaults applied" not in capsys.readouterr().out
