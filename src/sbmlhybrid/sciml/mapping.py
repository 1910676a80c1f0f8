"""The mapping table of a PEtab SciML problem: read with row numbers, checked against the
networks (hand-written).

``modelEntityId`` syntax (PEtab SciML spec, mapping table)::

    $nnId.inputs[$argument]            a whole forward argument (an array-file input)
    $nnId.inputs[$argument][$index]    one element of it
    $nnId.outputs[$argument][$index]
    $nnId.parameters{[$layerId]{.$arrayId{[$i, $j, ...]}}}

Every entry that starts with a declared network id (or has the shape of a network
reference, ``x.inputs[...]``, ``x.outputs[...]``, ``x.parameters...``) must name a network of
the problem YAML, an existing forward argument, layer, array and index; otherwise
`check_mapping` raises `InputError` naming the mapping file, its row and the PEtab id.
Output elements are checked against the network's output size by `check_output_indices`
once the importer knows it. Input elements: ``$index`` is the element's position in the
argument (spec), so `check_input_indices` requires each argument's elements 0..n-1 mapped
once each (n: the argument's size where the graph tells it, else the largest index + 1).

Rows are TSV line numbers (the header is row 1), as in the PEtab v1/v2 loaders.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from sbmlhybrid.errors import InputError, Issue

__all__ = ["PARAM_REF", "SLOT", "MappingRow", "check_input_indices", "check_mapping",
           "check_output_indices", "mapping_dict", "read_mapping"]

#: ``net.inputs[i]``, ``net.inputs[i][j]``, ``net.outputs[i][j]``
SLOT = re.compile(r"^(?P<net>[A-Za-z_]\w*)\.(?P<kind>inputs|outputs)\[(?P<i>\d+)\]"
                  r"(?:\[(?P<j>\d+)\])?$")
#: ``net.parameters``, ``net.parameters[layer]``, ``...[layer].array``, ``...array[i, j]``
PARAM_REF = re.compile(
    r"^(?P<net>[A-Za-z_]\w*)\.parameters"
    r"(?:\[(?P<layer>[A-Za-z_]\w*)\](?:\.(?P<array>[A-Za-z_]\w*)(?:\[(?P<index>[\d,\s]+)\])?)?)?$"
)
_NETLIKE = re.compile(r"^(?P<net>[A-Za-z_]\w*)\.(?:inputs|outputs|parameters)\b")


@dataclass(frozen=True)
class MappingRow:
    """One mapping-table row (``row``: its TSV line number, the header being row 1)."""

    petab_id: str
    model_id: str
    file: str
    row: int


def read_mapping(files: list[Path]) -> list[MappingRow]:
    """The rows of the mapping files, values stripped.

    Raises:
        InputError: a file without ``petabEntityId`` / ``modelEntityId`` columns.
    """
    rows: list[MappingRow] = []
    for path in files:
        if not path.is_file():
            raise InputError(Issue("file not found", file=str(path)))
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            header = {str(k).strip() for k in reader.fieldnames or []}
            if not {"petabEntityId", "modelEntityId"} <= header:
                raise InputError(Issue("mapping table needs columns petabEntityId and "
                                       "modelEntityId", file=str(path)))
            for raw in reader:
                row = {str(a).strip(): (b or "").strip() for a, b in raw.items() if a}
                # line_num: the line just read (blank lines, which DictReader skips, count)
                rows.append(MappingRow(row["petabEntityId"], row["modelEntityId"], str(path),
                                       reader.line_num))
    return rows


def mapping_dict(rows: list[MappingRow]) -> dict[str, str]:
    """petabEntityId -> modelEntityId (later rows win)."""
    return {r.petab_id: r.model_id for r in rows}


def _check_parameters(m: re.Match[str], net: nn.Module) -> str | None:
    """Why a ``net.parameters...`` reference names nothing, or None."""
    layer, array, index = m.group("layer"), m.group("array"), m.group("index")
    if layer is None:
        return None
    layers = dict(net.named_children())
    if layer not in layers:
        return f"network {m.group('net')!r} has no layer {layer!r} (layers: {sorted(layers)})"
    if array is None:
        return None
    arrays = dict(layers[layer].named_parameters(recurse=False)) | \
        dict(layers[layer].named_buffers(recurse=False))
    if array not in arrays:
        return (f"layer {layer!r} of network {m.group('net')!r} has no array {array!r} "
                f"(arrays: {sorted(arrays)})")
    if index is not None:
        idx = tuple(int(i) for i in index.split(","))
        shape = tuple(arrays[array].shape)
        if len(idx) != len(shape) or any(not 0 <= i < n for i, n in zip(idx, shape)):
            return f"index {list(idx)} is outside array {layer}.{array} of shape {shape}"
    return None


def _problem_of(row: MappingRow, nets: dict[str, nn.Module]) -> str | None:
    model_id = row.model_id
    like = _NETLIKE.match(model_id)
    if like is None:
        nn_id = model_id.partition(".")[0]
        if "." in model_id and nn_id in nets:  # SBML and PEtab ids have no dots
            return (f"{model_id!r} starts with network id {nn_id!r} but is not a network "
                    f"reference ({nn_id}.inputs[i], {nn_id}.inputs[i][j], "
                    f"{nn_id}.outputs[0][j], {nn_id}.parameters[layer].array[index])")
        return None  # a model entity: checked by the PEtab tables' own validation
    nn_id = like.group("net")
    if nn_id not in nets:
        return f"names network {nn_id!r}, which the problem YAML does not declare " \
               f"(networks: {sorted(nets)})"
    slot, par = SLOT.match(model_id), PARAM_REF.match(model_id)
    if re.fullmatch(r"\w+\.(inputs|outputs)", model_id):
        return f"{model_id!r}: whole-network references are not supported; name an " \
               "argument (net.inputs[i]) or an element (net.inputs[i][j])"
    if slot is None and par is None:
        return f"{model_id!r} is not a valid network reference"
    if par is not None:
        return _check_parameters(par, nets[nn_id])
    if slot.group("kind") == "inputs":
        n_args = len(getattr(nets[nn_id], "input_ids", []))
        arg = int(slot.group("i"))
        if arg >= n_args:
            return (f"{model_id!r} names input argument {arg}, but network {nn_id!r} has "
                    f"{n_args} input argument(s)")
    return None


def check_output_indices(rows: list[MappingRow], nn_id: str, n_outputs: int) -> None:
    """Every ``<nn_id>.outputs[0][j]`` row names an element the network computes.

    Checked once the routing knows the output size (the last Linear layer of a network
    unrolled into the SBML; a trial evaluation of a static one), which the mapping check
    cannot know from the network YAML alone.

    Args:
        rows: The mapping table.
        nn_id: The network.
        n_outputs: Number of elements of its first output.

    Raises:
        InputError: one issue per row with ``j >= n_outputs`` (file, row, column
            ``modelEntityId``, PEtab id).
    """
    issues = []
    for row in rows:
        m = SLOT.match(row.model_id)
        if m is None or m.group("net") != nn_id or m.group("kind") != "outputs" \
                or m.group("j") is None or int(m.group("j")) < n_outputs:
            continue
        issues.append(Issue(f"mapping of {row.petab_id!r}: {row.model_id!r} names output "
                            f"element {m.group('j')}, but network {nn_id!r} computes "
                            f"{n_outputs} output value(s)", row.file, row.row,
                            "modelEntityId", row.petab_id))
    if issues:
        raise InputError(issues, header="Invalid PEtab SciML mapping table")


def check_mapping(rows: list[MappingRow], nets: dict[str, nn.Module]) -> None:
    """Every network reference of the mapping table names something that exists.

    Raises:
        InputError: one issue per bad row (file, row, column ``modelEntityId``, PEtab id).
    """
    issues = []
    for row in rows:
        why = _problem_of(row, nets)
        if why:
            issues.append(Issue(f"mapping of {row.petab_id!r}: {why}", row.file, row.row,
                                "modelEntityId", row.petab_id))
    if issues:
        raise InputError(issues, header="Invalid PEtab SciML mapping table")


def _input_elements(rows: list[MappingRow], nn_id: str
                    ) -> dict[int, list[tuple[int, MappingRow]]]:
    """argument -> [(element index, row)] of the ``<nn_id>.inputs[i][j]`` rows in table
    order; a PEtab id mapped twice counts once, by its last row (as in `mapping_dict`)."""
    last = {r.petab_id: k for k, r in enumerate(rows)}
    out: dict[int, list[tuple[int, MappingRow]]] = {}
    for k, row in enumerate(rows):
        m = SLOT.match(row.model_id)
        if last[row.petab_id] == k and m and m.group("net") == nn_id \
                and m.group("kind") == "inputs" and m.group("j") is not None:
            out.setdefault(int(m.group("i")), []).append((int(m.group("j")), row))
    return out


def _argument_issues(nn_id: str, arg: int, entries: list[tuple[int, MappingRow]],
                     size: int | None) -> list[Issue]:
    """Duplicate, out-of-range and unmapped element indices of one input argument."""
    def issue(row: MappingRow, why: str) -> Issue:
        return Issue(f"mapping of {row.petab_id!r}: {row.model_id!r} {why}", row.file,
                     row.row, "modelEntityId", row.petab_id)

    issues, first = [], {}
    for j, row in entries:
        if size is not None and j >= size:
            issues.append(issue(row, f"names element {j} of input argument {arg}, but "
                                     f"network {nn_id!r} takes {size} value(s) there"))
        elif j in first:
            issues.append(issue(row, f"names element {j} of input argument {arg}, which "
                                     f"{first[j].petab_id!r} (row {first[j].row}) maps "
                                     "already"))
        else:
            first[j] = row
    n = size if size is not None else max(first, default=-1) + 1
    missing = [j for j in range(n) if j not in first]
    if not first or not missing:
        return issues
    # the index is the element's position (spec): name the first row a gap would misplace
    later = [j for j in sorted(first) if j > missing[0]]
    if later:
        why = f"names element {later[0]} of input argument {arg}"
    else:
        later = [max(first)]
        why = f"is the last element mapped of input argument {arg}, but network " \
              f"{nn_id!r} takes {n} value(s) there"
    issues.append(issue(first[later[0]], f"{why}: element(s) {missing} of it are not mapped "
                                         "(the index is the position in the argument; map "
                                         "each element once)"))
    return issues


def check_input_indices(rows: list[MappingRow], sizes: dict[str, dict[int, int]]) -> None:
    """Every ``net.inputs[i][j]`` row names its own element, and together they fill each
    argument: ``j`` is the position in argument ``i`` (PEtab SciML spec), so a gap would
    shift later elements into the wrong slot.

    Args:
        rows: The mapping table.
        sizes: Network id -> {argument: number of values it takes} for the networks to
            check; arguments whose size the graph does not tell are left out.

    Raises:
        InputError: one issue per duplicate or out-of-range index and per argument with
            unmapped elements (file, row, column ``modelEntityId``, PEtab id).
    """
    issues = []
    for nn_id, known in sizes.items():
        for arg, entries in sorted(_input_elements(rows, nn_id).items()):
            issues += _argument_issues(nn_id, arg, entries, known.get(arg))
    if issues:
        raise InputError(issues, header="Invalid PEtab SciML mapping table")
