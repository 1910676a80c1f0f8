"""PEtab SciML features from the spec that the suite's cases do not exercise (issue 13.2).

One small problem per feature (`tests.sciml_spec_builder`: species A, B; networks set the
parameter k2 before simulation or gamma during it), written in the spec's current spelling
(``extensions: petab_sciml: neural_networks: {static}``). References: the same model solved
by scipy (``solve_ivp``, Radau) with the torch modules the network files were written from,
normal log-densities summed by hand, scipy's log-densities for priors; gradients against
central finite differences (Richardson-extrapolated, solver rtol 1e-12) within 1e-4 relative.

Features: (a) priors on network parameters (log-posterior and its gradient), (b) network
inputs given as math expressions (before and during simulation), (c) array-file inputs
combined with model-entity inputs during simulation, (d) the ``neural_networks`` key,
(e) silu, (f) frozen layers; and bad input in them (unknown network input or layer in the
mapping table, an array of the wrong shape, non-finite parameter values) named by file,
row and entity.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.stats
import torch
import yaml
from torch import nn

import sbmlhybrid as sh
from sbmlhybrid.cli.main import main
from sbmlhybrid.errors import InputError
from sbmlhybrid.sciml import SciMLObjective, find_networks, write_inputs
from tests import sciml_spec_builder as b
from tests.conftest import central_differences

torch.set_num_threads(1)
P_IN = 1.5
GAMMA = {"e1": 0.3, "e2": 0.5}


class ArrayNet(nn.Module):
    """forward(x0, x1) = l2(tanh(l1(cat(x0, x1)))): x0 from an array file, x1 = (A, B)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(4, 3)
        self.l2 = nn.Linear(3, 1)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.tanh(self.l1(torch.cat([x0, x1], dim=0))))


def _row(pid: str, nominal: object, estimate: int = 1, lb: float = -np.inf,
         ub: float = np.inf, prior: tuple[str, str] | None = None) -> dict:
    row = {"parameterId": pid, "parameterScale": "lin", "lowerBound": lb, "upperBound": ub,
           "nominalValue": nominal, "estimate": estimate}
    if prior:
        row["priorDistribution"], row["priorParameters"] = prior
    return row


def _mech(*ids: str) -> list[dict]:
    return [_row(p, b.SBML_VALUES[p], 1, 0.01, 10.0) for p in ids]


# ---- the problems --------------------------------------------------------------------------
def static_problem(folder: Path, legacy: bool = False) -> tuple[Path, nn.Module]:
    """net_s (static, silu) sets k2 from inputs ``2*k1 + p_in`` (hybridization table) and
    a condition-table value (``1.0`` in c1, the expression ``3*k1`` in c2); priors on k1,
    on all of net_s, on its last layer and on one weight (most specific row wins)."""
    module = b.seeded_mlp(1, [2, 4, 1], nn.SiLU)
    with torch.no_grad():
        module[2].bias.fill_(0.4)
    path = b.write_problem(
        folder, {"net_s": (module, True, ["x"])},
        mapping=[("net_s_in1", "net_s.inputs[0][0]"), ("net_s_in2", "net_s.inputs[0][1]"),
                 ("net_s_out", "net_s.outputs[0][0]"), ("net_s_ps", "net_s.parameters"),
                 ("net_s_last", "net_s.parameters[layer_2]"),
                 ("net_s_w01", "net_s.parameters[layer_0].weight[0, 1]")],
        hybridization=[("net_s_in1", "2*k1 + p_in"), ("k2", "net_s_out")],
        parameters=[_row("k1", 0.6, 1, 0.01, 10.0, ("normal", "0.6;0.3")),
                    _row("p_in", P_IN, 0),
                    _row("net_s_ps", "array", 1, prior=("normal", "0;2")),
                    _row("net_s_last", "array", 1, prior=("laplace", "0;0.5")),
                    _row("net_s_w01", "", 1, prior=("normal", "0.2;0.1"))],
        experiments={"e1": "c1", "e2": "c2"},
        conditions=[("c1", "net_s_in2", 1.0), ("c1", "gamma", GAMMA["e1"]),
                    ("c2", "net_s_in2", "3*k1"), ("c2", "gamma", GAMMA["e2"])],
        legacy_spelling=legacy)
    return path, module


