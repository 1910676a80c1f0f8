"""Networks evaluated during simulation: the `NetworkTerm` that unrolls one into the SBML
(hand-written; the unroll itself is `sbmlhybrid.hybrid.hybridize`).

What feeds each input element (PEtab SciML spec, dynamic hybridization):

* a model entity or ``time`` named in the hybridization table: read as is;
* a math expression of model species, parameters and ``time`` (``2*A + k1``): an SBML
  assignment rule named like the input's PEtab id (parameter-table parameters the model
  lacks are added as constants, their values set from the table);
* an array-file input (a whole forward argument, ``net.inputs[i]``; hybridization value
  ``array`` or no row): one constant SBML parameter per element, ``<inputId>__<k>``
  (row-major), its value per experiment set through the v1 condition table, so AMICI treats
  it as a fixed per-condition constant. The arguments are concatenated (the graph's ``cat``),
  so their sizes must add up to the first layer's ``in_features``.

Outputs go where the hybridization table sends them, or to a placeholder assignment rule
named like the output id when only an observable uses it.
"""

from __future__ import annotations

import math
import re
from typing import Any

import libsbml
import pandas as pd
import petab.v1 as petab
from torch import nn

from sbmlhybrid.errors import InputError, Issue, NotSupportedError
from sbmlhybrid.hybrid import NetworkTerm
from sbmlhybrid.hybrid.hybridize import set_assignment_rule
from sbmlhybrid.problem.v2 import DEFAULT_CONDITION
from sbmlhybrid.sciml.inputs import ArrayInput, array_for, parse_expression
from sbmlhybrid.sciml.mapping import check_output_indices
from sbmlhybrid.sciml.routing import InputSlot, as_sequential

__all__ = ["dynamic_term", "with_assignments"]


def _is_array(state: Any, slot: InputSlot) -> bool:
    return slot.index is None or slot.source == "array" or \
        (slot.source is None and slot.petab_id in state.arrays)


def _entity_input(state: Any, nn_id: str, slot: InputSlot) -> str:
    """The SBML symbol of one input element (a rule for an expression)."""
    src = slot.source
    where = state.hyb_where.get(slot.petab_id, Issue("", state.where, entity=slot.petab_id))
    if src is None:
        raise NotSupportedError(Issue(
            f"network {nn_id!r} input {slot.petab_id!r}: a network evaluated during simulation "
            "needs an expression of model entities for each input (hybridization table)",
            where.file, where.row, "targetValue", slot.petab_id))
    if src in state.sbml_ids or src == "time":
        return src
    expr = parse_expression(src, where)
    symbols = sorted(str(s) for s in expr.free_symbols)
    unknown = [s for s in symbols if s not in state.sbml_ids and s not in state.mech.index
               and s != "time"]
    if unknown:
        raise InputError(Issue(f"network {nn_id!r} input {slot.petab_id!r}: {src!r} uses "
                               f"{unknown}, which are neither model entities nor parameters",
                               where.file, where.row, "targetValue", slot.petab_id))
    if slot.petab_id in state.sbml_ids:
        raise InputError(Issue(f"network input id {slot.petab_id!r} is also a model entity",
                               where.file, where.row, "targetId", slot.petab_id))
    for s in symbols:
        if s not in state.sbml_ids and s != "time":  # a parameter-table parameter
            p = state.model.createParameter()
            p.setId(s)
            p.setConstant(True)
            p.setValue(float(state.mech.loc[s, petab.NOMINAL_VALUE]))
            state.sbml_ids.add(s)
    try:
        set_assignment_rule(state.model, slot.petab_id, str(src))
    except InputError as err:
        raise InputError(Issue(f"network {nn_id!r} input {slot.petab_id!r}: {err.issues[0]}",
                               where.file, where.row, "targetValue", slot.petab_id)) from err
    state.sbml_ids.add(slot.petab_id)
    return slot.petab_id


def _experiment_arrays(state: Any, nn_id: str, slot: InputSlot) -> dict[str, ArrayInput]:
    """experiment id -> the array of an array input (InputError if one is missing)."""
    out = {}
    for eid in state.used_exps:
        arr = array_for(state.arrays.get(slot.petab_id, {}), slot.petab_id,
                        state.exp_conditions.get(eid, []))
        if arr is None:
            raise InputError(Issue(f"network {nn_id!r}: no array for input {slot.petab_id!r} "
                                   f"in experiment {eid!r} (array files: no dataset "
                                   "inputs/<id>/0 or one naming its first condition)",
                                   state.where, entity=slot.petab_id))
        out[eid] = arr
    return out


def _check_sizes(nn_id: str, n_in: int, n_scalar: int,
                 arrays: dict[str, dict[str, ArrayInput]]) -> None:
    """Array arguments: 1-D, one size in every experiment, sizes adding up to the inputs
    the first layer takes."""
    issues = []
    sizes = {}
    for pid, per_exp in arrays.items():
        first = next(iter(per_exp.values()))
        for a in per_exp.values():
            if a.value.ndim != 1 or a.value.shape != first.value.shape:
                issues.append(a.issue(f"network {nn_id!r} takes a 1-D array of one size "
                                      f"in every experiment ({first.where})"))
        sizes[pid] = first.value.size
    expected = n_in - n_scalar
    if not issues and sum(sizes.values()) != expected:
        for per_exp in arrays.values():
            for a in per_exp.values():
                issues.append(a.issue(
                    f"network {nn_id!r} takes {n_in} inputs in its first layer, {n_scalar} of "
                    f"them model entities: the array input(s) must give {expected} value(s)"))
    if issues:
        raise InputError(issues, header="Array inputs do not fit the network")


