"""One front door (`sbmlhybrid.load_problem` / `create_objective`), one objective protocol,
and `fit` / `profile` / `sample` on SciML and hybrid problems from the library and the CLI.

References: the PEtab v1/v2 suites' and the PEtab SciML suite's log-likelihoods and
simulations (their own tolerances), central finite differences, and (bare SBML) the same
likelihood computed from the PEtab v1 door's simulation table.

Small problems for fits: PEtab SciML case 003 (pre-initialization network, two experiments)
and a `hybridize()` problem written with `export_sciml_problem` (network unrolled into the
SBML, data simulated from it), both with mechanistic bounds +-30 % around the data's values
and only the last layer's bias of the network estimated (4 free parameters; the suite's
problems have 54), so that a few fides starts converge in seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
import yaml
from torch import nn

import sbmlhybrid as sh
from sbmlhybrid.analysis import read_fit
from sbmlhybrid.cli.main import main
from sbmlhybrid.errors import NotSupportedError
from sbmlhybrid.hybrid import HYBRID_CODEGEN, NetworkTerm, codegen_of, compile_hybrid
from sbmlhybrid.hybrid import create_hybrid_objective as removed_create_hybrid_objective
from sbmlhybrid.optimize import MiniBatchOptimizer
from sbmlhybrid.optimize.multistart import read_work
from sbmlhybrid.problem import Problem as ProblemV1
from sbmlhybrid.problem import SolverSettings
from sbmlhybrid.problem.v2 import ProblemV2
from sbmlhybrid.sciml import SciMLObjective, SciMLProblem
from sbmlhybrid.sciml.importer import SCIML_SOLVER
from tests.conftest import REPO, SHARED, fd_gradient

SCIML = SHARED / "petab_sciml_testsuite" / "sciml_problem_import"
V1 = SHARED / "petab_test_suite" / "v1.0.0" / "sbml" / "0001"
V2 = SHARED / "petab_test_suite" / "v2.0.0" / "sbml" / "0001"
TINY = REPO / "tests" / "data" / "tiny"
BIAS = "net1.parameters[layer3].bias"
needs_suites = pytest.mark.skipif(not (SCIML.exists() and V1.exists() and V2.exists()),
                                  reason="../shared test suites absent")


def _solution(folder: Path, name: str) -> dict:
    return yaml.safe_load((folder / name).read_text())


#: Mechanistic bounds of the small problems: +-30 % around the values the data come from
#: (the suite's [0, 15] makes the oscillator's likelihood multimodal for a 3-start fit).
MECH_BOUNDS = {"alpha": (0.9, 1.7), "delta": (1.3, 2.3), "beta": (0.6, 1.2)}


def _estimate_only(folder: Path, target: str, net_row: str,
                   net_bounds: tuple[float, float] = (-5.0, 5.0)) -> None:
    """`MECH_BOUNDS`; network frozen except the entries `target` maps to, which get
    `net_bounds` (the suite leaves networks unbounded; profiles need bounds)."""
    pdf = pd.read_csv(folder / "parameters.tsv", sep="\t")
    for pid, (lo, hi) in MECH_BOUNDS.items():
        pdf.loc[pdf.parameterId == pid, ["lowerBound", "upperBound"]] = lo, hi
    pdf.loc[pdf["parameterId"] == net_row, "estimate"] = 0
    extra = {"parameterId": "net1_estimated", "parameterScale": "lin",
             "lowerBound": net_bounds[0], "upperBound": net_bounds[1], "nominalValue": "array",
             "estimate": 1}
    pd.concat([pdf, pd.DataFrame([extra])]).to_csv(folder / "parameters.tsv", sep="\t",
                                                   index=False)
    with (folder / "mapping.tsv").open("a") as fh:
        fh.write(f"net1_estimated\t{target}\n")


def _small_sciml(tmp: Path) -> Path:
    """Case 003 with 4 free parameters (pre-initialization network in torch)."""
    folder = tmp / "sciml003"
    shutil.copytree(SCIML / "003" / "petab", folder)
    _estimate_only(folder, BIAS, "net1_ps")
    return folder / "problem.yaml"


def _lv_base(tmp: Path) -> ProblemV1:
    """The Lotka-Volterra model and data of case 001 as a PEtab v1 problem (gamma known)."""
    src = SCIML / "001" / "petab"
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "lv.xml", tmp / "lv.xml")
    meas = pd.read_csv(src / "measurements.tsv", sep="\t")
    meas.rename(columns={"experimentId": "simulationConditionId"}).to_csv(
        tmp / "measurements.tsv", sep="\t", index=False)
    shutil.copy(src / "observables.tsv", tmp / "observables.tsv")
    pd.DataFrame({"conditionId": ["e1"]}).to_csv(tmp / "conditions.tsv", sep="\t", index=False)
    pdf = pd.read_csv(src / "parameters.tsv", sep="\t")
    pdf[~pdf["parameterId"].str.startswith("net")].to_csv(tmp / "parameters.tsv", sep="\t",
                                                          index=False)
    (tmp / "problem.yaml").write_text(
        "format_version: 1\nparameter_file: parameters.tsv\nproblems:\n- sbml_files: [lv.xml]\n"
        "  condition_files: [conditions.tsv]\n  measurement_files: [measurements.tsv]\n"
        "  observable_files: [observables.tsv]\n")
    return sh.load_problem(tmp / "problem.yaml",
                           solver=SolverSettings(rtol=1e-10, atol=1e-12, max_steps=100_000))


def _small_hybrid(tmp: Path) -> Path:
    """`hybridize()` inputs written as files (`export_sciml_problem`): LV with gamma replaced
    by a 2-3-1 tanh network in the SBML (gamma = 0.8 + a small seeded term: the oscillator
    stays bounded), data simulated from it at its nominal parameters plus N(0, 0.05) noise
    (the observables' sigma); 4 free parameters, the output bias within [0.3, 1.5] (start
    points uniform there: PyTorch's initialization falls outside)."""
    from sbmlhybrid.sciml.problem_export import export_sciml_problem

    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    with torch.no_grad():
        module[2].weight.mul_(0.1)
        module[2].bias.fill_(0.8)
    term = NetworkTerm("net1", module, ["prey", "predator"], ["gamma"], kind="parameter",
                       input_scales={"prey": (0.0, 1.0), "predator": (0.0, 1.0)})
    path = export_sciml_problem(_lv_base(tmp / "base"), [term], tmp / "hybrid")
    sim = sh.create_objective(sh.load_problem(path)).simulate()
    keys = ["observableId", "experimentId", "time"]
    meas = pd.read_csv(path.parent / "measurements.tsv", sep="\t")
    meas = meas.merge(sim[[*keys, "simulation"]], on=keys, how="left")
    noise = np.random.default_rng(0).normal(0.0, 0.05, len(meas))
    meas.assign(measurement=meas.simulation + noise).drop(columns="simulation").to_csv(
        path.parent / "measurements.tsv", sep="\t", index=False)
    _estimate_only(path.parent, "net1.parameters[layer_2].bias", "net1_ps", (0.3, 1.5))
    return path


# ---- 1. one front door --------------------------------------------------------------------
@needs_suites
def test_load_problem_returns_one_problem_type(tmp_path) -> None:
    """PEtab v1, PEtab v2, PEtab SciML and bare SBML: one `Problem`, the right concrete
    class, and the reference log-likelihood of each suite case."""
    data = pd.read_csv(TINY / "measurements.tsv", sep="\t")
    a = data[(data.observableId == "obs_a") & (data.simulationConditionId == "c0")]
    a = a.assign(observableId="obs_A", noiseParameters=0.05)  # c0 changes nothing
    a.to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    loaded = {"v1": sh.load_problem(V1 / "_0001.yaml"), "v2": sh.load_problem(V2 / "_0001.yaml"),
              "sciml": sh.load_problem(SCIML / "003" / "petab" / "problem.yaml"),
              "sbml": sh.load_problem(TINY / "model.xml", tmp_path / "a.tsv")}
    for kind, cls in (("v1", ProblemV1), ("v2", ProblemV2), ("sciml", SciMLProblem),
                      ("sbml", ProblemV1)):
        assert isinstance(loaded[kind], sh.Problem) and type(loaded[kind]) is cls, kind
    for kind, folder, name in (("v1", V1, "_0001_solution.yaml"),
                               ("v2", V2, "_0001_solution.yaml"),
                               ("sciml", SCIML / "003", "solutions.yaml")):
        sol = _solution(folder, name)
        llh = sh.create_objective(loaded[kind]).llh()
        assert abs(llh - sol["llh"]) <= sol["tol_llh"], (kind, llh, sol["llh"])
    assert sh.describe(loaded["sciml"]) == {
        "kind": "PEtab SciML", "measurements": 40, "conditions": 2, "estimated": 54,
        "networks": {"net1": "pre-initialization"}, "defaults": []}
    # bare SBML (nominal = the SBML's values, log10 scale): the likelihood of obs_a's c0
    # rows of the PEtab v1 door's simulation at those values
    bare = sh.create_objective(loaded["sbml"])
    tiny = sh.create_objective(sh.load_problem(TINY / "problem.yaml"))
    x_bare = dict(zip(bare.x_free_ids, bare.x_nominal_free))
    sim = tiny.simulate(np.array([x_bare[p] for p in tiny.x_free_ids]))
    sim = sim[(sim.observableId == "obs_a") & (sim.simulationConditionId == "c0")]
    reference = scipy.stats.norm.logpdf(a.measurement.to_numpy(), sim.simulation.to_numpy(),
                                        0.05).sum()
    assert bare.llh() == pytest.approx(reference, rel=1e-6)


@needs_suites
def test_sciml_yaml_spellings_and_solver_defaults(tmp_path) -> None:
    """`neural_networks` under `petab_sciml` loads like `neural_nets` under `sciml`; a YAML
    that sets only rtol keeps the other SciML solver defaults."""
    folder = tmp_path / "case"
    shutil.copytree(SCIML / "003" / "petab", folder)
    config = yaml.safe_load((folder / "problem.yaml").read_text())
    section = config["extensions"].pop("sciml")
    section["neural_networks"] = section.pop("neural_nets")
    config["extensions"]["petab_sciml"] = section
    config["sbmlhybrid"] = {"solver": {"rtol": 1e-9}}
    (folder / "problem.yaml").write_text(yaml.safe_dump(config))
    problem = sh.load_problem(folder / "problem.yaml")
    assert isinstance(problem, SciMLProblem)
    assert (problem.solver.rtol, problem.solver.atol, problem.solver.max_steps) == \
        (1e-9, SCIML_SOLVER["atol"], SCIML_SOLVER["max_steps"])
    sol = _solution(SCIML / "003", "solutions.yaml")
    assert abs(sh.create_objective(problem).llh() - sol["llh"]) <= sol["tol_llh"]


# ---- 2. one objective protocol ------------------------------------------------------------
@needs_suites
@pytest.mark.parametrize("case", ["001", "003"])  # network unrolled into the SBML / in torch
def test_sciml_objective_value_gradient_and_pypesto(case) -> None:
    objective = sh.create_objective(sh.load_problem(SCIML / case / "petab" / "problem.yaml"))
    assert isinstance(objective, SciMLObjective) and isinstance(objective, sh.Objective)
    sol = _solution(SCIML / case, "solutions.yaml")
    x = objective.x_nominal_free
    ev = objective.evaluate(x)
    assert abs(-ev.fval - sol["llh"]) <= sol["tol_llh"]
    # gradient vs central differences (Richardson-extrapolated: the objective is so curved
    # that plain differences at h = 1e-5 are off by 3e-3 in case 001); rtol 1e-12 keeps the
    # value's solver noise (2e-7 to 9e-7 at the default 1e-10) below what h = 1e-5 resolves
    tight = sh.create_objective(sh.load_problem(
        SCIML / case / "petab" / "problem.yaml",
        solver=SolverSettings(rtol=1e-12, atol=1e-14, max_steps=1_000_000)))
    h = 1e-5
    fd = (4 * fd_gradient(tight, x, h / 2) - fd_gradient(tight, x, h)) / 3
    assert np.linalg.norm(tight.evaluate(x).grad - fd) <= 1e-4 * np.linalg.norm(fd)
    # the pyPESTO problem computes the same value and gradient (no priors in the suite)
    fval, grad = objective.pypesto_problem.objective(x, sensi_orders=(0, 1))
    assert fval == pytest.approx(ev.fval, rel=1e-12)
    np.testing.assert_allclose(grad, ev.grad, rtol=1e-10, atol=1e-12)
    assert objective.pypesto_problem.x_names == objective.x_free_ids
    # simulations: the suite's reference within its tolerance
    ref = pd.read_csv(SCIML / case / "simulations.tsv", sep="\t")
    keys = ["observableId", "experimentId", "time"]
    sim = objective.simulate().sort_values(keys).reset_index(drop=True)
    ref = ref.sort_values(keys).reset_index(drop=True)
    assert np.max(np.abs(sim.simulation - ref.simulation)) <= sol["tol_simulations"]
    # experiment subsets are exact: they add up to the full value and gradient
    parts = [objective.evaluate(x, conditions=[e]) for e in objective.conditions]
    assert sum(p.fval for p in parts) == pytest.approx(ev.fval, rel=1e-10)
    np.testing.assert_allclose(sum(p.grad for p in parts), ev.grad, rtol=1e-8, atol=1e-10)


@needs_suites
def test_sciml_priors_enter_the_pypesto_objective(tmp_path) -> None:
    """A normal prior on alpha (truncated to its bounds): pyPESTO's objective is the
    likelihood minus the log-density, with its derivative."""
    folder = tmp_path / "prior"
    shutil.copytree(SCIML / "003" / "petab", folder)
    pdf = pd.read_csv(folder / "parameters.tsv", sep="\t")
    pdf["priorDistribution"] = np.where(pdf.parameterId == "alpha", "normal", "")
    pdf["priorParameters"] = np.where(pdf.parameterId == "alpha", "1.0;0.2", "")
    pdf.to_csv(folder / "parameters.tsv", sep="\t", index=False)
    objective = sh.create_objective(sh.load_problem(folder / "problem.yaml"))
    x = objective.x_nominal_free
    i = objective.x_free_ids.index("alpha")
    lo, hi = (0.0 - 1.0) / 0.2, (15.0 - 1.0) / 0.2
    log_prior = scipy.stats.truncnorm.logpdf(x[i], lo, hi, loc=1.0, scale=0.2)
    fval, grad = objective.pypesto_problem.objective(x, sensi_orders=(0, 1))
    ev = objective.evaluate(x)
    assert fval == pytest.approx(ev.fval - log_prior, rel=1e-10)
    assert objective.log_prior(x) == pytest.approx(log_prior, rel=1e-10)
    assert grad[i] == pytest.approx(ev.grad[i] + (x[i] - 1.0) / 0.2**2, rel=1e-8)


def test_torch_ode_behind_the_protocol() -> None:
    """`TorchODEObjective` (now a delegate of `TorchODE`, which implements the protocol):
    gradient = central differences, pyPESTO value = evaluate, condition subsets add up to
    the full value, and `fit` lowers the objective (the flux toy problem, rate rules only)."""
    from sbmlhybrid.hybrid import TorchODEObjective

    objective = TorchODEObjective(sh.load_problem(REPO / "tests" / "data" / "flux_toy" /
                                                  "problem.yaml"))
    assert isinstance(objective, sh.Objective)
    x = objective.x_nominal_free + 0.05
    ev = objective.evaluate(x)
    fd = fd_gradient(objective, x, 1e-6)
    assert np.linalg.norm(ev.grad - fd) <= 1e-5 * np.linalg.norm(fd)
    assert objective.pypesto_problem.objective(x) == pytest.approx(ev.fval, rel=1e-12)
    parts = [objective.evaluate(x, conditions=[c]) for c in objective.conditions]
    assert len(parts) == 2
    assert sum(p.fval for p in parts) == pytest.approx(ev.fval, rel=1e-12)
    np.testing.assert_allclose(sum(p.grad for p in parts), ev.grad, rtol=1e-10)
    result = sh.fit(objective, sh.FitSettings(n_starts=1, max_iter=30, seed=0),
                    progress=False)
    best = result.optimize_result.list[0]
    assert best.fval < objective.evaluate(best.x0, gradient=False).fval - 1.0


@needs_suites
def test_fit_on_a_sciml_problem_converges(tmp_path) -> None:
    """Library `fit` on the small case-003 problem: the best start goes from its start value
    to at least the data-generating point's value, its gradient norm shrinks 1e4-fold."""
    objective = sh.create_objective(sh.load_problem(_small_sciml(tmp_path)))
    assert objective.x_free_ids == ["alpha", "delta", "beta", "net1.layer3.bias[0]"]
    # bounds: the table's (the network row's [-5, 5])
    lb, ub = zip(*(MECH_BOUNDS[p] for p in objective.x_free_ids[:3]))
    np.testing.assert_array_equal(objective.pypesto_problem.lb, [*lb, -5.0])
    np.testing.assert_array_equal(objective.pypesto_problem.ub, [*ub, 5.0])
    result = sh.fit(objective, sh.FitSettings(n_starts=3, seed=0), progress=False)
    best = result.optimize_result.list[0]
    start = objective.evaluate(best.x0)
    assert best.fval < start.fval
    assert best.fval <= objective.evaluate().fval + 1e-6  # nominal = the data's truth
    assert np.linalg.norm(best.grad) < 1e-4 * np.linalg.norm(start.grad)
    # mini-batch optimizers take it too (tests/test_protocol_minibatch.py checks them)
    result = sh.fit(objective, sh.FitSettings(n_starts=1, seed=0, optimizer=MiniBatchOptimizer(
        method="adam", batch_size=1, epochs=2)), progress=False)
    assert result.optimize_result.list[0]["work_sensitivity"] == 4 * 2 + 2  # 2 experiments


def test_create_hybrid_objective_is_removed() -> None:
    with pytest.raises(NotSupportedError, match="sbmlhybrid.create_objective"):
        removed_create_hybrid_objective(None)


# ---- 3. the CLI for every kind -------------------------------------------------------------
def _cli_fit_profile_sample(problem_yaml: Path, out: Path, profiled: list[str],
                            n_measurements: int) -> None:
    """validate, simulate, fit, profile, sample: exit 0, files written, the profile's
    minimum equals the fitted value."""
    y = str(problem_yaml)
    assert main(["validate", y]) == 0
    assert main(["simulate", y, "-o", str(out / "sim.tsv")]) == 0
    assert len(pd.read_csv(out / "sim.tsv", sep="\t")) == n_measurements
    assert main(["fit", y, "--starts", "3", "--seed", "0", "--max-iter", "200", "-o", str(out),
                 "--no-progress"]) == 0
    best = pd.read_csv(out / "best_parameters.tsv", sep="\t")
    assert list(best.parameterId)[-1] == profiled[-1]
    assert main(["profile", y, "-o", str(out), "--parameters", *profiled,
                 "--no-progress"]) == 0
    assert main(["sample", y, "-o", str(out), "--samples", "300", "--chunk", "150",
                 "--no-progress"]) == 0
    for name in ("result.hdf5", "waterfall.png", "profiles.hdf5", "profiles.png",
                 "profile_intervals.tsv", "samples.hdf5", "posterior_summary.tsv",
                 "sample_traces.png"):
        assert (out / name).is_file(), name
    fitted = read_fit(out / "result.hdf5", sh.create_objective(
        sh.load_problem(y)).pypesto_problem).optimize_result.list[0].fval
    with h5py.File(out / "profiles.hdf5", "r") as f:
        paths = [np.asarray(f[f"profiling/0/{i}/fval_path"]) for i in f["profiling/0"]
                 if f"profiling/0/{i}/fval_path" in f]
    assert len(paths) == len(profiled)
    assert min(float(p.min()) for p in paths) == pytest.approx(fitted, rel=1e-6, abs=1e-6)
    intervals = pd.read_csv(out / "profile_intervals.tsv", sep="\t").set_index("parameterId")
    assert (intervals.lower < intervals.estimate).all() and \
        (intervals.estimate < intervals.upper).all()
    summary = pd.read_csv(out / "posterior_summary.tsv", sep="\t")
    assert (summary.n_samples == 300).all() and len(summary) == 4


@needs_suites
def test_cli_on_a_sciml_problem(tmp_path) -> None:
    _cli_fit_profile_sample(_small_sciml(tmp_path), tmp_path / "out",
                            ["alpha", "net1.layer3.bias[0]"], 40)


@needs_suites
def test_cli_on_a_hybrid_problem(tmp_path) -> None:
    path = _small_hybrid(tmp_path)
    problem = sh.load_problem(path)
    # unrolled into the SBML: compiled once, with the hybrid code-generation choice
    assert codegen_of(problem.problem) == HYBRID_CODEGEN
    assert sh.create_objective(problem).compiled.path == compile_hybrid(problem.problem).path
    last = [p for p in sh.create_objective(problem).x_free_ids if p.startswith("net1.")]
    assert len(last) == 1
    _cli_fit_profile_sample(path, tmp_path / "out", last, 20)


@needs_suites
def test_cli_bad_sciml_input_names_file_row_entity(tmp_path, capsys) -> None:
    folder = tmp_path / "bad"
    shutil.copytree(SCIML / "003" / "petab", folder)
    pdf = pd.read_csv(folder / "parameters.tsv", sep="\t", dtype=str)
    pdf.loc[pdf.parameterId == "net1_ps", "estimate"] = "maybe"
    pdf.to_csv(folder / "parameters.tsv", sep="\t", index=False)
    assert main(["validate", str(folder / "problem.yaml")]) == 2
    err = capsys.readouterr().err
    row = int(pdf.index[pdf.parameterId == "net1_ps"][0]) + 2  # TSV line, header = 1
    assert f"{folder / 'parameters.tsv'}, row {row}" in err and "'net1_ps'" in err
    (folder / "net1.yaml").unlink()
    assert main(["fit", str(folder / "problem.yaml")]) == 2
    assert "net1.yaml" in capsys.readouterr().err
    # mini-batch optimizers take SciML problems (tests/test_protocol_sciml.py) and PEtab v2
    # (tests/test_protocol_v2_minibatch.py): one experiment, 2 full evaluations + 1 batch
    assert main(["fit", str(V2 / "_0001.yaml"), "--optimizer", "adam", "--epochs", "1",
                 "--starts", "1", "--no-progress", "-o", str(tmp_path / "mb")]) == 0
    assert read_work(tmp_path / "mb" / "result.hdf5") == {"0": (3, 0)}
    capsys.readouterr()
    # the suite leaves network entries unbounded: a profile of one is refused by name
    (tmp_path / "mb").mkdir(exist_ok=True)
    (tmp_path / "mb" / "result.hdf5").write_text("")
    assert main(["profile", str(SCIML / "003" / "petab" / "problem.yaml"), "-o",
                 str(tmp_path / "mb"), "--parameters", "net1.layer3.bias[0]"]) == 2
    assert "unbounded: ['net1.layer3.bias[0]']" in capsys.readouterr().err


def test_tables_parse_floats_exactly(tmp_path) -> None:
    """Every float of a PEtab table is the nearest double of its text (Python's `float`), on
    any supported pandas, and no deprecation warning is raised while reading."""
    import warnings

    from sbmlhybrid.problem import read_tsv

    rng = np.random.default_rng(3)
    texts = [repr(float(v)) for v in rng.uniform(-1, 1, 200) * 10.0 ** rng.integers(-30, 30, 200)]
    texts += ["0.1", "3.0000000000000004e-5", "2.2250738585072014e-308", "1.7976931348623157e308",
              "0.30000000000000004", "123456789012345678901234567890"]
    (tmp_path / "t.tsv").write_text("value\n" + "\n".join(texts) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parsed = read_tsv(tmp_path / "t.tsv")["value"].to_numpy()
    assert [float(t) for t in texts] == parsed.tolist()
