"""Tests of the torch simulator layer on the shipped binding-chain model (warm cache: < 60 s)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbmlhybrid.errors import InputError, SimulationError
from sbmlhybrid.layers import (
    ObservableNet,
    ParameterNet,
    SimulatorLayer,
    layer_from_objective,
    mlp,
)
from sbmlhybrid.problem import SolverSettings

from .conftest import PROBLEMS

torch.set_num_threads(1)
RATES = ["lk_on", "lk_off", "lk_f1", "lk_r1", "lk_f2", "lk_r2", "lk_cat"]
COEFS = ["a_seed", "a_mid", "a_dist"]
TIGHT = SolverSettings(rtol=1e-13, atol=1e-16, max_steps=100_000)
BATCH = ["seq1_E1", "seq4_E5", "seq9_E25"]  # conditions with different fixed parameters


@pytest.fixture(scope="module")
def objective():
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import load_problem

    return create_objective(load_problem(PROBLEMS / "binding_chain" / "problem.yaml"))


def _layer(objective, mode: str, **kw) -> SimulatorLayer:
    kw.setdefault("solver", TIGHT)
    return layer_from_objective(objective, RATES + COEFS, timepoints=[1.0, 5.0, 20.0],
                                conditions=BATCH, sensitivity=mode, **kw)


@pytest.mark.parametrize("mode", ["forward", "adjoint"])
def test_gradcheck_batch(objective, mode):
    # mixed scales: rates linear (they are log-rates), mismatch penalties on ln scale
    layer = _layer(objective, mode, input_scale=["lin"] * 7 + ["log"] * 3)
    assert layer.sensitivity == mode
    theta = layer.default_inputs()
    assert theta.shape == (3, 10) and theta.dtype == torch.float64
    # move away from the nominal point so no symmetry hides an error
    theta = (theta + 0.1 * torch.randn(theta.shape, generator=torch.Generator().manual_seed(1),
                                       dtype=torch.float64)).requires_grad_(True)
    y = layer(theta)
    assert y.shape == (3, 3, 2)
    assert torch.autograd.gradcheck(layer, (theta,), eps=1e-5, atol=1e-7, rtol=1e-5)


def test_modes_agree_and_match_petab_simulation(objective):
    fwd, adj = _layer(objective, "forward"), _layer(objective, "adjoint")
    theta = fwd.default_inputs().requires_grad_(True)
    g = torch.randn(3, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    (gf,) = torch.autograd.grad(fwd(theta), theta, g)
    (ga,) = torch.autograd.grad(adj(theta), theta, g)
    np.testing.assert_allclose(ga.numpy(), gf.numpy(), rtol=1e-6, atol=1e-9)
    # same values as the PEtab objective's own simulation at nominal parameters
    sim = objective.simulate(None, BATCH)
    y = fwd(theta.detach()).numpy()
    for i, cond in enumerate(BATCH):
        for j, t in enumerate([1.0, 5.0, 20.0]):
            for k, obs in enumerate(fwd.observable_ids):
                row = sim[(sim.simulationConditionId == cond) & (sim.time == t)
                          & (sim.observableId == obs)]
                assert y[i, j, k] == pytest.approx(float(row.simulation.iloc[0]), rel=1e-6,
                                                   abs=1e-10)


def test_failed_integration_names_condition(objective):
    layer = _layer(objective, "forward", solver=SolverSettings(rtol=1e-8, atol=1e-12))
    theta = layer.default_inputs()
    theta[1, 0] = 60.0  # kon = e^60: CVODES cannot integrate this
    with pytest.raises(SimulationError) as err:
        layer(theta)
    msg = str(err.value)
    assert "seq4_E5" in msg and "lk_on" in msg and "m_mid" in msg
    theta[1, 0] = float("nan")
    with pytest.raises(SimulationError, match="seq4_E5"):
        layer(theta)


def test_condition_and_fixed_override(objective):
    layer = _layer(objective, "forward", solver=SolverSettings(rtol=1e-10, atol=1e-12))
    theta = layer.default_inputs([0, 0])
    # element 1 gets the fixed parameters of condition 2 -> same output as condition 2
    fixed = layer.simulator.conditions.fixed[[0, 2]]
    y = layer(theta, condition=[0, 0], fixed=torch.from_numpy(fixed))
    y_ref = layer(layer.default_inputs())
    torch.testing.assert_close(y[1], y_ref[2], rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(y[0], y_ref[0], rtol=1e-12, atol=0.0)
    with pytest.raises(InputError):
        layer(theta)  # batch of 2 over 3 conditions without `condition`
    with pytest.raises(InputError):
        layer(theta[:, :3], condition=[0, 0])


def test_input_validation(objective):
    with pytest.raises(InputError, match="fixed"):
        layer_from_objective(objective, ["lk_on", "m_seed"], timepoints=[1.0])
    with pytest.raises(InputError):
        layer_from_objective(objective, ["nope"], timepoints=[1.0])
    with pytest.raises(InputError):
        _layer(objective, "forward", input_scale="log2")


def test_networks_before_and_after_simulation_train(objective):
    layer = _layer(objective, "auto", solver=SolverSettings(rtol=1e-8, atol=1e-10))
    assert layer.sensitivity == "forward"  # 10 inputs, 6 outputs per element
    base = layer.default_inputs()[0]
    torch.manual_seed(0)
    covariates = torch.tensor([[0.0], [1.0], [-1.0]], dtype=torch.float64)
    # ground truth: lk_on shifted by 0.5 * covariate
    truth = base.repeat(3, 1)
    truth[:, 0] += 0.5 * covariates[:, 0]
    target = layer(truth).detach()
    model = ParameterNet(mlp(1, 1, hidden=(), zero_last=True), layer, targets=["lk_on"],
                         base=base)
    torch.testing.assert_close(model(covariates), layer(base.repeat(3, 1)))  # starts at base
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = ((model(covariates) - target) ** 2).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]
    assert model.network[0].weight.item() == pytest.approx(0.5, abs=0.1)
    # observation network after the simulation: gradients reach the head and the inputs
    head = ObservableNet(layer, mlp(6, 1, hidden=(4,)))
    theta = base.repeat(3, 1).requires_grad_(True)
    out = head(theta)
    assert out.shape == (3, 1)
    out.sum().backward()
    assert theta.grad is not None and torch.isfinite(theta.grad).all()
    assert theta.grad.abs().sum() > 0
    assert all(p.grad is not None for p in head.head.parameters())


def test_sbml_problem_for_bare_model():
    from sbmlhybrid.layers import sbml_problem

    sbml = PROBLEMS / "binding_chain" / "model.xml"
    problem, inputs = sbml_problem(sbml, ["lk_on", "U"], {"y_P": "P"}, fixed_ids=["E"])
    assert inputs == ["lk_on", "x0_U"]
    pp = problem.petab_problem
    model = pp.sbml_model
    assert model.getInitialAssignmentBySymbol("U") is not None
    assert model.getParameter("x0_U").getValue() == 1.0
    est = pp.parameter_df["estimate"]
    assert est["E"] == 0 and est["lk_on"] == 1 and est["x0_U"] == 1
    assert list(pp.observable_df.index) == ["y_P"]
    with pytest.raises(InputError):
        sbml_problem(sbml, ["not_there"])
    with pytest.raises(InputError):
        sbml_problem(sbml, ["lk_on"], fixed_ids=["U"])


@pytest.mark.slow
def test_layer_from_sbml_initial_value_input_gradcheck():
    """Compiles a second model (~1 min): initial values as differentiable inputs."""
    from sbmlhybrid.layers import layer_from_sbml

    layer = layer_from_sbml(PROBLEMS / "binding_chain" / "model.xml", ["lk_on", "U"],
                            [5.0, 20.0], {"y_P": "P", "y_U": "U"}, fixed_ids=["E"],
                            solver=TIGHT)
    assert layer.input_ids == ["lk_on", "x0_U"] and layer.fixed_ids == ["E"]
    theta = torch.tensor([[-3.0, 1.0], [-2.5, 0.5]], dtype=torch.float64, requires_grad=True)
    y = layer(theta, fixed=torch.tensor([[3.0], [10.0]]))
    assert y.shape == (2, 2, 2)
    torch.testing.assert_close(layer(theta.detach() * torch.tensor([1.0, 2.0]),
                                     fixed=torch.tensor([[3.0], [10.0]])), 2 * y.detach())
    assert torch.autograd.gradcheck(lambda t: layer(t, fixed=torch.tensor([[3.0], [10.0]])),
                                     (theta,), eps=1e-5, atol=1e-7, rtol=1e-5)
