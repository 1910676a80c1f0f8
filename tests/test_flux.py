"""Tests of sbmlhybrid.flux against an independent scipy reference and a KKT certificate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import lsq_linear, minimize

from sbmlhybrid.errors import InputError
from sbmlhybrid.flux import FluxAllocation, QPSettings, allocate_fluxes

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
CHO = ROOT / "petab_problems" / "cho_central_metabolism" / "cho_central_metabolism.xml"
CHO_MEASURED = ["GLC_ext", "GLN_ext", "LAC_ext", "ALA_ext", "NH4_ext", "O2_ext", "CO2_ext",
                "BIOMASS", "ANTIBODY"]
# typical CHO exchange rates, mmol/gDW/h (growth h^-1, antibody g/gDW/h)
CHO_RATES = np.array([-0.3, -0.05, 0.4, 0.02, 0.04, -0.3, 0.35, 0.03, 0.002])


# ---------------------------------------------------------------- reference
def kkt_residual(v, S_int, S_m, r, w, eps, lb, ub, tol=1e-9):
    """Optimality certificate of the convex QP at v: (primal infeasibility, stationarity error).

    Multipliers of the balances (free) and of the bounds active at v (>= 0) are
    fitted by bounded least squares; for a convex QP, zero stationarity error
    with feasible v proves v optimal.
    """
    n = v.size
    grad = 2 * S_m.T @ (w**2 * (S_m @ v - r)) + 2 * eps * v
    scale = 1 + np.abs(v).max()
    low = np.flatnonzero(np.isfinite(lb) & (v - lb <= tol * scale))
    up = np.flatnonzero(np.isfinite(ub) & (ub - v <= tol * scale))
    cols = [S_int.T, -np.eye(n)[:, low], np.eye(n)[:, up]]
    M = np.hstack(cols)
    lo = np.concatenate([np.full(S_int.shape[0], -np.inf), np.zeros(low.size + up.size)])
    fit = lsq_linear(M, -grad, bounds=(lo, np.full(M.shape[1], np.inf)), tol=1e-14,
                     lsmr_tol="auto", method="bvls")
    infeas = max(np.abs(S_int @ v).max(initial=0), np.max(lb - v), np.max(v - ub), 0.0)
    return infeas, np.abs(M @ fit.x + grad).max() / (1 + np.abs(grad).max())


def reference_qp(S_int, S_m, r, w, eps, lb, ub):
    """SLSQP, then an exact solve on SLSQP's active set (numpy KKT system).

    SLSQP needs independent equality constraints, so the balances are replaced
    by an orthonormal basis of their row space. The result must pass the KKT
    certificate, so a wrong reference fails loudly instead of silently.
    """
    S_full = S_int
    _, sv, Vt = np.linalg.svd(S_int)
    S_int = Vt[: int(np.sum(sv > 1e-10 * sv.max()))]
    n = S_int.shape[1]
    W2 = w**2

    def f(v):
        e = S_m @ v - r
        return e @ (W2 * e) + eps * v @ v, 2 * S_m.T @ (W2 * e) + 2 * eps * v

    bnds = [(None if np.isinf(a) else a, None if np.isinf(b) else b) for a, b in zip(lb, ub)]
    x0 = np.clip(np.zeros(n), lb, ub)
    sol = minimize(f, x0, jac=True, method="SLSQP", bounds=bnds,
                   constraints=[{"type": "eq", "fun": lambda v: S_int @ v, "jac": lambda v: S_int}],
                   options={"ftol": 1e-13, "maxiter": 400})
    v = sol.x
    tol = 1e-7 * (1 + np.abs(v).max())
    act = [(j, lb[j]) for j in range(n) if np.isfinite(lb[j]) and v[j] - lb[j] < tol]
    act += [(j, ub[j]) for j in range(n) if np.isfinite(ub[j]) and ub[j] - v[j] < tol]
    E = np.zeros((len(act), n))
    for i, (j, _) in enumerate(act):
        E[i, j] = 1.0
    A = np.vstack([S_int, E])
    b = np.concatenate([np.zeros(S_int.shape[0]), [val for _, val in act]])
    Q = 2 * (S_m.T @ (W2[:, None] * S_m) + eps * np.eye(n))
    K = np.block([[Q, A.T], [A, np.zeros((A.shape[0], A.shape[0]))]])
    rhs = np.concatenate([2 * S_m.T @ (W2 * r), b])
    v = np.linalg.lstsq(K, rhs, rcond=None)[0][:n]
    infeas, stat = kkt_residual(v, S_full, S_m, r, w, eps, lb, ub)
    assert infeas < 1e-10 and stat < 1e-9, "reference solver failed"
    return v


def _canonical_basis(N):
    """An orthonormal basis of span(N) that depends on the space alone: the SVD's null-space
    basis differs between LAPACK builds (numpy 2.4 vs 2.5 gave other test problems)."""
    G = np.random.default_rng(0).normal(size=N.shape)  # own stream: the problem's is untouched
    Q, R = np.linalg.qr(N @ (N.T @ G))
    return Q * np.sign(np.diag(R))


def random_problem(seed, n_int=7, n_m=5, n=12, regime="active"):
    rng = np.random.default_rng(seed)
    S = np.round(rng.normal(size=(n_int + n_m, n)), 1)
    S[:, rng.choice(n, 2, replace=False)] = 0.0  # fluxes seen by nothing but eps
    S[:n_int, 0] = S[:n_int, 1] = S[:n_int, 2]  # parallel routes through the balances
    _, _, Vt = np.linalg.svd(S[:n_int])
    N = _canonical_basis(Vt[np.linalg.matrix_rank(S[:n_int]):].T)
    v_feas = N @ rng.normal(size=N.shape[1])
    width = 50.0 if regime == "inactive" else rng.uniform(0.05, 0.6, n)
    lb, ub = v_feas - width, v_feas + width
    ub[rng.choice(n, 2, replace=False)] = np.inf
    w = rng.uniform(0.5, 2.0, n_m)
    meas = list(range(n_int, n_int + n_m))
    return S, meas, lb, ub, w, N, rng


def layer_and_rates(seed, regime, consistent, batch=4, settings=None):
    S, meas, lb, ub, w, N, rng = random_problem(seed, regime=regime)
    eps = 1e-3
    layer = FluxAllocation(S, meas, lb=lb, ub=ub, weights=w, eps=eps, settings=settings)
    v_true = N @ rng.normal(size=(N.shape[1], batch)) * (0.3 if regime == "inactive" else 2.0)
    r = (S[meas] @ v_true).T
    if not consistent:
        r = r + rng.normal(scale=0.5, size=r.shape)
    return layer, S, meas, lb, ub, w, eps, r


# ---------------------------------------------------------------- accuracy
# active_set_steps=0 sends every constrained row through the interior point + polish path
PATHS = {"active_set": QPSettings(), "interior_point": QPSettings(active_set_steps=0)}


REGIMES = [("inactive", "active_set"), ("active", "active_set"), ("active", "interior_point")]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("regime,path", REGIMES)
@pytest.mark.parametrize("consistent", [True, False])
def test_matches_reference(seed, regime, path, consistent):
    layer, S, meas, lb, ub, w, eps, r = layer_and_rates(seed, regime, consistent,
                                                        settings=PATHS[path])
    S_int = S[[i for i in range(S.shape[0]) if i not in meas]]
    S_m = S[meas]
    v, res = layer(torch.tensor(r))
    v = v.numpy()
    active = layer.active_bounds(torch.tensor(r))
    if regime == "inactive":
        assert not any(active)
        lm = layer.linear_map()
        np.testing.assert_allclose(v, r @ lm.A.T + lm.b, atol=1e-10)
        np.testing.assert_allclose(res.numpy(), r @ lm.R.T + lm.c, atol=1e-10)
    else:
        assert sum(map(len, active)) > 0
    for b in range(r.shape[0]):
        ref = reference_qp(S_int, S_m, r[b], w, eps, lb, ub)
        np.testing.assert_allclose(v[b], ref, atol=1e-8, rtol=0)
        infeas, stat = kkt_residual(v[b], S_int, S_m, r[b], w, eps, lb, ub)
        assert infeas <= 1e-11 and stat <= 1e-9
    np.testing.assert_allclose(res.numpy(), v @ S_m.T - r, atol=1e-13)
    if not consistent:
        assert np.abs(res.numpy()).max() > 1e-3


@pytest.mark.parametrize("path", list(PATHS))
def test_cho_network_against_reference(path):
    bounds = {"EX_LAC": (0.0, np.inf), "EX_ALA": (0.0, np.inf), "GLDH": (-0.01, 0.01)}
    layer = FluxAllocation.from_sbml(CHO, eps=1e-4, bounds=bounds, settings=PATHS[path])
    net = layer.network
    rng = np.random.default_rng(3)
    r = CHO_RATES * rng.uniform(0.5, 1.5, size=(4, 9))
    r[:2, 2] = -0.1  # lactate consumption, but EX_LAC >= 0 here: bound active
    v, res = layer(torch.tensor(r))
    assert all("EX_LAC:lower" in act for act in layer.active_bounds(torch.tensor(r[:2])))
    S_int = _cho_matrix()[net.internal]
    for b in range(r.shape[0]):
        ref = reference_qp(S_int, net.S_m, r[b], np.ones(9), 1e-4, net.lb, net.ub)
        np.testing.assert_allclose(v[b].numpy(), ref, atol=1e-8, rtol=0)
        infeas, stat = kkt_residual(v[b].numpy(), S_int, net.S_m, r[b], np.ones(9), 1e-4,
                                    net.lb, net.ub)
        assert infeas <= 1e-11 and stat <= 1e-9


def _cho_matrix():
    from sbmlhybrid.flux.sbml import read_network

    return read_network(CHO).S


def test_fixed_and_dependent_rows_match_reference():
    S, meas, lb, ub, w, N, rng = random_problem(11)
    S = np.vstack([S[:7], S[:1] * 2.0, S[7:]])  # a dependent balance
    meas = [m + 1 for m in meas]
    v_fix = N[:, 0] * 0.1
    lb, ub = v_fix - 0.3, v_fix + 0.3
    lb[4] = ub[4] = v_fix[4]  # a fixed flux
    layer = FluxAllocation(S, meas, lb=lb, ub=ub, weights=w, eps=1e-4)
    assert 4 in layer.network.fixed
    r = rng.normal(size=(3, len(meas)))
    v, _ = layer(torch.tensor(r))
    S_int = S[:8]
    for b in range(3):
        ref = reference_qp(S_int, S[meas], r[b], w, 1e-4, lb, ub)
        np.testing.assert_allclose(v[b].numpy(), ref, atol=1e-8, rtol=0)
    lm = layer.linear_map()
    assert abs(lm.b[4] - v_fix[4]) < 1e-12 and np.allclose(lm.A[4], 0.0)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("regime,path", REGIMES)
def test_gradcheck(regime, path):
    S, meas, lb, ub, w, N, rng = random_problem(5, n=10, regime=regime)
    layer = FluxAllocation(S, meas, lb=lb, ub=ub, weights=w, eps=1e-2, learn_weights=True,
                           settings=PATHS[path])
    v_true = N @ rng.normal(size=(N.shape[1], 3)) * (0.3 if regime == "inactive" else 2.0)
    r = torch.tensor((S[meas] @ v_true).T + rng.normal(scale=0.3, size=(3, len(meas))),
                     requires_grad=True)
    active = layer.active_bounds(r.detach())
    assert (sum(map(len, active)) > 0) == (regime == "active")
    weights = layer.weights.detach().clone().requires_grad_(True)

    def f(r_, w_):
        v, res = torch.func.functional_call(layer, {"weights": w_}, (r_,))
        return v, res

    assert torch.autograd.gradcheck(f, (r, weights), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_gradient_matches_linear_map():
    # at these rates the fit wants a (lumped) reverse oxidative PPP flux: allow it here
    layer = FluxAllocation.from_sbml(CHO, bounds={"G6PDH": (-np.inf, np.inf)})
    r = torch.tensor(CHO_RATES[None], requires_grad=True)
    v, _ = layer(r)
    assert not layer.active_bounds(r.detach())[0]
    g = torch.randn(1, 30, dtype=torch.float64)
    (v * g).sum().backward()
    np.testing.assert_allclose(r.grad.numpy(), g.numpy() @ layer.linear_map().A, atol=1e-12)


# ---------------------------------------------------------------- errors
def small():
    S = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return S, ["up", "mid", "out"], ["A", "B", "A_ext", "B_ext"]


def test_lb_greater_than_ub_names_flux():
    S, f, m = small()
    with pytest.raises(InputError, match="'mid'.*lower bound 2 > upper bound 1"):
        FluxAllocation(S, ["A_ext", "B_ext"], lb=[0, 2, 0], ub=[5, 1, 5], flux_ids=f,
                       metabolite_ids=m)


def test_infeasible_balances_name_bounds():
    S, f, m = small()
    with pytest.raises(InputError, match="Infeasible flux bounds") as err:
        FluxAllocation(S, ["A_ext", "B_ext"], lb=[1, 0, 0], ub=[5, 5, 0.5], flux_ids=f,
                       metabolite_ids=m)
    assert any(i.entity in ("up", "out") for i in err.value.issues)


def test_rank_problem_names_fluxes():
    S, f, m = small()
    S = np.hstack([S, [[1.0], [-1.0], [0.0], [0.0]]])  # bypass A -> B invisible in exchanges
    with pytest.raises(InputError, match="'mid'.*not determined"):
        FluxAllocation(S, ["A_ext", "B_ext"], eps=0.0, flux_ids=f + ["bypass"],
                       metabolite_ids=m)
    FluxAllocation(S, ["A_ext", "B_ext"], eps=1e-6, flux_ids=f + ["bypass"], metabolite_ids=m)


@pytest.mark.parametrize("bad", [np.zeros((3, 3)), np.zeros(3), np.zeros((2, 2, 2))])
def test_wrong_rate_shape(bad):
    S, f, m = small()
    layer = FluxAllocation(S, ["A_ext", "B_ext"], flux_ids=f, metabolite_ids=m)
    with pytest.raises(InputError, match=r"expected \(batch, 2\)"):
        layer(torch.tensor(bad))


def test_nan_rate_named():
    S, f, m = small()
    layer = FluxAllocation(S, ["A_ext", "B_ext"], flux_ids=f, metabolite_ids=m)
    with pytest.raises(InputError, match="'B_ext' in batch row 1 is nan"):
        layer(torch.tensor([[1.0, 1.0], [1.0, float("nan")]]))


def test_bad_construction_inputs():
    S, f, m = small()
    with pytest.raises(InputError, match="NaN"):
        FluxAllocation(S, [2, 3], lb=[0, float("nan"), 0])
    with pytest.raises(InputError, match="shape"):
        FluxAllocation(S, [2, 3], ub=[1, 2])
    with pytest.raises(InputError, match="'A' in flux 'up'"):
        FluxAllocation(np.where(S == 1.0, np.nan, S), [2, 3], flux_ids=f, metabolite_ids=m)
    with pytest.raises(InputError, match="unknown metabolite 'C'"):
        FluxAllocation(S, ["C"], metabolite_ids=m)
    with pytest.raises(InputError, match="both measured and balanced"):
        FluxAllocation(S, [2, 3], internal_rows=[0, 1, 2])
    with pytest.raises(InputError, match="weights has shape"):
        FluxAllocation(S, [2, 3], weights=[1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="'B_ext' must be finite and >= 0"):
        FluxAllocation(S, [2, 3], weights=[1.0, -1.0], metabolite_ids=m)


# ---------------------------------------------------------------- SBML + API
def test_from_sbml_conventions(tmp_path):
    layer = FluxAllocation.from_sbml(CHO, weights={"LAC_ext": 2.0})
    assert layer.n_fluxes == 30 and layer.measured_ids == CHO_MEASURED
    assert len(layer.network.internal) == 22
    assert float(layer.weights[2]) == 2.0
    layer2 = FluxAllocation.from_sbml(CHO, measured=["GLC_ext", "LAC_ext", "BIOMASS"])
    assert layer2.n_measured == 3
    with pytest.raises(InputError, match="unknown reaction 'NOPE'"):
        FluxAllocation.from_sbml(CHO, bounds={"NOPE": (0, 1)})
    with pytest.raises(InputError, match="not found"):
        FluxAllocation.from_sbml(tmp_path / "missing.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text(CHO.read_text().replace('stoichiometry="2"', 'stoichiometry="two"'))
    with pytest.raises(InputError, match="Invalid SBML"):
        FluxAllocation.from_sbml(bad)


def test_single_rate_vector_and_functional():
    S, f, m = small()
    layer = FluxAllocation(S, ["A_ext", "B_ext"], lb=[0, 0, 0], flux_ids=f, metabolite_ids=m)
    v, res = layer(torch.tensor([-1.0, 0.8], dtype=torch.float64))
    assert v.shape == (3,) and res.shape == (2,)
    r = torch.tensor([[-1.0, 0.8]], dtype=torch.float64)
    v2, _ = allocate_fluxes(S, r, [2, 3], lb=[0, 0, 0])
    np.testing.assert_allclose(v2[0].numpy(), v.numpy(), atol=1e-14)
    # chain up = mid = out: least squares of (-x + 1)^2 + (x - 0.8)^2 (+eps) -> x ~ 0.9
    np.testing.assert_allclose(v.numpy(), 0.9 / (1 + 5e-7 * 3) * np.ones(3), rtol=1e-9)
    np.testing.assert_allclose(res.numpy(), [0.1, 0.1], atol=1e-5)


def test_linear_map_formulas():
    lm = FluxAllocation.from_sbml(CHO).linear_map()
    assert lm.A.shape == (30, 9) and lm.R.shape == (9, 9)
    forms = lm.formulas()
    assert set(forms) == set(lm.flux_ids) and "GLC_ext" in forms["HK"]
    rates = dict(zip(lm.measured_ids, CHO_RATES))
    val = eval(forms["HK"], {}, rates)  # noqa: S307 - formulas are plain arithmetic
    assert abs(val - (lm.A[0] @ CHO_RATES + lm.b[0])) < 1e-12
