"""Tests of the pretrain -> freeze -> correct workflow on the binding-chain example."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbmlhybrid.errors import InputError
from sbmlhybrid.problem import SolverSettings, load_problem
from sbmlhybrid.transfer import (
    MechanisticTransferModel,
    fit_mechanistic,
    load_outcomes,
    mechanistic_layer,
    train,
    train_network,
)

from .conftest import PROBLEMS

torch.set_num_threads(1)
EXAMPLE = PROBLEMS / "binding_chain"
RATES = ["lk_on", "lk_off", "lk_f1", "lk_r1", "lk_f2", "lk_r2", "lk_cat"]
FEATURES = ["access", "expr", "comp", "m_seed", "m_mid", "m_dist"]
TRUE = {"lk_on": -3.0, "lk_off": -3.9, "a_seed": 2.0, "a_mid": 1.5}  # well identified


@pytest.fixture(scope="module")
def mech():
    problem = load_problem(EXAMPLE / "problem.yaml",
                           solver=SolverSettings(rtol=1e-8, atol=1e-10))  # faster than 1e-10
    return fit_mechanistic(problem, n_starts=1, seed=0, max_iter=200)


@pytest.fixture(scope="module")
def setup(mech):
    layer = mechanistic_layer(mech, [25.0], sensitivity="forward",
                              solver=SolverSettings(rtol=1e-6, atol=1e-8, max_steps=10_000))
    data = load_outcomes(EXAMPLE / "invivo.tsv", FEATURES, layer.fixed_ids, {"E": 3.0})
    test = data.subset(np.where(data.split == "test")[0][:100])
    train_set = data.subset(np.where(data.split == "train")[0][:16])
    return layer, train_set.standardized(train_set), test.standardized(train_set)


def test_fit_recovers_identifiable_parameters(mech):
    nll_true = mech.objective.evaluate(mech.objective.x_nominal_free, gradient=False).fval
    assert mech.fval <= nll_true + 1e-3  # at least as good as the data-generating values
    for pid, value in TRUE.items():
        assert mech.parameters[pid] == pytest.approx(value, abs=0.15), pid


def test_starts_exactly_at_mechanistic_prediction(setup, mech):
    layer, tr, _ = setup

    model = MechanisticTransferModel(layer, len(FEATURES), RATES, "obs_product")
    # the frozen layer sits at the in vitro fit (all inputs on linear PEtab scale here)
    expected = torch.tensor([mech.parameters[i] for i in layer.input_ids], dtype=torch.float64)
    torch.testing.assert_close(model.base_fit, expected, rtol=0.0, atol=0.0)
    assert torch.count_nonzero(model.delta(tr.features)) == 0
    with torch.no_grad():  # same solver path (no sensitivities) -> bitwise equal
        out = model(tr.features, tr.fixed)
        base = model.base_fit.repeat(len(tr), 1)
        ref = layer(base, condition=np.zeros(len(tr), dtype=int), fixed=tr.fixed)[:, :, 1]
    torch.testing.assert_close(out, ref, rtol=0.0, atol=0.0)
    with pytest.raises(InputError):
        MechanisticTransferModel(layer, 3, RATES, "obs_nope")


def test_frozen_correction_improves_and_keeps_mechanism(setup):
    layer, tr, te = setup
    torch.manual_seed(0)
    model = MechanisticTransferModel(layer, len(FEATURES), RATES, "obs_product", l2=1e-2)
    with torch.no_grad():
        before = float(((model(te.features, te.fixed) - te.target) ** 2).mean().sqrt())
    history = train(model, [tr.features, tr.fixed], tr.target, steps=40, lr=0.03)
    assert history[-1] < 0.5 * history[0]
    torch.testing.assert_close(model.net.base, model.base_fit, rtol=0.0, atol=0.0)  # frozen
    with torch.no_grad():
        after = float(((model(te.features, te.fixed) - te.target) ** 2).mean().sqrt())
        delta = model.delta(te.features)
    assert after < 0.7 * before  # held-out error drops well below the mechanistic one
    assert delta.abs().mean(0)[0] > 0.1  # binding (lk_on) carries a context effect
    # unfreeze: the mechanistic parameters move, and the prior pull enters the penalty
    model.set_frozen(False)
    assert not model.frozen
    train(model, [tr.features, tr.fixed], tr.target, steps=5, lr=0.01)
    assert (model.net.base - model.base_fit).detach().abs().max().item() > 1e-4
    pen = model.penalty(tr.features)
    model.set_frozen(True)
    assert float(pen) > float(model.penalty(tr.features))


def test_network_baseline_and_data_errors(setup, tmp_path):
    _, tr, _ = setup
    net = train_network(tr.features, tr.target, steps=50)
    with torch.no_grad():
        out = net(tr.features)
    assert out.shape == (len(tr), 1)
    # the baseline fits: training MSE far below the constant (mean) predictor's, the target
    # variance (measured: 5.1e-4 vs 4.3e-2; 6.4e-2 before training)
    mse = float(((out - tr.target) ** 2).mean())
    assert mse < 0.05 * float(tr.target.var(unbiased=False)), mse
    with pytest.raises(InputError, match="missing"):
        load_outcomes(EXAMPLE / "invivo.tsv", ["nope"], ["E"], {"E": 1.0})
    with pytest.raises(InputError, match="missing"):
        load_outcomes(EXAMPLE / "invivo.tsv", FEATURES, ["E"], {})
