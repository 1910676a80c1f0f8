"""Hybrid models (`sbmlhybrid.hybrid`): unrolled torch networks inside the AMICI model.

One tiny test problem (written to a temp dir, compiled once through the project cache):
Michaelis-Menten conversion S -> P whose rate v = Vmax S / (Km + S) is "unknown" and replaced
by a 1-4-1 tanh network with a softplus output. Checks: exact weight round trip, the network
compiled into AMICI equals the torch module along a trajectory, model gradients w.r.t. the
weights equal finite differences, a gray-box fit recovers v(S), unsupported layers are
rejected by name, and the other target kinds edit the SBML as documented.
"""

from __future__ import annotations

import copy
import dataclasses

import libsbml
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from sbmlhybrid import create_objective
from sbmlhybrid.build import cache_key
from sbmlhybrid.build.cache import DEFAULT_CODEGEN
from sbmlhybrid.errors import InputError
from sbmlhybrid.hybrid import (
    HYBRID_CODEGEN,
    NetworkTerm,
    check_module,
    hybridize,
    parameter_values,
)
from sbmlhybrid.problem import SolverSettings, load_problem
from tests.conftest import fd_gradient

torch.set_num_threads(1)
VMAX, KM = 1.0, 0.5
S0 = (1.0, 2.0, 4.0)
TIMES = np.linspace(0.0, 6.0, 13)


def _sbml() -> str:
    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId("mm_toy")
    c = m.createCompartment()
    c.setId("c")
    c.setSize(1.0)
    c.setConstant(True)
    for pid, val, const in (("Vmax", VMAX, True), ("Km", KM, True), ("S0", 1.0, True),
                            ("S", 0.0, False), ("P", 0.0, False), ("v", 0.0, False)):
        p = m.createParameter()
        p.setId(pid)
        p.setValue(val)
        p.setConstant(const)
    ia = m.createInitialAssignment()
    ia.setSymbol("S")
    ia.setMath(libsbml.parseL3Formula("S0"))
    r = m.createAssignmentRule()
    r.setVariable("v")
    r.setMath(libsbml.parseL3Formula("Vmax * S / (Km + S)"))
    for sid, f in (("S", "-v"), ("P", "v")):
        rr = m.createRateRule()
        rr.setVariable(sid)
        rr.setMath(libsbml.parseL3Formula(f))
    return libsbml.writeSBMLToString(doc)


def _truth(s0: float) -> np.ndarray:
    from scipy.integrate import solve_ivp

    sol = solve_ivp(lambda t, y: [-VMAX * y[0] / (KM + y[0])], (0, TIMES[-1]), [s0],
                    t_eval=TIMES, rtol=1e-12, atol=1e-12)
    return sol.y[0]


@pytest.fixture(scope="module")
def toy_problem(tmp_path_factory):
    d = tmp_path_factory.mktemp("mm_toy")
    (d / "model.xml").write_text(_sbml())
    pd.DataFrame({"conditionId": [f"c{i}" for i in range(len(S0))], "S0": S0}).to_csv(
        d / "conditions.tsv", sep="\t", index=False)
    pd.DataFrame({"observableId": ["obs_S", "obs_P", "obs_v"],
                  "observableFormula": ["S", "P", "v"], "noiseFormula": [0.02, 0.02, 1.0],
                  "noiseDistribution": ["normal"] * 3}).to_csv(
        d / "observables.tsv", sep="\t", index=False)
    rows = []
    for i, s0 in enumerate(S0):  # noise-free data: the fit's error is the network's own
        s = _truth(s0)
        for t, sv in zip(TIMES, s):
            rows += [{"observableId": "obs_S", "simulationConditionId": f"c{i}", "time": t,
                      "measurement": sv},
                     {"observableId": "obs_P", "simulationConditionId": f"c{i}", "time": t,
                      "measurement": s0 - sv}]
    pd.DataFrame(rows).to_csv(d / "measurements.tsv", sep="\t", index=False)
    pd.DataFrame({"parameterId": ["Vmax", "Km"], "parameterScale": ["log10"] * 2,
                  "lowerBound": [0.01] * 2, "upperBound": [10.0] * 2,
                  "nominalValue": [VMAX, KM], "estimate": [1, 1]}).to_csv(
        d / "parameters.tsv", sep="\t", index=False)
    (d / "problem.yaml").write_text(
        "format_version: 1\nparameter_file: parameters.tsv\nproblems:\n- sbml_files: "
        "[model.xml]\n  condition_files: [conditions.tsv]\n  measurement_files: "
        "[measurements.tsv]\n  observable_files: [observables.tsv]\n")
    return load_problem(d / "problem.yaml", solver=SolverSettings(rtol=1e-12, atol=1e-12,
                                                                   sensitivity_method="forward"))


def _net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 4, dtype=torch.float64), nn.Tanh(),
                         nn.Linear(4, 1, dtype=torch.float64))


def _term(seed: int = 0) -> NetworkTerm:
    return NetworkTerm("vnet", _net(seed), ["S"], ["v"], output_transform="softplus",
                       input_scales={"S": (2.0, 2.0)})


