"""PEtab SciML networks: import vs. the test suite, export round trips, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.nn import functional as F  # noqa: N812

from sbmlhybrid.errors import InputError
from sbmlhybrid.sciml import (
    build_network,
    export_network,
    find_networks,
    initialize_networks,
    load_parameters,
    network_arrays,
    read_inputs,
    read_parameters,
    write_parameters,
)
from sbmlhybrid.testing import check_initialization_case, check_ml_model_import_case
from tests.suite_results import assert_within_tolerance, exceeded

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
SUITE = SHARED / "petab_sciml_testsuite"
NEEDS_SUITE = pytest.mark.skipif(not SUITE.is_dir(),
                                 reason=f"PEtab SciML test suite not found at {SUITE}")


def _cases(kind: str) -> list[str]:
    folder = SUITE / kind
    return sorted(d.name for d in folder.iterdir()) if folder.is_dir() else ["<absent>"]


@NEEDS_SUITE
@pytest.mark.parametrize("case", _cases("ml_model_import"))
def test_ml_model_import_case_matches_reference(case: str) -> None:
    assert_within_tolerance(check_ml_model_import_case(SUITE / "ml_model_import" / case))


@NEEDS_SUITE
@pytest.mark.parametrize("case", _cases("ml_model_import"))
def test_export_import_round_trip_is_identical(case: str, tmp_path: Path) -> None:
    case_dir = SUITE / "ml_model_import" / case
    sol = yaml.safe_load((case_dir / "solutions.yaml").read_text())
    net = build_network(case_dir / sol["net_file"])
    if "net_ps" in sol:
        load_parameters(net, read_parameters(case_dir / sol["net_ps"][0])[net.nn_model_id])
    files = [sol["net_input"]] if "net_input" in sol else [
        sol[f"net_input_arg{k}"] for k in range(len(net.input_ids))]
    xs = [torch.as_tensor(next(iter(next(iter(read_inputs(case_dir / f[0]).values())).values())))
          .double() for f in files]
    spec = export_network(net, tmp_path / "net.yaml", tmp_path / "ps.hdf5")
    again = build_network(tmp_path / "net.yaml")
    load_parameters(again, read_parameters(tmp_path / "ps.hdf5")[spec.nn_model_id])
    assert again.spec.to_dict() == net.spec.to_dict()
    with torch.no_grad():
        assert torch.equal(net(*xs), again(*xs))


def test_sequential_export_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    seq = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.Softplus(beta=2.0),
                        nn.Linear(8, 2), nn.ReLU()).double()
    spec = export_network(seq, tmp_path / "seq.yaml", tmp_path / "seq.hdf5", nn_model_id="mlp")
    assert [la.layer_type for la in spec.layers] == ["Linear", "Tanh", "Linear", "Softplus",
                                                     "Linear", "ReLU"]
    net = build_network(tmp_path / "seq.yaml")
    load_parameters(net, read_parameters(tmp_path / "seq.hdf5")["mlp"])
    x = torch.randn(5, 3, dtype=torch.float64)
    assert torch.equal(net(x), seq(x))
    assert net.layer_3.beta == 2.0


class _TwoInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.out = nn.Bilinear(3, 2, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h = F.softplus(self.fc(torch.cat([a, b], dim=-1)))
        return self.out(h.tanh(), b) + 1.0


def test_custom_module_export_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(2)
    mod = _TwoInput().double()
    spec = export_network(mod, tmp_path / "m.yaml", tmp_path / "m.hdf5",
                          input_ids=["u", "v"])
    assert spec.input_ids == ["u", "v"]
    net = build_network(tmp_path / "m.yaml")
    load_parameters(net, read_parameters(tmp_path / "m.hdf5")["net0"])
    a, b = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    assert torch.equal(net(a, b), mod(a, b))


def _net_doc(layer_type: str = "Linear", fn: str = "tanh") -> dict:
    return {"nn_model_id": "n", "inputs": [{"input_id": "x"}],
            "layers": [{"layer_id": "my_layer", "layer_type": layer_type,
                        "args": {"in_features": 2, "out_features": 1}}],
            "forward": [{"name": "x", "op": "placeholder", "target": "x"},
                        {"name": "h", "op": "call_module", "target": "my_layer", "args": ["x"]},
                        {"name": "y", "op": "call_function", "target": fn, "args": ["h"]},
                        {"name": "output", "op": "output", "target": "output", "args": ["y"]}]}


def test_unsupported_layer_and_function_are_named() -> None:
    with pytest.raises(InputError, match="my_layer.*LSTMCellX"):
        build_network(_net_doc(layer_type="LSTMCellX"))
    with pytest.raises(InputError, match="'y'.*'frobnicate'"):
        build_network(_net_doc(fn="frobnicate"))
    doc = _net_doc()
    doc["layers"][0]["args"]["bogus"] = 1
    with pytest.raises(InputError, match="my_layer.*bogus"):
        build_network(doc)
    with pytest.raises(InputError, match="cannot export layer 'layer_0'.*GRUCell"):
        export_network(nn.Sequential(nn.GRUCell(2, 2)), Path("/nonexistent/net.yaml"))


def test_missing_and_misshaped_parameters_are_reported(tmp_path: Path) -> None:
    net = build_network(_net_doc())
    with pytest.raises(InputError, match="bias.*my_layer"):
        load_parameters(net, {"my_layer": {"weight": np.zeros((1, 2))}})
    with pytest.raises(InputError, match=r"my_layer.*\(2, 2\)"):
        load_parameters(net, {"my_layer": {"weight": np.zeros((2, 2)), "bias": np.zeros(1)}})


def test_column_major_arrays_are_transposed(tmp_path: Path) -> None:
    import h5py

    w = np.arange(6.0).reshape(2, 3)  # PyTorch layout (out, in)
    with h5py.File(tmp_path / "col.hdf5", "w") as f:
        f.create_dataset("metadata/perm", data=np.bytes_("column"))
        f.create_dataset("parameters/n/l/weight", data=w.T)
    assert np.array_equal(read_parameters(tmp_path / "col.hdf5")["n"]["l"]["weight"], w)
    write_parameters(tmp_path / "row.hdf5", {"n": {"l": {"weight": w}}})
    assert np.array_equal(read_parameters(tmp_path / "row.hdf5")["n"]["l"]["weight"], w)


@NEEDS_SUITE
def test_a_wrong_network_fails_the_check(tmp_path: Path) -> None:
    src = SUITE / "ml_model_import" / "034"  # tanh activation
    case = tmp_path / "034"
    shutil.copytree(src, case)
    text = (case / "net.yaml").read_text()
    (case / "net.yaml").write_text(text.replace("target: tanh", "target: sigmoid"))
    result = check_ml_model_import_case(case)
    assert result.outcome == "ran" and exceeded(result), result


@NEEDS_SUITE
@pytest.mark.parametrize("case", _cases("initialization"))
def test_initialization_case(case: str) -> None:
    assert_within_tolerance(check_initialization_case(SUITE / "initialization" / case))


@NEEDS_SUITE
def test_indexed_nominal_value_and_frozen_mask(tmp_path: Path) -> None:
    petab = tmp_path / "petab"
    shutil.copytree(SUITE / "initialization" / "001" / "petab", petab)
    mapping = (petab / "mapping.tsv").read_text()
    (petab / "mapping.tsv").write_text(
        mapping.replace("net1.parameters[layer1]", "net1.parameters[layer1].weight[1, 0]"))
    params = (petab / "parameters.tsv").read_text()
    (petab / "parameters.tsv").write_text(params.replace("0.0\t1", "7.5\t0"))
    init = initialize_networks(petab / "problem.yaml")["net1"]
    ref = read_parameters(petab / "net1_ps.hdf5")["net1"]["layer1"]["weight"]
    got = network_arrays(init.net)["layer1"]["weight"]
    expected = ref.copy()
    expected[1, 0] = 7.5
    assert np.array_equal(got, expected)
    mask = init.estimate["layer1.weight"]
    assert not mask[1, 0] and mask.sum() == mask.size - 1
    assert init.net.layer1.weight.requires_grad  # only partly frozen


@NEEDS_SUITE
@pytest.mark.parametrize("case", _cases("sciml_problem_import"))
def test_problem_networks_build_and_frozen_arrays_match_gradients(case: str) -> None:
    case_dir = SUITE / "sciml_problem_import" / case
    problem = case_dir / "petab" / "problem.yaml"
    refs = find_networks(problem)
    inits = initialize_networks(problem)
    assert set(inits) == set(refs)
    for nn_id, init in inits.items():
        doc = yaml.safe_load(refs[nn_id].location.read_text())  # the network YAML itself
        assert init.net.nn_model_id == doc["nn_model_id"] == nn_id
        assert [name for name, _ in init.net.named_children()] == [
            la["layer_id"] for la in doc["layers"]]
        grad_file = case_dir / f"grad_{nn_id}.hdf5"
        if not grad_file.is_file():
            continue
        grads = read_parameters(grad_file)[nn_id]
        params = dict(init.net.named_parameters())
        # the reference has one array per network parameter: empty if frozen, else its shape
        assert set(params) == {f"{la}.{a}" for la, arrs in grads.items() for a in arrs}
        for la, arrs in grads.items():
            for a, v in arrs.items():
                key = f"{la}.{a}"
                assert params[key].requires_grad == (v.size > 0), key
                if v.size:
                    assert tuple(params[key].shape) == v.shape, key


@NEEDS_SUITE
def test_both_problem_yaml_spellings(tmp_path: Path) -> None:
    net_file = SUITE / "sciml_problem_import" / "014" / "petab" / "net3.yaml"
    shutil.copy(net_file, tmp_path / "cnn.yaml")
    (tmp_path / "problem.yaml").write_text(yaml.safe_dump({
        "format_version": "2.0.0",
        "extensions": {"petab_sciml": {
            "version": "2.0.0", "hybridization_files": [],
            "neural_networks": {"cnn": {"location": "cnn.yaml", "format": "yaml",
                                        "static": True}}}}}))
    refs = find_networks(tmp_path / "problem.yaml")
    assert refs["cnn"].static is True and refs["cnn"].format == "yaml"
    legacy = find_networks(SUITE / "sciml_problem_import" / "014" / "petab" / "problem.yaml")
    assert legacy["net3"].format == "yaml" and legacy["net3"].static is True
    # locations resolved against each problem YAML's folder
    assert refs["cnn"].location == tmp_path / "cnn.yaml" and set(refs) == {"cnn"}
    assert legacy["net3"].location == net_file and set(legacy) == {"net3"}
