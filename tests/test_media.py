"""Tests of sbmlhybrid.media (fast: small nets, few epochs, one torch thread)."""

from __future__ import annotations

import copy
import io
import json
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import Pipeline

from sbmlhybrid.cli.main import main
from sbmlhybrid.cli.media import STRATEGY_HELP
from sbmlhybrid.errors import InputError, SimulationError
from sbmlhybrid.media import (
    STRATEGIES,
    Campaign,
    SearchSpace,
    TransferMLPRegressor,
    constraints_from_table,
    generate_candidates,
    load_model,
    propose,
    save_model,
)
from sbmlhybrid.media.candidates import feasible, latin_hypercube, level_permutations
from sbmlhybrid.media.cho_simulator import (
    CHO_PARAMETERS,
    CHO_PROBLEM,
    MEDIUM_INITIAL,
    AmiciCHOSimulator,
)
from sbmlhybrid.media.strategies import canonical_strategy, depth_candidates
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


def _unchanged(source_model, est) -> list[bool]:
    """Per layer (4 here): are weight and bias bit-identical to the pretrained ones?"""
    before, after = _source_layers(source_model.source_snapshot_), _layers(est)
    return [np.array_equal(b, a) for b, a in zip(before, after)]


@pytest.mark.parametrize("strategy,frozen", [
    ("head", [0, 1, 2]), ("lp-ft", []), ("staged", [0, 1]), ("full", []), ("surgical", [0, 1]),
])
def test_strategies_freeze_exactly_the_intended_layers(source_model, strategy, frozen):
    x, y = _data(40, 2, scale=1.3, shift=0.2)
    est = TransferMLPRegressor(source=source_model, strategy=strategy, staged_depths=1,
                               surgical_depths=(2,), **SMALL).fit(x, y)
    assert _unchanged(source_model, est) == [i in frozen for i in range(4)], strategy


def test_lpft_is_linear_probe_then_whole_network_at_smaller_lr(source_model):
    x, y = _data(40, 2, scale=1.3, shift=0.2)
    est = TransferMLPRegressor(source=source_model, strategy="lp-ft", **SMALL).fit(x, y)
    assert est.lr_finetune < est.lr
    assert not any(_unchanged(source_model, est))  # every layer moved from the source
    assert list(est.history_) == ["stage2"]  # stage 1 is the closed-form ridge probe
    # the probe alone leaves the body untouched: the body's change is stage 2's
    head = TransferMLPRegressor(source=source_model, strategy="head", **SMALL).fit(x, y)
    assert _unchanged(source_model, head) == [True, True, True, False]


@pytest.mark.parametrize("depth", [1, 2])
def test_staged_unfreezes_only_the_last_k_layers(source_model, depth):
    x, y = _data(40, 2, scale=1.3, shift=0.2)
    est = TransferMLPRegressor(source=source_model, strategy="staged", staged_depths=depth,
                               **SMALL).fit(x, y)
    # layers 0..2 hidden, 3 the head: the head and the `depth` hidden layers before it move
    assert _unchanged(source_model, est) == [i < 3 - depth for i in range(4)]
    assert est.staged_depth_ == depth and est.staged_cv_rmse_ == {}  # one candidate: no CV


def test_staged_depth_chosen_by_target_cv(source_model):
    x, y = _data(40, 2, scale=1.3, shift=0.2)
    est = TransferMLPRegressor(source=source_model, strategy="staged", staged_depths=(0, 2),
                               guard=True, **SMALL).fit(x, y)
    scores = est.staged_cv_rmse_
    assert set(scores) == {0, 2} and est.staged_depth_ == min(scores, key=scores.get)
    assert est.guard_cv_rmse_["transfer"] == scores[est.staged_depth_]  # CV reused
    assert _unchanged(source_model, est)[:3] == [i < 3 - est.staged_depth_ for i in range(3)]
    default = TransferMLPRegressor(source=source_model, strategy="staged", **SMALL).fit(x, y)
    assert set(default.staged_cv_rmse_) == {1, 2}  # L = 4: candidates 1, 2, (L-1)//2, L-2


def test_depth_candidates_and_strategy_names():
    assert depth_candidates("staged", 5, None) == [1, 2, 3]
    assert depth_candidates("staged", 20, None) == [1, 2, 9, 18]
    assert depth_candidates("staged", 4, (0, 9)) == [0, 3]  # clipped to [0, L-1]
    assert depth_candidates("surgical", 6, None) == [0, 2, 4, 5]
    assert depth_candidates("lp-ft", 6, None) == [0]
    assert canonical_strategy("LPFT") == "lp-ft" and canonical_strategy("staged") == "staged"
    with pytest.raises(InputError, match="staged"):
        canonical_strategy("gradual")
    assert all(name in STRATEGY_HELP for name in STRATEGIES)


