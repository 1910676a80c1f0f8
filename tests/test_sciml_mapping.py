"""Where PEtab SciML messages point, and where mapped inputs go (issue 13).

Rows: every SciML table message names the TSV line of the offending entry (header = row 1),
as the PEtab v1/v2 loaders do; the reference is the line found by reading the file.

Inputs: ``net.inputs[i][j]`` is element j of forward argument i (PEtab SciML spec, mapping
table), whatever the row order. References: the network evaluated directly in torch, and
the model solved by scipy with it (`tests.sciml_spec_builder`). A gap, a repeated index or
an index past the first layer's size is refused by mapping file, row and PEtab id.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import sbmlhybrid as sh
from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.sciml.inputs import network_arguments
from sbmlhybrid.sciml.mapping import check_input_indices, read_mapping
from tests import sciml_spec_builder as b
from tests.broken_inputs.make_v2_corpus import write_dynamic_inputs, write_dynamic_sciml

torch.set_num_threads(1)
X = (0.3, 1.7)  # static inputs: distinct, so that a swap changes the output


def _line(path: Path, start: str) -> int:
    """1-based line of the one line of `path` starting with `start` (header = line 1)."""
    lines = [k + 1 for k, line in enumerate(path.read_text().splitlines())
             if line.startswith(start)]
    assert len(lines) == 1, (path, start, lines)
    return lines[0]


def _issue(err: InputError, entity: str) -> Issue:
    issues = [i for i in err.issues if i.entity == entity]
    assert len(issues) == 1, [str(i) for i in err.issues]
    return issues[0]


def _break_mapping(folder: Path) -> tuple[str, str]:
    with (folder / "mapping.tsv").open("a") as fh:
        fh.write("net_d_w9\tnet_d.parameters[fc9].weight\n")  # no layer fc9
    return "mapping.tsv", "net_d_w9"


def _break_hybridization(folder: Path) -> tuple[str, str]:
    path = folder / "hybridization.tsv"
    text = path.read_text()
    assert "net_d_in2\tB\n" in text
    path.write_text(text.replace("net_d_in2\tB\n", "net_d_in2\tB + kx\n"))  # kx: unknown
    return "hybridization.tsv", "net_d_in2"


def _break_parameters(folder: Path) -> tuple[str, str]:
    path = folder / "parameters.tsv"
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    df.loc[df.parameterId == "net_d_ps", "estimate"] = "maybe"
    df.to_csv(path, sep="\t", index=False)
    return "parameters.tsv", "net_d_ps"


@pytest.mark.parametrize("edit", [_break_mapping, _break_hybridization, _break_parameters],
                         ids=["mapping", "hybridization", "parameters"])
def test_rows_are_tsv_line_numbers(tmp_path, edit) -> None:
    path = write_dynamic_sciml(tmp_path / "p")
    name, entity = edit(path.parent)
    with pytest.raises(InputError) as err:
        sh.load_problem(path)
    issue = _issue(err.value, entity)
    line = _line(path.parent / name, f"{entity}\t")
    assert line > 2  # a data-row count (header excluded) would differ by one
    assert (issue.file, issue.row) == (str(path.parent / name), line)
    assert f"{path.parent / name}, row {line}" in str(err.value)


# ---- input elements placed by index -------------------------------------------------------
def _static(folder: Path, reversed_rows: bool) -> tuple[Path, nn.Module]:
    """net_s (before simulation) sets k2 from the numbers `X`; mapping rows of its two
    inputs in order or reversed."""
    module = b.seeded_mlp(5, [2, 3, 1], nn.Tanh)
    inputs = [("net_s_in1", "net_s.inputs[0][0]"), ("net_s_in2", "net_s.inputs[0][1]")]
    path = b.write_problem(
        folder, {"net_s": (module, True, ["x"])},
        mapping=[*(inputs[::-1] if reversed_rows else inputs),
                 ("net_s_out", "net_s.outputs[0][0]"), ("net_s_ps", "net_s.parameters")],
        hybridization=[("net_s_in1", str(X[0])), ("net_s_in2", str(X[1])),
                       ("k2", "net_s_out")],
        parameters=[{"parameterId": "k1", "parameterScale": "lin", "lowerBound": 0.01,
                     "upperBound": 10.0, "nominalValue": 0.6, "estimate": 1},
                    {"parameterId": "net_s_ps", "parameterScale": "lin",
                     "nominalValue": "array", "estimate": 1}])
    return path, module


@pytest.mark.parametrize("reversed_rows", [False, True], ids=["in_order", "reversed"])
def test_static_inputs_are_placed_by_index(tmp_path, reversed_rows) -> None:
    path, module = _static(tmp_path / "p", reversed_rows)
    k2 = b.net_value(module, X)  # direct torch evaluation
    assert abs(k2 - b.net_value(module, X[::-1])) > 1e-2  # a swap would show
    problem = sh.load_problem(path)
    (pre,) = problem.pre
    with torch.no_grad():
        y = problem.networks["net_s"](*network_arguments(pre.inputs["e1"], {}))
    assert float(y.reshape(-1)[0]) == pytest.approx(k2, abs=1e-14)
    sims = {"e1": b.simulate(0.6, k2, lambda t, a, bb: b.SBML_VALUES["gamma"])}
    assert sh.create_objective(problem).llh() == pytest.approx(
        b.log_likelihood(path.parent, sims), abs=1e-6)


def test_dynamic_inputs_are_placed_by_index(tmp_path) -> None:
    """net_d reads (A, B) although B's row comes first; the unrolled model's likelihood is
    the scipy solution with gamma = net_d(A, B) evaluated by torch."""
    path = write_dynamic_inputs(tmp_path / "p", 2, [("net_d_in2", 1, "B"),
                                                    ("net_d_in1", 0, "A")])
    module = b.seeded_mlp(2, [2, 3, 1], nn.Tanh)  # the module write_dynamic_inputs wrote
    problem = sh.load_problem(path)
    assert list(problem.unrolled["net_d"][0].inputs) == ["A", "B"]
    sims = {"e1": b.simulate(0.6, 0.4, lambda t, a, bb: b.net_value(module, [a, bb]))}
    swapped = {"e1": b.simulate(0.6, 0.4, lambda t, a, bb: b.net_value(module, [bb, a]))}
    llh = sh.create_objective(problem).llh()
    assert llh == pytest.approx(b.log_likelihood(path.parent, sims), abs=1e-6)
    assert abs(llh - b.log_likelihood(path.parent, swapped)) > 1e-3  # a swap would show


@pytest.mark.parametrize("n_in, inputs, entity, fragment", [
    (2, [("net_d_in1", 0, "A"), ("net_d_in2", 1, "B"), ("net_d_in3", 2, "A + B")],
     "net_d_in3", "'net_d.inputs[0][2]' names element 2 of input argument 0, but network "
                  "'net_d' takes 2 value(s) there"),
    (3, [("net_d_in1", 0, "A"), ("net_d_in2", 2, "B")],
     "net_d_in2", "'net_d.inputs[0][2]' names element 2 of input argument 0: element(s) [1] "
                  "of it are not mapped"),
    (3, [("net_d_in1", 0, "A"), ("net_d_in2", 1, "B")],
     "net_d_in2", "'net_d.inputs[0][1]' is the last element mapped of input argument 0, but "
                  "network 'net_d' takes 3 value(s) there: element(s) [2] of it are not"),
    (2, [("net_d_in1", 0, "A"), ("net_d_in2", 0, "B")],
     "net_d_in2", "'net_d.inputs[0][0]' names element 0 of input argument 0, which "
                  "'net_d_in1' (row 2) maps already"),
], ids=["out_of_range", "gap", "missing_last", "duplicate"])
def test_bad_input_indices_are_refused_by_row(tmp_path, n_in, inputs, entity,
                                              fragment) -> None:
    path = write_dynamic_inputs(tmp_path / "p", n_in, inputs)
    mapping = path.parent / "mapping.tsv"
    with pytest.raises(InputError) as err:
        sh.load_problem(path)
    issue = _issue(err.value, entity)
    assert (issue.file, issue.row, issue.column) == \
        (str(mapping), _line(mapping, f"{entity}\t"), "modelEntityId")
    assert fragment in issue.message


def test_a_gap_is_refused_without_the_input_size(tmp_path) -> None:
    """Where the graph does not tell the argument's size (no sizes given), a gap is still
    one: element 3 without 1 and 2."""
    mapping = tmp_path / "mapping.tsv"
    pd.DataFrame([("a", "net.inputs[0][0]"), ("b", "net.inputs[0][3]"),
                  ("c", "net.inputs[1][0]")],
                 columns=["petabEntityId", "modelEntityId"]).to_csv(mapping, sep="\t",
                                                                     index=False)
    rows = read_mapping([mapping])
    assert [r.row for r in rows] == [2, 3, 4]
    with pytest.raises(InputError) as err:
        check_input_indices(rows, {"net": {}})
    (issue,) = err.value.issues
    assert (issue.row, issue.entity) == (3, "b")
    assert "element(s) [1, 2] of it are not mapped" in issue.message
    check_input_indices([rows[0], rows[2]], {"net": {}})  # each argument complete: accepted
