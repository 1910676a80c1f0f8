"""Tests of sbmlhybrid.media (fast: small nets, few epochs, one torch thread)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import Pipeline

from sbmlhybrid.cli.main import main
from sbmlhybrid.errors import SimulationError
from sbmlhybrid.media import (
    Campaign,
    SearchSpace,
    TransferMLPRegressor,
    constraints_from_table,
    generate_candidates,
)
from sbmlhybrid.media.candidates import feasible, latin_hypercube, level_permutations
from sbmlhybrid.media.cho_simulator import (
    CHO_PARAMETERS,
    CHO_PROBLEM,
    MEDIUM_INITIAL,
    AmiciCHOSimulator,
)
from sbmlhybrid.media.synthetic import SyntheticMediumBenchmark

torch.set_num_threads(1)
SMALL = dict(n_layers=4, width=16, n_members=3, max_epochs=60, patience=10)


def _func(x: np.ndarray, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return scale * (np.sin(3 * x[:, 0]) + x[:, 1] ** 2 - x[:, 2] * x[:, 3]) + shift


def _data(n: int, seed: int, d: int = 5, noise: float = 0.05, **kw) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, d))
    y = _func(x, **kw) + noise * rng.normal(size=n)
    return pd.DataFrame(x, columns=[f"c{i}" for i in range(d)]), y


@pytest.fixture(scope="module")
def source_model() -> TransferMLPRegressor:
    x, y = _data(600, 0)
    return TransferMLPRegressor(**dict(SMALL, max_epochs=150), batch_size=64,
                                random_state=0).pretrain(x, y)


def test_clone_get_params_and_cv_in_pipeline(source_model):
    est = TransferMLPRegressor(source=source_model, strategy="lp-ft", mi_features=3, **SMALL)
    c = clone(est)
    assert c.get_params()["mi_features"] == 3 and c.get_params()["strategy"] == "lp-ft"
    assert not hasattr(c, "net_")
    x, y = _data(60, 1, scale=1.3, shift=0.2)
    pipe = Pipeline([("model", est)])
    scores = cross_val_score(pipe, x, y, cv=KFold(3, shuffle=True, random_state=0))
    assert np.all(np.isfinite(scores)) and scores.mean() > 0.3
    fitted = clone(est).fit(x, y)
    assert fitted.selected_.sum() == 3  # MI selection ran inside fit
    assert fitted.score(x, y) > 0.5


def _layers(model) -> list[np.ndarray]:
    return [np.r_[w.detach().numpy().ravel(), b.detach().numpy().ravel()]
            for w, b in zip(model.net_.weights, model.net_.biases)]


def _source_layers(snap) -> list[np.ndarray]:
    e = snap.weights[0].shape[0]
    return [np.r_[w[:e].ravel(), b[:e].ravel()] for w, b in zip(snap.weights, snap.biases)]


@pytest.mark.parametrize("strategy,frozen", [
    ("head", [0, 1, 2]), ("lp-ft", [0, 1]), ("full", []), ("surgical", [0, 1]),
])
def test_strategies_freeze_exactly_the_intended_layers(source_model, strategy, frozen):
    x, y = _data(40, 2, scale=1.3, shift=0.2)
    est = TransferMLPRegressor(source=source_model, strategy=strategy, lpft_unfreeze=1,
                               surgical_depths=(2,), **SMALL).fit(x, y)
    before, after = _source_layers(source_model.source_snapshot_), _layers(est)
    for i in range(4):
        same = np.array_equal(before[i], after[i])
        assert same == (i in frozen), f"{strategy}: layer {i} unchanged={same}"


def test_lpft_unfreeze_candidates_chosen_by_target_cv(source_model):
    x, y = _data(40, 2, scale=1.3, shift=0.2)
    est = TransferMLPRegressor(source=source_model, strategy="lp-ft", lpft_unfreeze=(0, 2),
                               guard=True, **SMALL).fit(x, y)
    scores = est.lpft_cv_rmse_
    assert set(scores) == {0, 2} and est.lpft_unfreeze_ == min(scores, key=scores.get)
    assert est.guard_cv_rmse_["transfer"] == scores[est.lpft_unfreeze_]  # CV reused
    before, after = _source_layers(source_model.source_snapshot_), _layers(est)
    frozen = 3 - est.lpft_unfreeze_  # hidden layers 0..2, head 3
    assert [np.array_equal(before[i], after[i]) for i in range(3)] == [
        i < frozen for i in range(3)]


def test_new_component_gets_zero_initialised_trainable_rows(source_model):
    x, y = _data(40, 3, d=6)
    x = x.drop(columns=["c4"])  # missing source component -> source mean
    est = TransferMLPRegressor(source=source_model, strategy="lp-ft", **SMALL).fit(x, y)
    w0_src = source_model.source_snapshot_.weights[0][:3]
    w0 = est.net_.weights[0].detach().numpy()
    assert est.new_components_ == ["c5"] and est.missing_components_ == ["c4"]
    np.testing.assert_array_equal(w0[:, :5], w0_src)  # frozen input layer, old rows
    assert np.abs(w0[:, 5]).sum() > 0  # new row learned from its zero start
    assert est.predict(x).shape == (40,)


def test_ensemble_std_positive_and_coverage_sane():
    x, y = _data(400, 4, noise=0.1)
    xt, yt = _data(500, 5, noise=0.1)
    est = TransferMLPRegressor(**dict(SMALL, max_epochs=200), batch_size=64,
                               random_state=1).fit(x, y)
    mean, std = est.predict(xt, return_std=True)
    assert np.all(std > 0)
    cover = np.mean(np.abs(yt - mean) <= 1.645 * std)
    assert 0.8 <= cover <= 0.99, cover  # measured 0.94


def test_lpft_beats_scratch_at_small_n(source_model):
    # measured (seeds 0-2): RMSE ratio LP-FT / scratch = 0.19, 0.15, 0.17 at n = 20;
    # the bound leaves about a 2x margin for platform noise
    xt, yt = _data(500, 7, scale=1.3, shift=0.2)
    ratios = []
    for seed in range(3):
        x, y = _data(20, 10 + seed, scale=1.3, shift=0.2)
        rmse = {}
        for strat in ("lp-ft", "scratch"):
            m = TransferMLPRegressor(source=source_model, strategy=strat, random_state=seed,
                                     **SMALL).fit(x, y)
            rmse[strat] = np.sqrt(np.mean((m.predict(xt) - yt) ** 2))
        ratios.append(rmse["lp-ft"] / rmse["scratch"])
    assert np.mean(ratios) < 0.35, ratios


def _space() -> SearchSpace:
    return SearchSpace.from_table(pd.DataFrame({
        "component": ["glc", "gln", "nacl"], "unit": ["mM", "mM", "mM"],
        "min": [10, 1, 20], "max": [60, 8, 110], "levels": [5, "1;2;4;8", 5]}))


def test_candidates_satisfy_constraints_and_levels():
    space = _space()
    cons = constraints_from_table(pd.DataFrame({
        "name": ["osmolality", "cost"], "lower": [None, None], "upper": [300.0, 1.0],
        "offset": [100.0, 0.0], "glc": [1.0, 0.01], "gln": [1.0, 0.05], "nacl": [2.0, 0.001]}),
        space)
    rng = np.random.default_rng(0)
    top = latin_hypercube(space, 50, rng)
    cands = generate_candidates(space, 20000, rng, top=top, constraints=cons)
    assert len(cands) == 20000
    assert feasible(cands, cons).all()
    osm = 100 + cands @ np.array([1.0, 1.0, 2.0])
    assert osm.max() <= 300 + 1e-9
    assert np.all(cands >= space.lower - 1e-12) and np.all(cands <= space.upper + 1e-12)
    lev = level_permutations(space, 40, rng)
    assert set(lev[:, 1]) == {1.0, 2.0, 4.0, 8.0}
    assert np.all(np.bincount(np.searchsorted([1, 2, 4, 8], lev[:, 1])) == 10)


def test_campaign_saves_and_loads_identically(tmp_path):
    space = _space()
    rng = np.random.default_rng(1)
    x = pd.DataFrame(latin_hypercube(space, 80, rng), columns=space.components)
    y = np.sin(x["glc"] / 20) + 0.1 * x["gln"] - 0.001 * (x["nacl"] - 60) ** 2
    model = TransferMLPRegressor(**SMALL, random_state=0).pretrain(x, y)
    camp = Campaign(space, model, plate_size=8, n_candidates=2000, objective="titer", seed=3)
    plate = camp.ask()
    res = plate[["proposal_id", *space.components]].copy()
    res["titer"] = np.sin(res["glc"] / 20)
    camp.tell(res)
    path = tmp_path / "camp.pkl"
    camp.save(path)
    loaded = Campaign.load(path)
    pd.testing.assert_frame_equal(loaded.observations, camp.observations)
    assert loaded.round == camp.round and len(loaded.pending) == 0
    pd.testing.assert_frame_equal(loaded.ask(), camp.ask())
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


@pytest.fixture(scope="module")
def cho_sim() -> AmiciCHOSimulator:
    return AmiciCHOSimulator()  # compiled CHO fed-batch model (from the cache)


@pytest.fixture(scope="module")
def bench(cho_sim) -> SyntheticMediumBenchmark:
    return SyntheticMediumBenchmark(n_components=20, seed=0, simulate_outcomes=cho_sim)


def test_synthetic_generator_through_amici_cho_model(bench):
    assert len(bench.components) >= 20 and bench.simulate_outcomes.__class__ is AmiciCHOSimulator
    assert isinstance(SyntheticMediumBenchmark(seed=0).simulate_outcomes, AmiciCHOSimulator)
    x, y = bench.sample(50, bench.source_line, np.random.default_rng(0))
    assert x.shape == (50, 20) and y.shape == (50, 4) and np.isfinite(y).all()
    titer, peak, viability, ivcd = y.T
    assert np.all(titer > 0) and np.all(peak > 0.3) and np.all(ivcd > 0)
    assert np.all((viability > 0) & (viability < 1.1))  # noisy (5 % log-normal)
    far = bench.cell_line(0.2).need
    near = bench.cell_line(0.9).need
    src = bench.source_line.need
    assert np.abs(near - src).sum() < np.abs(far - src).sum()


def test_medium_maps_onto_cho_kinetics(bench):
    line = bench.source_line
    mid = (bench.lower + bench.upper) / 2
    m = bench.multipliers(mid[None], line)
    assert m.shape == (1, len(CHO_PARAMETERS))
    i_glc, i_gln = CHO_PARAMETERS.index("Glc0"), CHO_PARAMETERS.index("Gln0")
    assert m[0, i_glc] == pytest.approx(mid[0] / MEDIUM_INITIAL["Glc0"])
    assert m[0, i_gln] == pytest.approx(mid[1] / MEDIUM_INITIAL["Gln0"])
    # toxic excess: the most toxic component at its maximum slows growth, raises death
    j = int(np.argmax(line.toxic))
    hi = mid.copy()
    hi[j] = bench.upper[j]
    at_onset = mid.copy()
    at_onset[j] = bench.lower[j] + line.tox_onset[j] * (bench.upper[j] - bench.lower[j])
    # remove the (monotone) saturating need of j so only the toxic term differs
    plain = SyntheticMediumBenchmark(n_components=20, seed=0, simulate_outcomes=lambda m: m)
    plain.source_line.need[j] = 0.0
    plain.source_line.pairs[:] = [0, 1]  # pairs (Glc, Gln) are not in the interaction term
    plain.osm_coef[:] = 0.0
    m_hi, m_on = plain.multipliers(np.stack([hi, at_onset]), plain.source_line)
    mu, kd0 = CHO_PARAMETERS.index("mu_max"), CHO_PARAMETERS.index("kd0")
    assert m_hi[mu] < m_on[mu] and m_hi[kd0] > m_on[kd0]
    # osmolality penalty alone (needs, toxicity, interactions off): growth exp(-0.3 dev^2),
    # hyperosmotic death exp(+0.3 dev^2), productivity exp(0.15 dev), dev = (osm - opt)/100
    osm_only = SyntheticMediumBenchmark(n_components=20, seed=0, simulate_outcomes=lambda m: m)
    for arr in ("need", "toxic", "pair_effect"):
        getattr(osm_only.source_line, arr)[:] = 0.0
    x = np.stack([mid, mid])
    x[1, bench.components.index("NaCl")] = bench.upper[bench.components.index("NaCl")]
    dev = (osm_only.osmolality(x) - osm_only.source_line.osm_opt) / 100.0
    m = osm_only.multipliers(x, osm_only.source_line)
    beta = CHO_PARAMETERS.index("beta_mab")
    np.testing.assert_allclose(np.log(m[:, mu]), -0.3 * dev**2)
    np.testing.assert_allclose(np.log(m[:, kd0]), 0.3 * np.maximum(dev, 0) ** 2)
    np.testing.assert_allclose(np.log(m[:, beta]), 0.15 * np.clip(dev, -1, 2))
    assert dev[1] > dev[0]  # more NaCl, more osmolality


def test_rho_one_reproduces_the_source_line(bench):
    x, _ = bench.sample(40, bench.source_line, np.random.default_rng(3))
    x = x.to_numpy()
    same = bench.cell_line(1.0, seed=5)
    np.testing.assert_allclose(bench.multipliers(x, same),
                               bench.multipliers(x, bench.source_line), rtol=1e-12)
    # multipliers equal to rounding; outcomes then to the solver's rtol (1e-8) amplified
    np.testing.assert_allclose(bench.outcomes(x, same), bench.outcomes(x, bench.source_line),
                               rtol=1e-6)


def test_amici_simulator_nominal_equals_cho_problem_simulation(cho_sim):
    """Multipliers 1 = the bundled problem's fed_standard condition at nominal parameters."""
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import load_problem

    out = cho_sim(np.ones((2, len(CHO_PARAMETERS))))
    np.testing.assert_array_equal(out[0], out[1])
    objective = create_objective(load_problem(CHO_PROBLEM))
    table = objective.simulate(conditions=["fed_standard"])  # independent PEtab path
    end = table[table["time"] == 14.0].set_index("observableId")["simulation"]
    xv_end, xd_end = end["obs_Xv"], end["obs_Xd"]
    assert out[0, 0] == pytest.approx(end["obs_mAb"] / 1000.0, rel=1e-6)
    assert out[0, 2] == pytest.approx(xv_end / (xv_end + xd_end), rel=1e-6)
    # stored truth of the problem (make_problem.py, rtol 1e-10)
    truth = pd.read_csv(CHO_PROBLEM.parent / "true_trajectories_train.tsv", sep="\t")
    truth = truth[(truth.simulationConditionId == "fed_standard") & (truth.time == 14.0)]
    mab = float(truth.loc[truth.observableId == "obs_mAb", "simulation"].iloc[0])
    assert out[0, 0] == pytest.approx(mab / 1000.0, rel=1e-5)
    (t, y), = objective.dense_simulation(None, ["fed_standard"], n_time=cho_sim.n_time)
    np.testing.assert_allclose(t, cho_sim.times)
    xv = y[:, objective.amici_objective.amici_model.get_observable_ids().index("obs_Xv")]
    assert out[0, 1] == pytest.approx(xv.max(), rel=1e-6)
    assert out[0, 3] == pytest.approx(np.trapezoid(xv, t), rel=1e-6)


