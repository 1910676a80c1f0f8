"""Broken PEtab v2 and PEtab SciML inputs for the corpus (called by make_corpus.py).

Bases, each valid as written (tests/test_broken_inputs.py loads them):

* `write_tiny_v2`: tests/data/tiny as PEtab v2 tables (experiments e0, e1 apply conditions
  c0, c1; no ``parameterScale`` in v2, the log10 scales of tiny are dropped);
* `write_dynamic_sciml`: the PEtab SciML problem of tests/sciml_spec_builder.py with network
  net_d (Linear 2-3-1, tanh; evaluated during simulation, i.e. unrolled into the SBML)
  setting gamma from A and B;
* `write_static_sciml`: net_s (Linear 2-3-1, tanh; evaluated in torch before simulation)
  reading its one argument from the array file inputs.hdf5 (dataset ``inputs/arr_s/0``) and
  setting k2. Both routings are broken where they check different things (output size:
  the last Linear layer vs. a trial evaluation).

Each case is one of these with one defect, except the input-index cases: those are written
by `write_dynamic_inputs` (net_d with a given first-layer size and the input elements it is
told; also used by tests/test_sciml_mapping.py), their one defect being the element index.
Rows in the messages are TSV lines (header = row 1) in every table.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from torch import nn

from tests import sciml_spec_builder as b
from tests.broken_inputs.make_corpus import set_cell

TINY = Path(__file__).resolve().parent.parent / "data" / "tiny"
#: tiny's condition id -> the v2 experiment applying it
EXPERIMENTS = {"c0": "e0", "c1": "e1"}


def _tsv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, sep="\t", index=False)


def write_tiny_v2(folder: Path) -> Path:
    """tests/data/tiny as a PEtab v2 problem in `folder`; returns its YAML."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(TINY / "model.xml", folder / "model.xml")
    read = lambda name: pd.read_csv(TINY / name, sep="\t", dtype=str)  # noqa: E731
    cond = read("conditions.tsv").melt(id_vars="conditionId", var_name="targetId",
                                       value_name="targetValue")
    _tsv(cond, folder / "conditions.tsv")
    _tsv(pd.DataFrame({"experimentId": list(EXPERIMENTS.values()), "time": 0,
                       "conditionId": list(EXPERIMENTS)}), folder / "experiments.tsv")
    meas = read("measurements.tsv").rename(columns={"simulationConditionId": "experimentId"})
    meas["experimentId"] = meas["experimentId"].map(EXPERIMENTS)
    _tsv(meas, folder / "measurements.tsv")
    shutil.copy(TINY / "observables.tsv", folder / "observables.tsv")
    par = read("parameters.tsv").drop(columns="parameterScale")
    par["estimate"] = par["estimate"].map({"1": "true", "0": "false"})
    _tsv(par, folder / "parameters.tsv")
    (folder / "problem.yaml").write_text(
        "format_version: 2.0.0\nmodel_files:\n  tiny:\n    language: sbml\n"
        "    location: model.xml\nparameter_files: [parameters.tsv]\n"
        "condition_files: [conditions.tsv]\nexperiment_files: [experiments.tsv]\n"
        "measurement_files: [measurements.tsv]\nobservable_files: [observables.tsv]\n")
    return folder / "problem.yaml"


def _row(pid: str, nominal: object, lb: float = -np.inf, ub: float = np.inf) -> dict:
    return {"parameterId": pid, "parameterScale": "lin", "lowerBound": lb, "upperBound": ub,
            "nominalValue": nominal, "estimate": 1}