def dynamic_problem(folder: Path, activation: type[nn.Module] = nn.Tanh,
                    frozen: bool = False) -> tuple[Path, nn.Module]:
    """net_d (during simulation) sets gamma from ``2*A + k1`` and ``B + 0.1*time``; with
    `frozen`, its first layer is fixed (``estimate = 0`` for ``net_d.parameters[layer_0]``)."""
    module = b.seeded_mlp(2, [2, 3, 1], activation)
    with torch.no_grad():
        module[2].bias.fill_(0.3)
    mapping = [("net_d_in1", "net_d.inputs[0][0]"), ("net_d_in2", "net_d.inputs[0][1]"),
               ("net_d_out", "net_d.outputs[0][0]"), ("net_d_ps", "net_d.parameters")]
    parameters = [*_mech("k1", "k2"), _row("net_d_ps", "array")]
    if frozen:
        mapping.append(("net_d_first", "net_d.parameters[layer_0]"))
        parameters.append(_row("net_d_first", "array", 0))
    path = b.write_problem(
        folder, {"net_d": (module, False, ["x"])}, mapping=mapping,
        hybridization=[("net_d_in1", "2*A + k1"), ("net_d_in2", "B + 0.1*time"),
                       ("gamma", "net_d_out")], parameters=parameters)
    return path, module


def silu_problem(folder: Path) -> tuple[Path, nn.Module]:
    """net_z (during simulation, silu) sets gamma from A and B."""
    module = b.seeded_mlp(3, [2, 3, 1], nn.SiLU)
    with torch.no_grad():
        module[2].bias.fill_(0.3)
    path = b.write_problem(
        folder, {"net_z": (module, False, ["x"])},
        mapping=[("net_z_in1", "net_z.inputs[0][0]"), ("net_z_in2", "net_z.inputs[0][1]"),
                 ("net_z_out", "net_z.outputs[0][0]"), ("net_z_ps", "net_z.parameters")],
        hybridization=[("net_z_in1", "A"), ("net_z_in2", "B"), ("gamma", "net_z_out")],
        parameters=[*_mech("k1", "k2"), _row("net_z_ps", "array")])
    return path, module


ARRAYS = {"c1": np.array([0.2, -0.4]), "c2;c3": np.array([1.0, 0.5])}
K2 = {"e1": 0.5, "e2": 0.7}


def array_problem(folder: Path, arrays: dict[str, np.ndarray] | None = None
                  ) -> tuple[Path, nn.Module]:
    """net_a (during simulation) reads argument 0 from an array file (per condition; the
    dataset ``c2;c3`` serves condition c2) and argument 1 = (A, B); sets gamma."""
    torch.manual_seed(4)
    module = ArrayNet().double()
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(0.5)
        module.l2.bias.fill_(0.3)
    path = b.write_problem(
        folder, {"net_a": (module, False, ["x0", "x1"])},
        mapping=[("arr_in", "net_a.inputs[0]"), ("net_a_in1", "net_a.inputs[1][0]"),
                 ("net_a_in2", "net_a.inputs[1][1]"), ("net_a_out", "net_a.outputs[0][0]"),
                 ("net_a_ps", "net_a.parameters")],
        hybridization=[("net_a_in1", "A"), ("net_a_in2", "B"), ("gamma", "net_a_out")],
        parameters=[*_mech("k1"), _row("net_a_ps", "array")],
        experiments={"e1": "c1", "e2": "c2"},
        conditions=[("c1", "k2", K2["e1"]), ("c2", "k2", K2["e2"])],
        arrays={"arr_in": arrays or ARRAYS})
    return path, module


# ---- reference side ------------------------------------------------------------------------
def module_at(module: nn.Module, objective: SciMLObjective, x: np.ndarray, nn_id: str
              ) -> nn.Module:
    """A copy of `module` with the network entries of the free vector `x`."""
    out = copy.deepcopy(module)
    params = dict(out.named_parameters())
    seq = isinstance(module, nn.Sequential)
    with torch.no_grad():
        for pid, v in zip(objective.x_free_ids, x):
            m = re.fullmatch(rf"{nn_id}\.(\w+)\.(\w+)\[([\d,]*)\]", pid)
            if m:
                layer = m.group(1).removeprefix("layer_") if seq else m.group(1)
                idx = tuple(int(i) for i in m.group(3).split(",") if i)
                params[f"{layer}.{m.group(2)}"][idx] = float(v)
    return out


