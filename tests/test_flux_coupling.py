"""The flux layer inside a kinetic model: compiled linear map (AMICI) and torch path (bounds).

Toy problem `tests/data/flux_toy`: uptake q_s, product q_p = Y_p q_s, growth mu = Y_x q_s with
Y_p + Y_x = 1.1, while the network (S_ext -> A -> P_ext | BIOMASS) only admits q_s = q_p + mu,
so the allocation really changes the rates the balances see.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbmlhybrid.errors import InputError, NotSupportedError
from sbmlhybrid.flux import FluxAllocation
from sbmlhybrid.hybrid.flux_coupling import (
    ExchangeRate,
    FluxCoupling,
    couple_flux_allocation,
    flux_readouts,
    linear_map_violations,
)
from sbmlhybrid.hybrid.torch_ode import TorchODE
from tests.conftest import REPO, fd_gradient

TOY = REPO / "tests" / "data" / "flux_toy" / "problem.yaml"
S = np.array([[-1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, -1, -1]])  # S_ext, P_ext, BIOMASS, A
METABOLITES = ["S_ext", "P_ext", "BIOMASS", "A"]
FLUXES = ["UPT", "PROD", "GROW"]
RATES = {"S_ext": ExchangeRate("q_s", -1.0), "P_ext": ExchangeRate("q_p", 1.0),
         "BIOMASS": ExchangeRate("mu", 1.0)}


def coupling(growth_cap: float = np.inf) -> FluxCoupling:
    layer = FluxAllocation(S, [0, 1, 2], [3], lb=np.zeros(3), ub=[np.inf, np.inf, growth_cap],
                           flux_ids=FLUXES, metabolite_ids=METABOLITES)
    return FluxCoupling(layer, RATES)


@pytest.fixture(scope="module")
def toy():
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import SolverSettings, load_problem

    # tight CVODES tolerances: the torch path (RK4, h = 0.01) is compared to 1e-8
    problem = load_problem(TOY, solver=SolverSettings(rtol=1e-12, atol=1e-14))
    cpl = coupling()
    coupled = couple_flux_allocation(problem, cpl)
    return problem, cpl, coupled, create_objective(coupled, sensitivity_method="adjoint")


def _kinetic_rates(x: np.ndarray, p: dict[str, float]) -> np.ndarray:
    s = x[:, 0]
    q = p["vmax"] * s / (p["K_s"] + s)
    return np.stack([-q, p["Y_p"] * q, p["Y_x"] * q], axis=1)  # net production, flux units


def test_compiled_readouts_equal_the_layer(toy):
    """AMICI's flux and residual read-outs equal the layer applied to the simulated states."""
    problem, cpl, _coupled, obj = toy
    ev = obj.evaluate(gradient=False, return_rdatas=True)
    ids = list(obj.amici_objective.amici_model.get_state_ids())
    table = flux_readouts(obj, cpl)
    nominal = {"vmax": 1.0, "K_s": 2.0, "Y_p": 0.6, "Y_x": 0.5}
    for (_pre, cid), rd in zip(obj.conditions, ev.rdatas):
        x = np.asarray(rd.x)[:, [ids.index(s) for s in ("S", "P", "X")]]
        r = _kinetic_rates(x, nominal)
        with torch.no_grad():
            v, res = cpl.layer(torch.tensor(r))
        sub = table[table["conditionId"] == cid]
        got_v = sub[sub["id"].isin(FLUXES)].pivot(index="time", columns="id",
                                                  values="value")[FLUXES].to_numpy()
        got_res = sub[sub["id"].str.startswith("res_")].pivot(
            index="time", columns="id", values="value")[[f"res_{m}" for m in RATES]].to_numpy()
        np.testing.assert_allclose(got_v, v.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got_res, res.numpy(), rtol=1e-9, atol=1e-12)
        # the kinetics are inconsistent (Y_p + Y_x = 1.1): the layer changes them
        assert np.abs(res.numpy()).max() > 1e-3 * np.abs(r).max()