def write_dynamic_sciml(folder: Path,
                        mapping_edit: Callable[[list[tuple[str, str]]], None] = lambda m: None
                        ) -> Path:
    """The net_d problem; `mapping_edit` may change its mapping rows in place."""
    module = b.seeded_mlp(2, [2, 3, 1], nn.Tanh)
    mapping = [("net_d_in1", "net_d.inputs[0][0]"), ("net_d_in2", "net_d.inputs[0][1]"),
               ("net_d_out", "net_d.outputs[0][0]"), ("net_d_ps", "net_d.parameters")]
    mapping_edit(mapping)
    return b.write_problem(
        folder, {"net_d": (module, False, ["x"])}, mapping=mapping,
        hybridization=[("net_d_in1", "A"), ("net_d_in2", "B"), ("gamma", "net_d_out")],
        parameters=[_row("k1", 0.6, 0.01, 10.0), _row("k2", 0.4, 0.01, 10.0),
                    _row("net_d_ps", "array")])


def write_static_sciml(folder: Path, array: np.ndarray | None = None, output: int = 0
                       ) -> Path:
    """The net_s problem; `array` replaces its input array (default: [0.3, 0.6]), `output`
    the output element its mapping table names."""
    module = b.seeded_mlp(5, [2, 3, 1], nn.Tanh)
    return b.write_problem(
        folder, {"net_s": (module, True, ["x"])},
        mapping=[("arr_s", "net_s.inputs[0]"), ("net_s_out", f"net_s.outputs[0][{output}]"),
                 ("net_s_ps", "net_s.parameters")],
        hybridization=[("arr_s", "array"), ("k2", "net_s_out")],
        parameters=[_row("k1", 0.6, 0.01, 10.0), _row("net_s_ps", "array")],
        arrays={"arr_s": {"0": np.array([0.3, 0.6]) if array is None else array}})


def write_dynamic_inputs(folder: Path, n_in: int, inputs: list[tuple[str, int, str]]) -> Path:
    """net_d (Linear n_in-3-1, tanh) setting gamma; `inputs`: (PEtab id, element index of
    argument 0, hybridization value), mapping rows in that order before the output's."""
    module = b.seeded_mlp(2, [n_in, 3, 1], nn.Tanh)
    return b.write_problem(
        folder, {"net_d": (module, False, ["x"])},
        mapping=[*((pid, f"net_d.inputs[0][{j}]") for pid, j, _ in inputs),
                 ("net_d_out", "net_d.outputs[0][0]"), ("net_d_ps", "net_d.parameters")],
        hybridization=[*((pid, value) for pid, _, value in inputs), ("gamma", "net_d_out")],
        parameters=[_row("k1", 0.6, 0.01, 10.0), _row("k2", 0.4, 0.01, 10.0),
                    _row("net_d_ps", "array")])


def _append(petab_id: str, model_id: str) -> Callable[[list[tuple[str, str]]], None]:
    return lambda rows: rows.append((petab_id, model_id))


def _replace(row: int, model_id: str) -> Callable[[list[tuple[str, str]]], None]:
    def edit(rows: list[tuple[str, str]]) -> None:
        rows[row] = (rows[row][0], model_id)
    return edit


def _v2_unknown_experiment(folder: Path) -> None:
    write_tiny_v2(folder)
    set_cell("measurements.tsv", 4, "experimentId", "e9")(folder)  # TSV line 6


def _sciml_unknown_experiment(folder: Path) -> None:
    write_dynamic_sciml(folder)
    set_cell("measurements.tsv", 2, "experimentId", "e7")(folder)  # TSV line 4


def _nan_parameter(folder: Path) -> None:
    write_dynamic_sciml(folder)
    with h5py.File(folder / "net_d_ps.hdf5", "r+") as f:
        f["parameters/net_d/layer_0/weight"][1, 0] = np.nan