@pytest.fixture(scope="module")
def toy_hybrid(toy_problem):
    hp = hybridize(toy_problem, [_term()])
    return hp, create_objective(hp)  # compiled with HYBRID_CODEGEN (the problem's choice)


def test_unsupported_layer_rejected_with_its_name():
    bad = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Dropout(0.1), nn.Linear(3, 1))
    with pytest.raises(InputError, match=r"layer 2 \(Dropout\)"):
        check_module(bad)
    with pytest.raises(InputError, match="LayerNorm"):
        NetworkTerm("n", nn.Sequential(nn.Linear(1, 2), nn.LayerNorm(2)), ["S"], ["a", "b"])
    with pytest.raises(InputError, match="GELU"):
        check_module(nn.Sequential(nn.Linear(1, 2), nn.GELU()))
    with pytest.raises(InputError, match="nn.Sequential"):
        check_module(nn.Linear(1, 1))
    nan = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    with torch.no_grad():
        nan[2].bias[0] = float("nan")
        nan[0].weight[1, 0] = float("inf")
    with pytest.raises(InputError, match=r"(?s)net: layer 0 \(Linear\): 1 non-finite weight "
                       r"value\(s\), first at weight\[1, 0\] = inf.*layer 2 \(Linear\): 1 "
                       r"non-finite bias"):
        check_module(nan, name="net")
    with pytest.raises(InputError, match="2 input"):
        NetworkTerm("n", nn.Sequential(nn.Linear(3, 1)), ["S", "P"], ["v"])
    for act in (nn.Tanh(), nn.ReLU(), nn.Softplus(), nn.Sigmoid(), nn.ELU(),
                nn.GELU(approximate="tanh"), nn.SiLU(), nn.Identity()):
        assert len(check_module(nn.Sequential(nn.Linear(1, 2), act, nn.Linear(2, 1)))) == 2


def test_weights_round_trip_exactly(toy_problem):
    hp = hybridize(toy_problem, [_term(seed=3)])
    original = copy.deepcopy(hp.hybrid.terms[0].module.state_dict())
    pdf = hp.petab_problem.parameter_df
    values = {pid: float(pdf.loc[pid, "nominalValue"]) for pid in hp.hybrid.weight_ids}
    assert len(values) == 4 + 4 + 4 + 1
    other = _term(seed=99)
    hp.hybrid.terms[0].module.load_state_dict(other.module.state_dict())  # scramble
    hp.hybrid.load_weights(values)
    for key, tensor in original.items():
        assert torch.equal(hp.hybrid.terms[0].module.state_dict()[key], tensor), key
    # float32 modules round-trip bit-exactly too
    net32 = nn.Sequential(nn.Linear(1, 3), nn.Tanh(), nn.Linear(3, 1))
    t32 = NetworkTerm("n32", net32, ["S"], ["v"], input_scales={"S": (2.0, 2.0)})
    ref = copy.deepcopy(net32.state_dict())
    hp32 = hybridize(toy_problem, [t32])
    vals32 = hp32.petab_problem.parameter_df["nominalValue"].to_dict()
    nn.init.zeros_(net32[0].weight)
    hp32.hybrid.load_weights(vals32)
    assert all(torch.equal(net32.state_dict()[k], v) for k, v in ref.items())


def test_cache_key_ignores_weight_values(toy_problem):
    opts = {**DEFAULT_CODEGEN, **HYBRID_CODEGEN}
    a, b = hybridize(toy_problem, [_term(1)]), hybridize(toy_problem, [_term(2)])
    assert cache_key(a, opts) == cache_key(b, opts)
    wider = NetworkTerm("vnet", nn.Sequential(nn.Linear(1, 5), nn.Tanh(), nn.Linear(5, 1)),
                        ["S"], ["v"], output_transform="softplus",
                        input_scales={"S": (2.0, 2.0)})
    assert cache_key(hybridize(toy_problem, [wider]), opts) != cache_key(a, opts)


def test_network_in_model_equals_torch(toy_hybrid):
    hp, obj = toy_hybrid
    rng = np.random.default_rng(0)
    x = obj.x_nominal_free + rng.normal(0, 0.3, len(obj.x_free_ids))
    ev = obj.evaluate(x, gradient=False, return_rdatas=True)
    hp.hybrid.load_weights(parameter_values(obj, x))
    model = obj.amici_objective.amici_model
    iy = {oid: k for k, oid in enumerate(model.get_observable_ids())}
    for rdata in ev.rdatas:
        s = rdata.y[:, iy["obs_S"]]
        v_model = rdata.y[:, iy["obs_v"]]
        v_torch = hp.hybrid.term_values("vnet", s[:, None])[:, 0]
        np.testing.assert_allclose(v_model, v_torch, rtol=1e-12, atol=1e-13)