def test_torch_path_reproduces_compiled_model(toy):
    """Same likelihood from AMICI (linear map compiled) and from both torch formulations."""
    problem, cpl, coupled, obj = toy
    fval = obj.evaluate(gradient=False).fval
    with torch.no_grad():
        x = torch.tensor(obj.x_nominal_free)
        on_coupled_sbml = float(TorchODE(coupled, max_step=0.01).nll(x))
        layer_in_rhs = float(TorchODE(problem, flux_coupling=cpl, max_step=0.01).nll(x))
    assert on_coupled_sbml == pytest.approx(fval, rel=1e-8)
    assert layer_in_rhs == pytest.approx(fval, rel=1e-8)
    # and the coupling matters: the uncoupled model has another likelihood
    with torch.no_grad():
        uncoupled = float(TorchODE(problem, max_step=0.05).nll(x))
    assert abs(uncoupled - fval) > 1e-3 * abs(fval)


def test_compiled_adjoint_gradient_matches_finite_differences(toy):
    _problem, _cpl, _coupled, obj = toy
    assert obj.sensitivity_method == "adjoint"
    x = obj.x_nominal_free + 0.05
    grad = obj.evaluate(x).grad
    np.testing.assert_allclose(grad, fd_gradient(obj, x, 1e-5), rtol=1e-4,
                               atol=1e-6 * np.abs(grad).max())


def test_torch_path_with_active_bounds_gradcheck(toy):
    problem, _cpl, _coupled, obj = toy
    capped = coupling(growth_cap=0.3)
    ode = TorchODE(problem, flux_coupling=capped, max_step=0.5)  # gradient of the RK4 scheme
    x = torch.tensor(obj.x_nominal_free, requires_grad=True)
    with torch.no_grad():
        q, _v, qc = (a[0] for a in ode.coupled_trajectories(x))  # at t = 0
        active = capped.layer.active_bounds(q * torch.as_tensor(capped.factors))
    assert any("GROW:upper" in row for row in active)  # the cap binds at the start
    assert float(qc[:, 2].max()) == pytest.approx(0.3, abs=1e-9)  # consistent growth capped
    assert torch.autograd.gradcheck(ode.nll, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_torch_training_decreases_the_objective(toy):
    from sbmlhybrid.hybrid.torch_ode import train

    problem, _cpl, _coupled, obj = toy
    ode = TorchODE(problem, flux_coupling=coupling(growth_cap=0.3), max_step=0.2)
    x0 = obj.x_nominal_free + np.array([0.2, -0.2, 0.1, -0.1])
    with torch.no_grad():
        start = float(ode.nll(torch.tensor(x0)))
    x, trace = train(ode, x0, max_iter=4)
    # the trace is best-so-far, so only a strict decrease says that every iteration improved;
    # measured: 14905.7 -> 14890.0, 14864.7, 14862.9, 14861.1 (steps of at least 1.7)
    assert len(trace) == 4 and start > trace[0]
    assert all(a - b > 0.5 for a, b in zip(trace, trace[1:])), trace
    assert trace[-1] < start - 30  # measured: a drop of 44.6
    assert np.all((x >= ode.bounds[:, 0]) & (x <= ode.bounds[:, 1]))
    with torch.no_grad():
        assert float(ode.nll(torch.tensor(x))) == pytest.approx(trace[-1], rel=1e-12)


def test_linear_map_violations():
    cpl = coupling(growth_cap=0.3)
    v = np.array([[1.0, 0.5, 0.5], [1.0, 0.8, 0.2], [0.1, -0.2, 0.3]])
    out = linear_map_violations(cpl, v)
    assert out == {"PROD:lower": pytest.approx(1 / 3), "GROW:upper": pytest.approx(1 / 3)}
    with pytest.raises(InputError, match=r"\(n_points, 3\)"):
        linear_map_violations(cpl, v[:, :2])


def test_bad_couplings_name_the_entity():
    from sbmlhybrid.problem import load_problem

    problem = load_problem(TOY)
    layer = coupling().layer
    with pytest.raises(InputError, match="BIOMASS"):
        FluxCoupling(layer, {k: v for k, v in RATES.items() if k != "BIOMASS"})
    with pytest.raises(InputError, match="factor of 'P_ext'"):
        FluxCoupling(layer, {**RATES, "P_ext": ExchangeRate("q_p", 0.0)})
    with pytest.raises(InputError, match="'S'.*not an assignment-rule"):
        couple_flux_allocation(problem, FluxCoupling(layer, {**RATES,
                                                             "S_ext": ExchangeRate("S", -1.0)}))


def test_torch_ode_rejects_reaction_models():
    from sbmlhybrid.problem import load_problem

    with pytest.raises(NotSupportedError, match="reaction"):
        TorchODE(load_problem(REPO / "tests" / "data" / "tiny" / "problem.yaml"))