def test_new_component_gets_zero_initialised_trainable_rows(source_model):
    x, y = _data(40, 3, d=6)
    x = x.drop(columns=["c4"])  # missing source component -> source mean
    est = TransferMLPRegressor(source=source_model, strategy="staged", **SMALL).fit(x, y)
    w0_src = source_model.source_snapshot_.weights[0][:3]
    w0 = est.net_.weights[0].detach().numpy()
    assert est.new_components_ == ["c5"] and est.missing_components_ == ["c4"]
    np.testing.assert_array_equal(w0[:, :5], w0_src)  # staged: layer 0 stays frozen
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
    # measured (seeds 0-2): RMSE ratio LP-FT / scratch = 0.21, 0.16, 0.17 at n = 20;
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
    path = tmp_path / "camp.zip"
    camp.save(path)
    loaded = Campaign.load(path)
    pd.testing.assert_frame_equal(loaded.observations, camp.observations)
    assert loaded.round == camp.round and len(loaded.pending) == 0
    pd.testing.assert_frame_equal(loaded.ask(), camp.ask())
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file
    assert zipfile.ZipFile(path).namelist() == ["meta.json", "tensors.pt"]


def test_propose_reports_mean_and_uncertainty_per_proposal(source_model):
    space = SearchSpace.from_table(pd.DataFrame({
        "component": [f"c{i}" for i in range(5)], "unit": ["mM"] * 5, "min": [0.0] * 5,
        "max": [1.0] * 5, "levels": [5] * 5}))
    plate = propose(source_model, space, 12, np.random.default_rng(0), n_candidates=3000)
    assert len(plate) == 12 and np.all(plate["std"] > 0)
    mean, std = source_model.predict(plate[space.components], return_std=True)
    np.testing.assert_allclose(plate["predicted"], mean, rtol=1e-6)
    np.testing.assert_allclose(plate["std"], std, rtol=1e-6)
    np.testing.assert_allclose(plate["acquisition"], mean + 2.0 * std, rtol=1e-6)  # UCB