def mech_at(objective: SciMLObjective, x: np.ndarray) -> dict[str, float]:
    values = dict(b.SBML_VALUES)
    values.update({p: float(v) for p, v in zip(objective.x_free_ids, x) if "." not in p})
    return values


def static_reference(folder: Path, module: nn.Module, k1: float) -> float:
    sims = {}
    for e, in2 in (("e1", 1.0), ("e2", 3 * k1)):
        k2 = b.net_value(module, [2 * k1 + P_IN, in2])
        sims[e] = b.simulate(k1, k2, lambda t, a, bb, g=GAMMA[e]: g)
    return b.log_likelihood(folder, sims)


def static_log_prior(objective: SciMLObjective, x: np.ndarray) -> float:
    """Most specific prior per free entry: weight[0, 1] of layer_0, then layer_2, then all."""
    total = 0.0
    for pid, v in zip(objective.x_free_ids, x):
        if pid == "k1":
            a, c = (0.01 - 0.6) / 0.3, (10.0 - 0.6) / 0.3
            total += scipy.stats.truncnorm.logpdf(v, a, c, loc=0.6, scale=0.3)
        elif pid == "net_s.layer_0.weight[0,1]":
            total += scipy.stats.norm.logpdf(v, 0.2, 0.1)
        elif pid.startswith("net_s.layer_2."):
            total += scipy.stats.laplace.logpdf(v, 0.0, 0.5)
        else:
            total += scipy.stats.norm.logpdf(v, 0.0, 2.0)
    return float(total)


def dynamic_reference(folder: Path, module: nn.Module, mech: dict[str, float]) -> float:
    k1 = mech["k1"]
    gamma = lambda t, a, bb: b.net_value(module, [2 * a + k1, bb + 0.1 * t])  # noqa: E731
    return b.log_likelihood(folder, {"e1": b.simulate(k1, mech["k2"], gamma)})


def fd_check(fun, grad: np.ndarray, x: np.ndarray, h: float = 1e-5) -> None:
    """`grad` equals Richardson-extrapolated central differences of `fun` within 1e-4."""
    fd = (4 * central_differences(fun, x, h / 2) - central_differences(fun, x, h)) / 3
    assert np.linalg.norm(grad - fd) <= 1e-4 * np.linalg.norm(fd), (grad, fd)
    assert np.max(np.abs(grad - fd)) <= 1e-4 * np.max(np.abs(fd))


def nll(objective: SciMLObjective):
    return lambda x: objective.evaluate(x, gradient=False).fval


def perturbed(objective: SciMLObjective, seed: int = 0, size: float = 0.05) -> np.ndarray:
    x = objective.x_nominal_free
    return x + size * np.random.default_rng(seed).standard_normal(len(x))


@pytest.fixture(scope="module")
def static_case(tmp_path_factory):
    path, module = static_problem(tmp_path_factory.mktemp("static") / "p")
    return path, module, sh.create_objective(sh.load_problem(path))


@pytest.fixture(scope="module")
def dynamic_case(tmp_path_factory):
    path, module = dynamic_problem(tmp_path_factory.mktemp("dynamic") / "p")
    return path, module, sh.create_objective(sh.load_problem(path))


# ---- (a) priors on network parameters ------------------------------------------------------
def test_network_priors_give_the_log_posterior_and_its_gradient(static_case) -> None:
    path, module, objective = static_case
    x = perturbed(objective)
    log_prior = static_log_prior(objective, x)
    assert objective.log_prior(x) == pytest.approx(log_prior, rel=1e-10)
    llh = static_reference(path.parent, module_at(module, objective, x, "net_s"),
                           mech_at(objective, x)["k1"])
    fval, grad = objective.pypesto_problem.objective(x, sensi_orders=(0, 1))
    assert -fval == pytest.approx(llh + log_prior, abs=1e-6)
    fd_check(lambda z: objective.pypesto_problem.objective(z, sensi_orders=(0,)), grad, x)
    # every free network entry has a prior (17 of them) plus k1
    assert len(objective.prior.prior_list) == len(objective.x_free_ids) == 18


# ---- (b) inputs as math expressions --------------------------------------------------------
def test_static_network_inputs_are_expressions(static_case) -> None:
    path, module, objective = static_case
    x = perturbed(objective, seed=1)
    llh = static_reference(path.parent, module_at(module, objective, x, "net_s"),
                           mech_at(objective, x)["k1"])
    ev = objective.evaluate(x)
    assert -ev.fval == pytest.approx(llh, abs=1e-6)
    fd_check(nll(objective), ev.grad, x)