# case id, writer of the whole folder, expected fragment of the message, input file, args
CASES: list[tuple[str, Callable[[Path], None], str, str, str]] = [
    ("v2_unknown_experiment", _v2_unknown_experiment,
     "measurements.tsv, row 6, column experimentId: unknown experiment 'e9' (not in the "
     "experiment table)", "problem.yaml", ""),
    ("sciml_unknown_experiment", _sciml_unknown_experiment,
     "measurements.tsv, row 4, column experimentId: unknown experiment 'e7'",
     "problem.yaml", ""),
    ("sciml_unknown_network_input",
     lambda f: write_dynamic_sciml(f, _append("net_d_in3", "net_d.inputs[1][0]")),
     "mapping.tsv, row 6, column modelEntityId: mapping of 'net_d_in3': "
     "'net_d.inputs[1][0]' names input argument 1, but network 'net_d' has 1 input "
     "argument(s)", "problem.yaml", ""),
    ("sciml_unknown_layer",
     lambda f: write_dynamic_sciml(f, _append("net_d_w9", "net_d.parameters[fc9].weight")),
     "mapping.tsv, row 6, column modelEntityId: mapping of 'net_d_w9': network 'net_d' has "
     "no layer 'fc9'", "problem.yaml", ""),
    ("sciml_malformed_network_reference",
     lambda f: write_dynamic_sciml(f, _append("net_d_w9", "net_d.layers.fc9.weight")),
     "mapping.tsv, row 6, column modelEntityId: mapping of 'net_d_w9': "
     "'net_d.layers.fc9.weight' starts with network id 'net_d' but is not a network "
     "reference", "problem.yaml", ""),
    ("sciml_output_index_out_of_range",
     lambda f: write_dynamic_sciml(f, _replace(2, "net_d.outputs[0][5]")),
     "mapping.tsv, row 4, column modelEntityId: mapping of 'net_d_out': "
     "'net_d.outputs[0][5]' names output element 5, but network 'net_d' computes 1 output "
     "value(s)", "problem.yaml", ""),
    ("sciml_static_output_index_out_of_range", lambda f: write_static_sciml(f, output=2),
     "mapping.tsv, row 3, column modelEntityId: mapping of 'net_s_out': "
     "'net_s.outputs[0][2]' names output element 2, but network 'net_s' computes 1 output "
     "value(s)", "problem.yaml", ""),
    # net_d's first layer takes 2 values: element 2 does not exist
    ("sciml_input_index_out_of_range",
     lambda f: write_dynamic_inputs(f, 2, [("net_d_in1", 0, "A"), ("net_d_in2", 1, "B"),
                                      ("net_d_in3", 2, "A + B")]),
     "mapping.tsv, row 4, column modelEntityId: mapping of 'net_d_in3': "
     "'net_d.inputs[0][2]' names element 2 of input argument 0, but network 'net_d' takes 2 "
     "value(s) there", "problem.yaml", ""),
    # net_d takes 3 values, element 1 is unmapped: B would land in slot 1, not 2
    ("sciml_input_index_gap",
     lambda f: write_dynamic_inputs(f, 3, [("net_d_in1", 0, "A"), ("net_d_in2", 2, "B")]),
     "mapping.tsv, row 3, column modelEntityId: mapping of 'net_d_in2': "
     "'net_d.inputs[0][2]' names element 2 of input argument 0: element(s) [1] of it are "
     "not mapped", "problem.yaml", ""),
    ("sciml_array_input_wrong_shape", lambda f: write_static_sciml(f, np.ones((2, 3))),
     "inputs.hdf5: array input 'arr_s' (inputs/arr_s/0, shape (2, 3)): network 'net_s' "
     "cannot take it", "problem.yaml", ""),
    ("sciml_nan_array_input", lambda f: write_static_sciml(f, np.array([0.3, np.nan])),
     "inputs.hdf5: inputs/arr_s/0: 1 non-finite value(s) (first at index [1]) in array "
     "input 'arr_s'", "problem.yaml", ""),
    ("sciml_nan_network_parameter", _nan_parameter,
     "net_d_ps.hdf5: parameters/net_d/layer_0/weight: 1 non-finite value(s) (first at index "
     "[1, 0]) in network 'net_d', layer 'layer_0', array 'weight'", "problem.yaml", ""),
]

#: The valid bases, for the test that each loads as written.
BASES: dict[str, Callable[[Path], Path]] = {
    "tiny_v2": write_tiny_v2, "dynamic_sciml": write_dynamic_sciml,
    "static_sciml": write_static_sciml,
}