# ------------------------------------------------------------------ model files
class _Payload:
    """Pickles to "open(path, 'w')": unpickling it creates ``path``."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _transferred(source_model) -> TransferMLPRegressor:
    x, y = _data(40, 3, d=6)  # c5 is new to the source
    return TransferMLPRegressor(source=source_model, strategy="staged", staged_depths=(1, 2),
                                mi_features=4, guard=True, **SMALL).fit(x, y)


def test_model_file_round_trip_predicts_identically(source_model, tmp_path):
    x, _ = _data(200, 8, d=6)
    for model, cols in ((source_model, x.columns[:5]), (_transferred(source_model), x.columns)):
        path = tmp_path / "m.zip"
        save_model(model, path)
        loaded = load_model(path)
        for a, b in zip(model.predict(x[cols], return_std=True),
                        loaded.predict(x[cols], return_std=True)):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
        params = {k: v for k, v in model.get_params(deep=False).items() if k != "source"}
        assert {k: v for k, v in loaded.get_params(deep=False).items() if k != "source"} == params
        assert loaded.strategy_ == model.strategy_ and loaded.history_.keys() == (
            model.history_.keys())
    assert loaded.staged_cv_rmse_ == model.staged_cv_rmse_ and loaded.new_components_ == ["c5"]
    np.testing.assert_array_equal(loaded.selected_, model.selected_)
    meta = json.loads(zipfile.ZipFile(path).read("meta.json"))
    assert meta["format"] == "sbmlhybrid.media.model" and meta["version"] == 2
    assert meta["fitted"]["x_min"] == model.x_min_.tolist()  # scalers as plain lists
    # the loaded model still transfers: its source snapshot came along
    again = clone(loaded).fit(*_data(40, 4, d=6))
    assert again.strategy_ == "staged" and not list(tmp_path.glob(".*.tmp"))


def _evil_files(tmp_path, marker, good: bytes) -> dict[str, bytes]:
    """Malicious model files whose loading by pickle would create ``marker``."""
    tensors = io.BytesIO()
    torch.save({"net.w0": _Payload(marker)}, tensors)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:  # our container around a malicious tensors.pt
        zf.writestr("meta.json", zipfile.ZipFile(io.BytesIO(good)).read("meta.json"))
        zf.writestr("tensors.pt", tensors.getvalue())
    return {
        "bare": pickle.dumps(_Payload(marker)),
        "protocol0": pickle.dumps(_Payload(marker), protocol=0),
        "old_tag": pickle.dumps({"format": "sbmlhybrid.media.model/1",
                                 "model": _Payload(marker)}),
        "container": inner.getvalue(),
    }


def test_malicious_model_files_are_refused_unexecuted(cli_files, capsys):
    tmp, train = cli_files
    control = tmp / "control"
    pickle.loads(pickle.dumps(_Payload(control)))  # the payload is live when unpickled ...
    assert control.exists()
    good = TransferMLPRegressor(n_layers=2, width=4, n_members=2, max_epochs=2).pretrain(
        train[["glc", "gln", "nacl"]], train["yield"])  # matches the search space below
    save_model(good, tmp / "good.zip")
    marker = tmp / "pwned"
    data = _write(train, tmp / "d.csv")
    space = _write(pd.DataFrame({"component": ["glc", "gln", "nacl"], "unit": ["mM"] * 3,
                                 "min": [0, 0, 0], "max": [1, 1, 1], "levels": [5, 5, 5]}),
                   tmp / "space.csv")
    for name, payload in _evil_files(tmp, marker, (tmp / "good.zip").read_bytes()).items():
        evil = tmp / f"{name}.bin"
        evil.write_bytes(payload)
        with pytest.raises(InputError, match="media model file|old pickle format"):
            load_model(evil)
        with pytest.raises(InputError, match="media campaign file|pickle"):
            Campaign.load(evil)
        assert main(["media", "transfer", "--model", str(evil), "--data", data, "--model-out",
                     str(tmp / "t.zip"), "--out", str(tmp / "fit.csv")]) == 2
        assert main(["media", "propose", "--model", str(tmp / "good.zip"), "--space", space,
                     "--out", str(tmp / "p.csv"), "--campaign", str(evil)]) == 2
        assert str(evil) in capsys.readouterr().err
        assert not marker.exists(), name  # ... but loading never unpickled it
    assert not (tmp / "t.zip").exists()


def test_truncated_or_foreign_model_file_raises_input_error(source_model, tmp_path):
    path = tmp_path / "m.zip"
    save_model(source_model, path)
    good = path.read_bytes()
    cut = tmp_path / "cut.zip"
    for n in (0, 3, 100, len(good) // 2, len(good) - 22, len(good) - 1):
        cut.write_bytes(good[:n])
        with pytest.raises(InputError, match="not a readable media model file"):
            load_model(cut)
    other = tmp_path / "other.zip"  # a zip, but torch's own checkpoint format
    torch.save({"w": torch.zeros(2)}, other)
    with pytest.raises(InputError, match="exactly meta.json and tensors.pt"):
        load_model(other)
    meta = json.loads(zipfile.ZipFile(path).read("meta.json"))
    meta["fitted"]["x_min"] = meta["fitted"]["x_min"][:-1]  # well-formed, inconsistent
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("meta.json", json.dumps(meta))
        zf.writestr("tensors.pt", zipfile.ZipFile(path).read("tensors.pt"))
    with pytest.raises(InputError, match="damaged or incompatible.*x_min"):
        load_model(other)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.zip")
    with pytest.raises(InputError, match="cannot be read"):
        load_model(tmp_path)  # a folder


def _legacy(model: TransferMLPRegressor) -> TransferMLPRegressor:
    """The model as a version-1 estimator: "lp-ft" with ``lpft_unfreeze`` (today's staged)."""
    old = copy.deepcopy(model)
    d = old.__dict__
    d["lpft_unfreeze"], d["lpft_unfreeze_"] = d.pop("staged_depths"), d.pop("staged_depth_")
    d["lpft_cv_rmse_"] = d.pop("staged_cv_rmse_")
    d["strategy"] = d["strategy_"] = "lp-ft"
    return old


def test_old_pickle_model_file_says_how_to_resave(source_model, tmp_path, capsys):
    model = _transferred(source_model)
    old, new = tmp_path / "old.pkl", tmp_path / "new.zip"
    old.write_bytes(pickle.dumps({"format": "sbmlhybrid.media.model/1", "model": _legacy(model)}))
    with pytest.raises(InputError, match="old pickle format") as err:
        load_model(old)
    assert "re-save" in str(err.value) and "media resave OLD NEW --trust-pickle" in str(err.value)
    assert main(["media", "resave", str(old), str(new)]) == 2  # no --trust-pickle
    assert "--trust-pickle" in capsys.readouterr().err and not new.exists()
    assert main(["media", "resave", str(old), str(new), "--trust-pickle"]) == 0
    loaded = load_model(new)
    x, _ = _data(50, 9, d=6)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.strategy == loaded.strategy_ == "staged" and loaded.staged_depths == (1, 2)
    assert loaded.staged_depth_ == model.staged_depth_
    camp_old = tmp_path / "camp.pkl"
    camp = Campaign(_space(), model, plate_size=4)
    camp_old.write_bytes(pickle.dumps({"format": "sbmlhybrid.media.campaign/1",
                                       **camp.__dict__}))
    with pytest.raises(InputError, match="campaign file is in the old pickle format"):
        Campaign.load(camp_old)
    camp.model = _legacy(model)  # a version-1 campaign: its "lp-ft" is today's "staged"
    camp_old.write_bytes(pickle.dumps({"format": "sbmlhybrid.media.campaign/1",
                                       **camp.__dict__}))
    assert main(["media", "resave", str(camp_old), str(tmp_path / "c.zip"),
                 "--trust-pickle"]) == 0
    resumed = Campaign.load(tmp_path / "c.zip")
    assert resumed.strategy == resumed.model.strategy == "staged" and resumed.plate_size == 4
    assert resumed.rng.bit_generator.state == camp.rng.bit_generator.state
    stray = tmp_path / "stray.pkl"  # a pickle without a version-1 tag is never unpickled
    stray.write_bytes(pickle.dumps(_Payload(tmp_path / "pwned")))
    assert main(["media", "resave", str(stray), str(new), "--trust-pickle"]) == 2
    assert not (tmp_path / "pwned").exists()


@pytest.fixture(scope="module")
def cho_sim() -> AmiciCHOSimulator:
    return AmiciCHOSimulator()  # compiled CHO fed-batch model (from the cache)


@pytest.fixture(scope="module")
def bench(cho_sim) -> SyntheticMediumBenchmark:
    return SyntheticMediumBenchmark(n_components=20, seed=0, simulate_outcomes=cho_sim)


def test_synthetic_generator_through_amici_cho_model(bench):
    assert len(bench.components) >= 20
    assert isinstance(SyntheticMediumBenchmark(seed=0).simulate_outcomes, AmiciCHOSimulator)
    x, y = bench.sample(50, bench.source_line, np.random.default_rng(0))
    assert x.shape == (50, 20) and y.shape == (50, 4) and np.isfinite(y).all()
    # noisy samples = the CHO simulation times log-normal noise of sd noise_sd (0.05; measured
    # sd 0.048, mean 8e-4 over the 200 values)
    log_noise = np.log(y / bench.outcomes(x.to_numpy(), bench.source_line))
    assert abs(log_noise.std() - bench.noise_sd) < 0.2 * bench.noise_sd
    assert abs(log_noise.mean()) < 0.01
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

    out = cho_sim(np.ones((1, len(CHO_PARAMETERS))))
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
    assert main(["media", "pretrain", "--data", data, "--model-out", str(tmp / "m.zip"),
                 "--out", str(tmp / "curve.csv"), "--epochs", "30", "--layers", "3"]) == 0
    assert main(["media", "transfer", "--model", str(tmp / "m.zip"), "--data",
                 str(tmp / "t.xlsx"), "--model-out", str(tmp / "t.zip"), "--out",
                 str(tmp / "fit.csv"), "--strategy", "head-only"]) == 0
    assert main(["media", "propose", "--model", str(tmp / "t.zip"), "--space", space,
                 "--n", "6", "--candidates", "500", "--out", str(tmp / "plate.csv"),
                 "--campaign", str(tmp / "c.zip")]) == 0
    plate = pd.read_csv(tmp / "plate.csv")
    assert len(plate) == 6 and {"predicted", "std", "acquisition"} <= set(plate.columns)
    assert len(pd.read_csv(tmp / "fit.csv")) == 60 and (tmp / "c.zip").exists()
    assert load_model(tmp / "t.zip").strategy_ == "head"
    assert main(["media", "propose", "--model", str(tmp / "t.zip"), "--space", space,
                 "--n", "6", "--candidates", "500", "--out", str(tmp / "plate2.csv"),
                 "--campaign", str(tmp / "c.zip")]) == 0  # resumes the saved campaign
    again = pd.read_csv(tmp / "plate2.csv")
    assert again["round"].tolist() == [2] * 6 and again["proposal_id"].min() == 6


@pytest.mark.parametrize("case,column", [
    ("missing_target", "yield"), ("missing_component", "gln"), ("nan", "nacl"),
    ("constant", "glc"), ("unit_missing", "unit"),
])
def test_cli_bad_input_exit_2_names_column(cli_files, capsys, case, column):
    tmp, train = cli_files
    args = ["media", "pretrain", "--model-out", str(tmp / "m.zip"), "--out", str(tmp / "c.csv")]
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