def test_amici_simulator_flags_failed_integrations():
    m = np.ones((3, len(CHO_PARAMETERS)))
    with pytest.raises(SimulationError, match="3 of 3"):
        AmiciCHOSimulator(max_steps=5)(m)
    sim = AmiciCHOSimulator(max_steps=5, on_failure="nan")
    assert np.isnan(sim(m)).all() and sim.last_failed_.tolist() == [0, 1, 2]
    with pytest.raises(Exception, match="positive"):
        sim(-m)


# ------------------------------------------------------------------------ CLI
def _write(df: pd.DataFrame, path) -> str:
    df.to_csv(path, index=False)
    return str(path)


@pytest.fixture()
def cli_files(tmp_path):
    x, y = _data(60, 11, d=4)
    x = x.drop(columns=["c3"])
    x.columns = ["glc", "gln", "nacl"]
    train = x.assign(yield_=y).rename(columns={"yield_": "yield"})
    return tmp_path, train


def test_cli_end_to_end(cli_files):
    tmp, train = cli_files
    data = _write(train, tmp / "d.csv")
    train.to_excel(tmp / "t.xlsx", index=False)
    space = _write(pd.DataFrame({"component": ["glc", "gln", "nacl"], "unit": ["mM"] * 3,
                                 "min": [0, 0, 0], "max": [1, 1, 1], "levels": [5, 5, 5]}),
                   tmp / "space.csv")
    assert main(["media", "pretrain", "--data", data, "--model-out", str(tmp / "m.pkl"),
                 "--out", str(tmp / "curve.csv"), "--epochs", "30", "--layers", "3"]) == 0
    assert main(["media", "transfer", "--model", str(tmp / "m.pkl"), "--data",
                 str(tmp / "t.xlsx"), "--model-out", str(tmp / "t.pkl"), "--out",
                 str(tmp / "fit.csv"), "--strategy", "head-only"]) == 0
    assert main(["media", "propose", "--model", str(tmp / "t.pkl"), "--space", space,
                 "--n", "6", "--candidates", "500", "--out", str(tmp / "plate.csv"),
                 "--campaign", str(tmp / "c.pkl")]) == 0
    plate = pd.read_csv(tmp / "plate.csv")
    assert len(plate) == 6 and {"predicted", "std", "acquisition"} <= set(plate.columns)
    assert len(pd.read_csv(tmp / "fit.csv")) == 60 and (tmp / "c.pkl").exists()


@pytest.mark.parametrize("case,column", [
    ("missing_target", "yield"), ("missing_component", "gln"), ("nan", "nacl"),
    ("constant", "glc"), ("unit_missing", "unit"),
])
def test_cli_bad_input_exit_2_names_column(cli_files, capsys, case, column):
    tmp, train = cli_files
    args = ["media", "pretrain", "--model-out", str(tmp / "m.pkl"), "--out", str(tmp / "c.csv")]
    space = pd.DataFrame({"component": ["glc", "gln", "nacl"], "unit": ["mM"] * 3,
                          "min": [0, 0, 0], "max": [1, 1, 1], "levels": [5, 5, 5]})
    if case == "missing_target":
        train = train.drop(columns=["yield"])
    elif case == "missing_component":
        args += ["--components", "glc,gln,nacl"]
        train = train.drop(columns=["gln"])
    elif case == "nan":
        train.loc[7, "nacl"] = np.nan
    elif case == "constant":
        train["glc"] = 1.0
    elif case == "unit_missing":
        space.loc[1, "unit"] = None
        args += ["--space", _write(space, tmp / "s.csv")]
    args += ["--data", _write(train, tmp / "bad.csv")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"column {column}" in err, err