def _array_parameters(state: Any, nn_id: str, pid: str, per_exp: dict[str, ArrayInput],
                      assign: dict[str, dict[str, float]]) -> list[str]:
    """One constant SBML parameter per array element, values per v1 condition."""
    n = next(iter(per_exp.values())).value.size
    ids = [f"{pid}__{k}" for k in range(n)]
    for sid in ids:
        if sid in state.sbml_ids:
            raise InputError(Issue(f"id {sid!r} for array input {pid!r} is a model entity",
                                   state.where, entity=pid))
        p = state.model.createParameter()
        p.setId(sid)
        p.setConstant(True)
        p.setValue(0.0)
        state.sbml_ids.add(sid)
    for eid, arr in per_exp.items():
        for cond in state.exp_map.get(eid, (None, DEFAULT_CONDITION)):
            if cond is None:
                continue
            for sid, v in zip(ids, arr.value.ravel()):
                if assign.setdefault(cond, {}).get(sid, v) != v:
                    raise InputError(arr.issue(f"condition {cond!r} is shared by "
                                               "experiments with different arrays"))
                assign[cond][sid] = float(v)
    return ids


def _inputs(state: Any, nn_id: str, n_in: int) -> list[str]:
    """SBML symbols of the network's inputs in forward order (cat of the arguments)."""
    slots = state.ios[nn_id].inputs
    arrays = {s.petab_id: _experiment_arrays(state, nn_id, s) for s in slots
              if _is_array(state, s)}
    n_scalar = sum(1 for s in slots if s.petab_id not in arrays)
    if arrays:
        _check_sizes(nn_id, n_in, n_scalar, arrays)
    assign: dict[str, dict[str, float]] = {}
    inputs: list[str] = []
    for slot in slots:
        if slot.petab_id in arrays:
            inputs += _array_parameters(state, nn_id, slot.petab_id, arrays[slot.petab_id],
                                        assign)
        else:
            inputs.append(_entity_input(state, nn_id, slot))
    if assign:
        state.cond_df = with_assignments(state.cond_df, assign, state.model)
    return inputs


def _outputs(state: Any, nn_id: str) -> tuple[list[str], list[str]]:
    """Target ids and hybridize kinds of the network's outputs."""
    io = state.ios[nn_id]
    tgt_ids, kinds = [], []
    for j in range(max(io.outputs) + 1 if io.outputs else 0):
        oid = io.outputs.get(j, f"{nn_id}_output__{j}")
        tgts = io.targets.get(oid, [])
        if len(tgts) > 1:
            raise NotSupportedError(Issue(f"network {nn_id!r} output {oid!r} sets several "
                                          f"entities {tgts}", state.where, entity=oid))
        if tgts:
            state.odf[petab.OBSERVABLE_FORMULA] = [
                re.sub(rf"\b{re.escape(oid)}\b", tgts[0], str(f))
                for f in state.odf[petab.OBSERVABLE_FORMULA]]
            tgt_ids.append(tgts[0])
            kinds.append("parameter" if state.model.getParameter(tgts[0]) is not None
                         else "auto")
        else:
            set_assignment_rule(state.model, oid, "0")  # placeholder, replaced by the net
            state.sbml_ids.add(oid)
            tgt_ids.append(oid)
            kinds.append("assignment")
    return tgt_ids, kinds


def dynamic_term(state: Any, nn_id: str) -> tuple[NetworkTerm, dict[int, str], list[int]]:
    """The `NetworkTerm` of one network evaluated during simulation.

    Args:
        state: The importer's state (`sbmlhybrid.sciml.importer`): its SBML model, tables,
            network slots and arrays; the model and condition table are edited in place.
        nn_id: The network.

    Returns:
        (term, Sequential index -> layer id).

    Raises:
        InputError: bad expressions or arrays, output elements the network does not
            compute (file, row and entity named).
        NotSupportedError: a graph or layer that cannot be unrolled into SBML.
    """
    seq, layer_of = as_sequential(state.nets[nn_id])
    linear = [m for m in seq if isinstance(m, nn.Linear)]
    first = linear[0]
    # the chain's activations are element-wise: the last Linear sets the output size
    check_output_indices(state.mapping_rows, nn_id, linear[-1].out_features)
    inputs = _inputs(state, nn_id, first.in_features)
    tgt_ids, kinds = _outputs(state, nn_id)
    bound = 10.0 + 2 * max(float(p.detach().abs().max()) for p in seq.parameters())
    scales = {i: (0.0, 1.0) for i in inputs}
    term = NetworkTerm(nn_id, seq, inputs, tgt_ids, kind=kinds, input_scales=scales,
                       weight_bound=bound)
    return term, layer_of


def with_assignments(cond_df: pd.DataFrame, assign: dict[str, dict[str, Any]],
                     model: libsbml.Model) -> pd.DataFrame:
    """Condition table with parameter values or ids set per condition (unset: the model's
    value)."""
    records = {c: dict(cond_df.loc[c]) for c in cond_df.index}
    for c, values in assign.items():
        records.setdefault(c, {}).update(values)
    columns = list(dict.fromkeys([*cond_df.columns, *(k for v in assign.values() for k in v)]))
    rows = []
    for c, rec in records.items():
        row: dict[str, Any] = {petab.CONDITION_ID: c}
        for col in columns:
            v = rec.get(col, math.nan)
            if not isinstance(v, str) and pd.isna(v) and model.getParameter(col) is not None:
                v = float(model.getParameter(col).getValue())
            row[col] = v
        rows.append(row)
    df = pd.DataFrame(rows, columns=[petab.CONDITION_ID, *columns]).astype(object)
    for col in columns:  # all-numeric columns stay float (AMICI: object dtype = overridden)
        if all(isinstance(v, float | int) for v in df[col]):
            df[col] = df[col].astype(float)
    return df.set_index(petab.CONDITION_ID)