def test_dynamic_network_inputs_are_expressions(dynamic_case) -> None:
    path, module, objective = dynamic_case
    x = perturbed(objective)
    llh = dynamic_reference(path.parent, module_at(module, objective, x, "net_d"),
                            mech_at(objective, x))
    ev = objective.evaluate(x)
    assert -ev.fval == pytest.approx(llh, abs=1e-6)
    fd_check(nll(objective), ev.grad, x)


# ---- (c) array inputs beside model-entity inputs, during simulation ------------------------
def test_array_and_entity_inputs_during_simulation(tmp_path) -> None:
    path, module = array_problem(tmp_path / "p")
    objective = sh.create_objective(sh.load_problem(path))
    x = perturbed(objective)
    net, k1 = module_at(module, objective, x, "net_a"), mech_at(objective, x)["k1"]
    sims = {}
    for e, key in (("e1", "c1"), ("e2", "c2;c3")):
        arr = ARRAYS[key]
        sims[e] = b.simulate(k1, K2[e], lambda t, a, bb, arr=arr: b.net_value(net, arr, [a, bb]))
    ev = objective.evaluate(x)
    assert -ev.fval == pytest.approx(b.log_likelihood(path.parent, sims), abs=1e-6)
    fd_check(nll(objective), ev.grad, x)


# ---- (d) the neural_networks key -----------------------------------------------------------
def test_neural_networks_key_and_legacy_spelling_agree(static_case, tmp_path, capsys) -> None:
    path, _module, objective = static_case
    config = yaml.safe_load(path.read_text())
    assert "neural_networks" in config["extensions"]["petab_sciml"]
    assert find_networks(path)["net_s"].static is True
    legacy, _ = static_problem(tmp_path / "legacy", legacy=True)
    assert "neural_nets" in yaml.safe_load(legacy.read_text())["extensions"]["sciml"]
    old = sh.create_objective(sh.load_problem(legacy))
    assert old.x_free_ids == objective.x_free_ids
    assert old.llh() == pytest.approx(objective.llh(), rel=1e-12)
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()


# ---- (e) silu -------------------------------------------------------------------------------
def test_silu_during_simulation(tmp_path) -> None:
    """silu unrolled into the SBML (before simulation it runs in torch: the static problem's
    network is a silu network, `test_static_network_inputs_are_expressions`)."""
    path, module = silu_problem(tmp_path / "p")
    objective = sh.create_objective(sh.load_problem(path))
    x = perturbed(objective)
    net, mech = module_at(module, objective, x, "net_z"), mech_at(objective, x)
    gamma = lambda t, a, bb: b.net_value(net, [a, bb])  # noqa: E731
    sims = {"e1": b.simulate(mech["k1"], mech["k2"], gamma)}
    ev = objective.evaluate(x)
    assert -ev.fval == pytest.approx(b.log_likelihood(path.parent, sims), abs=1e-6)
    fd_check(nll(objective), ev.grad, x)


# ---- (f) frozen layers ----------------------------------------------------------------------
def test_frozen_layer_is_fixed_at_its_array_values(dynamic_case, tmp_path) -> None:
    _path, module, full = dynamic_case
    path, _ = dynamic_problem(tmp_path / "p", frozen=True)
    objective = sh.create_objective(sh.load_problem(path))
    assert not any(p.startswith("net_d.layer_0.") for p in objective.x_free_ids)
    assert set(objective.x_free_ids) == {p for p in full.x_free_ids
                                         if not p.startswith("net_d.layer_0.")}
    assert len(objective.x_free_ids) == len(full.x_free_ids) - 9
    x = perturbed(objective)
    net = module_at(module, objective, x, "net_d")  # layer_0 keeps the file's values
    ev = objective.evaluate(x)
    assert -ev.fval == pytest.approx(dynamic_reference(path.parent, net,
                                                       mech_at(objective, x)), abs=1e-6)
    fd_check(nll(objective), ev.grad, x)
    assert ev.net_grad["net_d"]["layer_0.weight"].shape == (3, 2)  # reported, not free


# ---- bad input ------------------------------------------------------------------------------
def _messages(err: InputError) -> list[str]:
    return [str(i) for i in err.issues]