def test_gradient_matches_finite_differences(toy_hybrid):
    _hp, obj = toy_hybrid
    rng = np.random.default_rng(1)
    x = obj.x_nominal_free + rng.normal(0, 0.3, len(obj.x_free_ids))
    grad = obj.evaluate(x).grad
    fd = fd_gradient(obj, x, 1e-5)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * np.abs(grad).max())


def test_graybox_fit_recovers_hidden_rate(toy_hybrid):
    from sbmlhybrid.optimize import FitSettings, fit
    from sbmlhybrid.results.plots import best_x_free

    hp, _obj = toy_hybrid
    assert set(hp.hybrid.dropped) == {"Vmax", "Km"}  # replaced term: no longer estimated
    # the fit does not need the FD test's 1e-12 tolerances (the solver is not in the cache key)
    hp_fit = dataclasses.replace(hp, solver=SolverSettings(rtol=1e-8, atol=1e-10,
                                                           sensitivity_method="forward"))
    obj = create_objective(hp_fit)
    assert obj.compiled.hit
    result = fit(obj, FitSettings(n_starts=2, seed=0, max_iter=250), progress=False)
    x = best_x_free(result, obj)
    hp.hybrid.load_weights(parameter_values(obj, x))
    s = np.linspace(0.05, 4.0, 80)  # the range of S the data visit
    v_true = VMAX * s / (KM + s)
    v_net = hp.hybrid.term_values("vnet", s[:, None])[:, 0]
    err = np.max(np.abs(v_net - v_true)) / np.max(v_true)
    # measured (2 starts): max error 0.061 of max(v) after 100 iterations, 0.042 after 300
    assert err < 0.07, err
    v_init = _term().module
    hp.hybrid.terms[0].module.load_state_dict(v_init.state_dict())
    err0 = np.max(np.abs(hp.hybrid.term_values("vnet", s[:, None])[:, 0] - v_true))
    assert err0 > 5 * err


def test_other_target_kinds_edit_the_sbml(toy_problem):
    def math(hp, var):
        return libsbml.formulaToL3String(hp.petab_problem.sbml_model.getRuleByVariable(var)
                                         .getMath())

    one = nn.Sequential(nn.Linear(1, 1, dtype=torch.float64))
    scales = {"S": (2.0, 2.0)}
    hp = hybridize(toy_problem, [NetworkTerm("k", one, ["S"], ["Km"], input_scales=scales)])
    assert math(hp, "Km") == "k__y0"
    assert "Km" not in hp.petab_problem.parameter_df.index
    hp = hybridize(toy_problem, [NetworkTerm("t", copy.deepcopy(one), ["S"], ["v"],
                                             kind="term", term="Km + S", input_scales=scales)])
    assert math(hp, "v") == "Vmax * S / t__y0"
    hp = hybridize(toy_problem, [NetworkTerm("r", copy.deepcopy(one), ["time"], ["P"],
                                             kind="rate", input_scales={"time": (3.0, 3.0)})])
    assert math(hp, "P") == "r__y0"
    with pytest.raises(InputError, match="not found"):
        hybridize(toy_problem, [NetworkTerm("t", copy.deepcopy(one), ["S"], ["v"],
                                            kind="term", term="Km * S", input_scales=scales)])
    with pytest.raises(InputError, match="not an SBML id"):
        hybridize(toy_problem, [NetworkTerm("u", copy.deepcopy(one), ["Q"], ["v"],
                                            input_scales={"Q": (0, 1)})])
    with pytest.raises(InputError, match="u: target 'v_missing' is not in the model"):
        hybridize(toy_problem, [NetworkTerm("u", copy.deepcopy(one), ["S"], ["v_missing"],
                                            input_scales=scales)])


def test_weight_prior_adds_the_normal_log_density(toy_problem, toy_hybrid):
    """weight_prior_sd adds sum_w [w^2 / (2 sd^2) + log(2 pi sd^2) / 2] to the objective and
    w / sd^2 to its gradient (PEtab normal objective prior), nothing to other parameters."""
    hp, obj = toy_hybrid
    sd = 0.5
    term = dataclasses.replace(_term(), weight_prior_sd=sd)
    prior_obj = create_objective(hybridize(toy_problem, [term]))  # same compiled model
    rng = np.random.default_rng(2)
    x = obj.x_nominal_free + rng.normal(0, 0.3, len(obj.x_free_ids))
    f0, g0 = obj.pypesto_problem.objective(x, sensi_orders=(0, 1))
    f1, g1 = prior_obj.pypesto_problem.objective(x, sensi_orders=(0, 1))
    is_w = np.array([pid in set(hp.hybrid.weight_ids) for pid in obj.x_free_ids])
    w = x[is_w]
    expected = np.sum(w**2 / (2 * sd**2) + 0.5 * np.log(2 * np.pi * sd**2))
    np.testing.assert_allclose(f1 - f0, expected, rtol=1e-10)
    np.testing.assert_allclose((g1 - g0)[is_w], w / sd**2, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose((g1 - g0)[~is_w], 0.0, atol=1e-10)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="vnet: weight_prior_sd"):
            dataclasses.replace(_term(), weight_prior_sd=bad)