@pytest.mark.parametrize("entry, what", [
    ("net_d.inputs[1][0]", "argument 1"),          # net_d has one forward argument
    ("net_d.parameters[layer_9]", "layer_9"),      # no such layer
    ("net_d.parameters[layer_0].gain", "gain"),    # no such array
    ("net_q.inputs[0][0]", "net_q"),               # no such network
])
def test_mapping_entry_naming_an_unknown_input_or_layer(tmp_path, entry, what) -> None:
    path, _ = dynamic_problem(tmp_path / "p")
    with (path.parent / "mapping.tsv").open("a") as fh:
        fh.write(f"net_d_bad\t{entry}\n")
    with pytest.raises(InputError) as err:
        sh.load_problem(path)
    row = len((path.parent / "mapping.tsv").read_text().splitlines())  # the last line
    msg = [m for m in _messages(err.value) if "net_d_bad" in m]
    assert msg and f"{path.parent / 'mapping.tsv'}, row {row}" in msg[0] and what in msg[0]


def test_array_input_of_the_wrong_shape(tmp_path) -> None:
    arrays = {"c1": np.array([0.2, -0.4, 0.1]), "c2;c3": np.array([1.0, 0.5])}
    path, _ = array_problem(tmp_path / "p", arrays)
    with pytest.raises(InputError) as err:
        sh.load_problem(path)
    msg = " ".join(_messages(err.value))
    assert str(path.parent / "inputs.hdf5") in msg and "arr_in" in msg and "(3,)" in msg


def test_static_array_input_of_the_wrong_shape(tmp_path) -> None:
    """A torch-side network fed an array its first layer cannot take."""
    module = b.seeded_mlp(5, [2, 3, 1], nn.Tanh)
    folder = tmp_path / "p"
    path = b.write_problem(
        folder, {"net_s": (module, True, ["x"])},
        mapping=[("arr_s", "net_s.inputs[0]"), ("net_s_out", "net_s.outputs[0][0]"),
                 ("net_s_ps", "net_s.parameters")],
        hybridization=[("arr_s", "array"), ("k2", "net_s_out")],
        parameters=[*_mech("k1"), _row("net_s_ps", "array")],
        arrays={"arr_s": {"0": np.ones((2, 3))}})
    with pytest.raises(InputError) as err:
        sh.load_problem(path)
    msg = " ".join(_messages(err.value))
    assert str(folder / "inputs.hdf5") in msg and "arr_s" in msg and "(2, 3)" in msg
    write_inputs(folder / "inputs.hdf5", {"arr_s": {"0": np.array([0.3, 0.6])}})
    k2 = b.net_value(module, [0.3, 0.6])  # the right shape loads and gives the reference
    sims = {"e1": b.simulate(0.6, k2, lambda t, a, bb: 0.3)}
    assert sh.create_objective(sh.load_problem(path)).llh() == pytest.approx(
        b.log_likelihood(folder, sims), abs=1e-6)


def test_non_finite_network_parameters_are_named(tmp_path) -> None:
    path, _ = dynamic_problem(tmp_path / "p")
    with h5py.File(path.parent / "net_d_ps.hdf5", "r+") as f:
        f["parameters/net_d/layer_0/weight"][1, 0] = np.nan
        f["parameters/net_d/layer_2/bias"][0] = np.inf
    with pytest.raises(InputError) as err:
        sh.load_problem(path)
    msg = _messages(err.value)
    assert any(str(path.parent / "net_d_ps.hdf5") in m and "layer_0" in m and "weight" in m
               for m in msg)
    assert any("layer_2" in m and "bias" in m for m in msg)
    assert main(["validate", str(path)]) == 2


def test_expression_naming_an_unknown_symbol(tmp_path) -> None:
    path, _ = dynamic_problem(tmp_path / "p")
    text = (path.parent / "hybridization.tsv").read_text().replace("2*A + k1", "2*A + kx")
    (path.parent / "hybridization.tsv").write_text(text)
    with pytest.raises(InputError) as err:
        sh.load_problem(path)
    msg = [m for m in _messages(err.value) if "kx" in m]
    row = text.splitlines().index("net_d_in1\t2*A + kx") + 1  # TSV line, header 1
    assert row == 2 and msg and f"{path.parent / 'hybridization.tsv'}, row {row}" in msg[0]

