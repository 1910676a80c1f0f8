"""Import of whole PEtab SciML problems: `load_sciml_problem(yaml) -> SciMLProblem`.

Routing of each network (hand-written; see `sbmlhybrid.sciml.routing` for the tables):

* ``pre_initialization: true`` (static inputs: numbers, parameters, condition values, array
  files): evaluated in torch before simulation, once per experiment. Output j of experiment
  e becomes the estimated v1 parameter ``<outputId>__<e>``, assigned to the output's model
  targets through the v1 condition table. Gradients: AMICI's gradient w.r.t. those
  parameters, pulled back through the network (and its parameter-valued inputs) by torch.
* otherwise (inputs are model states or parameters): unrolled into SBML assignment rules
  with `sbmlhybrid.hybrid.hybridize` (kind ``parameter`` for model parameters it replaces,
  an assignment-rule placeholder named like the output id where an observable uses it), so
  AMICI's forward/adjoint sensitivities give the weight gradients.

The tables (experiments, long condition table, observables, measurements) go through the
PEtab v2 -> v1 conversion of `sbmlhybrid.problem.v2`. In the compiled model every parameter
is estimated (weights included): ``estimate = 0`` is applied here, by fixing values in
`SciMLObjective`, so that problems differing only in what is frozen share one compiled model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import petab.v1 as petab
import torch
import yaml
from petab.v2.core import ConditionTable, ExperimentTable, MeasurementTable

from sbmlhybrid.errors import InputError, Issue, NotSupportedError
from sbmlhybrid.hybrid import NetworkTerm, hybridize
from sbmlhybrid.hybrid.hybridize import set_assignment_rule
from sbmlhybrid.problem.load import Problem, SolverSettings, _finish, _load_sbml
from sbmlhybrid.problem.v2 import (
    DEFAULT_CONDITION,
    experiments_to_conditions,
    measurements_to_v1,
)
from sbmlhybrid.sciml.hdf5 import read_inputs
from sbmlhybrid.sciml.objective import SciMLObjective
from sbmlhybrid.sciml.problem import array_files, initialize_networks, sciml_section
from sbmlhybrid.sciml.routing import NetworkIO, as_sequential, network_io

_NET_PARAM = re.compile(r"^(?P<net>[A-Za-z_]\w*)\.parameters")
#: Tolerances used unless the YAML sets ``sbmlhybrid: solver:`` (gradients to ~1e-8).
SCIML_SOLVER = {"rtol": 1e-10, "atol": 1e-12, "max_steps": 100_000}
OUTPUT_BOUND = 1e8


@dataclass
class PreNetwork:
    """A pre-initialization network and, per experiment, its input sources.

    Attributes:
        nn_id: Network id.
        io: Its slots.
        inputs: experiment id -> per argument, per element: a number, a parameter id
            (str) or an array (whole-argument array input).
        out_params: experiment id -> output index -> v1 parameter id.
    """

    nn_id: str
    io: NetworkIO
    inputs: dict[str, list[list[Any]]]
    out_params: dict[str, dict[int, str]]


@dataclass
class SciMLProblem:
    """A PEtab SciML problem compiled for AMICI.

    Attributes:
        source: The problem YAML.
        problem: The v1 problem AMICI simulates (a `HybridProblem` when networks were
            unrolled into the SBML).
        networks: Network id -> module with nominal parameters.
        estimate: Network id -> {"layer.array": bool mask}, True = estimated.
        mech: Mechanistic parameter table (sciml table rows not mapped to networks),
            indexed by parameterId.
        pre: Pre-initialization networks.
        unrolled: Network id -> (hybridize prefix, Sequential index -> layer id).
        experiments: v2 experiment id -> (pre-equilibration, simulation) v1 condition ids.
    """

    source: Path
    problem: Problem
    networks: dict[str, torch.nn.Module]
    estimate: dict[str, dict[str, np.ndarray]]
    mech: pd.DataFrame
    pre: list[PreNetwork]
    unrolled: dict[str, tuple[Any, dict[int, str]]]
    experiments: dict[str, tuple[str | None, str]]

    def objective(self, sensitivity_method: str | None = None) -> SciMLObjective:
        """Objective over mechanistic and network parameters (compiled or cached)."""
        return SciMLObjective(self, sensitivity_method)

    def llh(self) -> float:
        """Log-likelihood at the nominal parameters."""
        return self.objective().llh()

    def gradient(self) -> np.ndarray:
        """Gradient of the negative log-likelihood at the nominal parameters."""
        return self.objective().evaluate().grad  # type: ignore[return-value]


def _tsv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(Issue("file not found", file=str(path)))
    return pd.read_csv(path, sep="\t", float_precision="round_trip", dtype={"conditionId": str})


def _files(config: dict[str, Any], base: Path, key: str) -> list[Path]:
    return [base / str(f) for f in (config.get(key) or [])]


def _value(text: Any) -> Any:
    """Number (float) if `text` parses as one, else the stripped string."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return str(text).strip()


def load_sciml_problem(path: str | Path, solver: SolverSettings | None = None) -> SciMLProblem:
    """Load a PEtab SciML problem (PEtab v2-style tables + ``extensions: sciml``).

    Args:
        path: Problem YAML.
        solver: Solver settings; default: the YAML's ``sbmlhybrid: solver:`` or
            `SCIML_SOLVER`.

    Raises:
        InputError: unreadable files, missing values.
        NotSupportedError: a network graph or layer that cannot be routed (named), or a
            PEtab feature without a v1 equivalent.
    """
    path = Path(path)
    config = yaml.safe_load(path.read_text())
    base, where = path.parent, str(path)
    section = sciml_section(path)
    refs = section.get("neural_networks", section.get("neural_nets")) or {}
    init = initialize_networks(path)
    nets = {k: v.net for k, v in init.items()}
    mapping: dict[str, str] = {}
    for f in _files(config, base, "mapping_files"):
        df = _tsv(f)
        mapping |= dict(zip(df["petabEntityId"], df["modelEntityId"].fillna("")))
    hyb: dict[str, str] = {}
    for f in [base / str(x) for x in section.get("hybridization_files") or []]:
        df = _tsv(f)
        hyb |= {str(k): str(v).strip() for k, v in zip(df["targetId"], df["targetValue"])}
    ios = network_io(nets, mapping, hyb, where)
    input_ids = {s.petab_id for io in ios.values() for s in io.inputs}
    net_param_ids = {p for p, m in mapping.items() if _NET_PARAM.match(str(m))}
    models = config.get("model_files") or {}
    if len(models) != 1:
        raise NotSupportedError(Issue("exactly one model file is supported", where))
    doc = _load_sbml(base / str(next(iter(models.values()))["location"]))
    model = doc.getModel()
    # --- parameter table: mechanistic rows (network inputs and weights are torch-side) ---
    pdf = pd.concat([_tsv(f) for f in _files(config, base, "parameter_files")])
    pdf = pdf.set_index("parameterId")
    if petab.PARAMETER_SCALE not in pdf:
        pdf[petab.PARAMETER_SCALE] = petab.LIN
    pdf[petab.ESTIMATE] = [int(str(v).strip().lower() in ("1", "true", "1.0"))
                           for v in pdf[petab.ESTIMATE]]
    mech = pdf.drop(index=[p for p in pdf.index if p in net_param_ids])
    mech[petab.NOMINAL_VALUE] = mech[petab.NOMINAL_VALUE].astype(float)
    targets = {t for io in ios.values() for ts in io.targets.values() for t in ts}
    v1_pdf = mech.drop(index=[p for p in mech.index if p in input_ids or p in targets])
    v1_pdf = v1_pdf[[petab.PARAMETER_SCALE, petab.LOWER_BOUND, petab.UPPER_BOUND,
                     petab.NOMINAL_VALUE, petab.ESTIMATE]].copy()
    v1_pdf[petab.ESTIMATE] = 1  # frozen values are fixed in SciMLObjective (shared builds)
    # --- experiments and conditions; changes of network inputs are consumed by torch ---
    exp_df = pd.concat([_tsv(f) for f in _files(config, base, "experiment_files")]) \
        if config.get("experiment_files") else pd.DataFrame(columns=["experimentId"])
    experiments = ExperimentTable.from_df(exp_df).experiments if len(exp_df) else []
    changes: dict[str, list[tuple[str, Any]]] = {}
    net_changes: dict[str, dict[str, Any]] = {}
    for f in _files(config, base, "condition_files"):
        for c in ConditionTable.from_df(_tsv(f)).conditions:
            for ch in c.changes:
                if ch.target_id in input_ids:
                    net_changes.setdefault(c.id, {})[ch.target_id] = _value(ch.target_value)
                else:
                    changes.setdefault(c.id, []).append((ch.target_id, ch.target_value))
    cond_df, exp_map = experiments_to_conditions(experiments, changes, model,
                                                 set(v1_pdf.index), where)
    mdf = pd.concat([_tsv(f) for f in _files(config, base, "measurement_files")])
    mdf_v1 = measurements_to_v1(MeasurementTable.from_df(mdf).measurements, exp_map)
    odf = pd.concat([_tsv(f) for f in _files(config, base, "observable_files")])
    odf = odf.set_index(petab.OBSERVABLE_ID)
    # --- pre-initialization networks: per-experiment output parameters ---
    exp_conditions = {e.id: [c for p in e.sorted_periods if p.time != -math.inf
                             for c in p.condition_ids] for e in experiments}
    used_exps = list(dict.fromkeys(
        (m.experiment_id or "") for m in MeasurementTable.from_df(mdf).measurements))
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for af in array_files(path):
        for k, v in read_inputs(af).items():
            arrays.setdefault(k, {}).update(v)
    pre: list[PreNetwork] = []
    sbml_ids = {e.getId() for e in doc.getListOfAllElements() if e.isSetId()}
    assign: dict[str, dict[str, Any]] = {}
    new_rows = []
    for nn_id, ref in refs.items():
        if not bool(ref.get("pre_initialization", ref.get("static", False))):
            continue
        io = ios[nn_id]
        per_exp: dict[str, list[list[Any]]] = {}
        out_params: dict[str, dict[int, str]] = {}
        obs_text = " ".join(map(str, odf[petab.OBSERVABLE_FORMULA]))
        for eid in used_exps:
            conds = exp_conditions.get(eid, [])
            args: dict[int, list[Any]] = {}
            for slot in io.inputs:
                val: Any = None
                for c in conds:
                    val = net_changes.get(c, {}).get(slot.petab_id, val)
                if val is None:
                    val = _value(slot.source) if slot.source is not None else slot.petab_id
                if val == "array":
                    group = arrays.get(slot.petab_id, {})
                    key = next((c for c in conds if c in group), "0")
                    if key not in group:
                        raise InputError(Issue(f"no array input {slot.petab_id!r} for "
                                               f"experiment {eid!r}", where))
                    val = group[key]
                if isinstance(val, str) and val not in pdf.index:
                    raise InputError(Issue(f"network {nn_id!r} input {slot.petab_id!r}: "
                                           f"{val!r} is not a parameter", where))
                args.setdefault(slot.arg, []).append(val)
            per_exp[eid] = [args[a] for a in sorted(args)]
            out_params[eid] = {}
            pre_c, sim_c = exp_map.get(eid, (None, DEFAULT_CONDITION))
            for j, oid in io.outputs.items():
                tgts = list(io.targets.get(oid, []))
                if re.search(rf"\b{re.escape(oid)}\b", obs_text):
                    tgts.append(oid)
                    if oid not in sbml_ids:  # a constant the condition table sets
                        p = model.createParameter()
                        p.setId(oid)
                        p.setConstant(True)
                        p.setValue(0.0)
                        sbml_ids.add(oid)
                if not tgts:
                    continue
                pid = f"{oid}__{eid or DEFAULT_CONDITION.strip('_')}"
                out_params[eid][j] = pid
                new_rows.append({"parameterId": pid, petab.PARAMETER_SCALE: petab.LIN,
                                 # never optimized directly; finite for PEtab v1
                                 petab.LOWER_BOUND: -OUTPUT_BOUND,
                                 petab.UPPER_BOUND: OUTPUT_BOUND,
                                 petab.NOMINAL_VALUE: 0.0, petab.ESTIMATE: 1})
                for t in tgts:
                    for c in (pre_c, sim_c):
                        if c is not None:
                            assign.setdefault(c, {})[t] = pid
        pre.append(PreNetwork(nn_id, io, per_exp, out_params))
    cond_df = _with_assignments(cond_df, assign, model)
    if new_rows:
        v1_pdf = pd.concat([v1_pdf, pd.DataFrame(new_rows).set_index("parameterId")])
    # --- dynamic networks: placeholders for outputs used by observables, then unroll ---
    terms: list[NetworkTerm] = []
    unrolled: dict[str, tuple[Any, dict[int, str]]] = {}
    for nn_id, ref in refs.items():
        if bool(ref.get("pre_initialization", ref.get("static", False))):
            continue
        io = ios[nn_id]
        seq, layer_of = as_sequential(nets[nn_id])
        inputs = []
        for slot in io.inputs:
            if slot.source is None or slot.source not in sbml_ids:
                raise NotSupportedError(Issue(
                    f"network {nn_id!r} input {slot.petab_id!r}: a network evaluated during "
                    "simulation needs model entities as inputs (hybridization table), got "
                    f"{slot.source!r}", where, entity=slot.petab_id))
            inputs.append(slot.source)
        tgt_ids, kinds = [], []
        for j in range(max(io.outputs) + 1 if io.outputs else 0):
            oid = io.outputs.get(j, f"{nn_id}_output__{j}")
            tgts = io.targets.get(oid, [])
            if len(tgts) > 1:
                raise NotSupportedError(Issue(f"network {nn_id!r} output {oid!r} sets several "
                                              f"entities {tgts}", where, entity=oid))
            if tgts:
                odf[petab.OBSERVABLE_FORMULA] = [re.sub(rf"\b{re.escape(oid)}\b", tgts[0], str(f))
                                                 for f in odf[petab.OBSERVABLE_FORMULA]]
                tgt_ids.append(tgts[0])
                kinds.append("parameter" if model.getParameter(tgts[0]) is not None else "auto")
            else:
                set_assignment_rule(model, oid, "0")  # placeholder, replaced by the network
                sbml_ids.add(oid)
                tgt_ids.append(oid)
                kinds.append("assignment")
        bound = 10.0 + 2 * max(float(p.detach().abs().max()) for p in seq.parameters())
        terms.append(NetworkTerm(nn_id, seq, inputs, tgt_ids, kind=kinds,
                                 input_scales={i: (0.0, 1.0) for i in inputs},
                                 weight_bound=bound))
        unrolled[nn_id] = (terms[-1], layer_of)
    mdf_v1 = petab.get_measurement_df(mdf_v1)
    used = set(mdf_v1[petab.SIMULATION_CONDITION_ID])
    if petab.PREEQUILIBRATION_CONDITION_ID in mdf_v1:
        used |= set(mdf_v1[petab.PREEQUILIBRATION_CONDITION_ID].dropna())
    cond_df = cond_df.loc[[c for c in cond_df.index if c in used]]
    odf = odf[[c for c in odf.columns if c in (
        petab.OBSERVABLE_FORMULA, petab.NOISE_FORMULA, petab.OBSERVABLE_TRANSFORMATION,
        petab.NOISE_DISTRIBUTION)]]
    # parameters only the networks read (e.g. condition values of network inputs) are
    # torch-side: PEtab v1 rejects parameter-table rows no model entity or table uses
    used = {e.getId() for e in doc.getListOfAllElements() if e.isSetId()}
    used |= {str(s) for f in [*odf[petab.OBSERVABLE_FORMULA], *odf[petab.NOISE_FORMULA]]
             for s in petab.math.sympify_petab(f).free_symbols}
    used |= {v for v in cond_df.to_numpy().ravel() if isinstance(v, str)}
    for col in (petab.OBSERVABLE_PARAMETERS, petab.NOISE_PARAMETERS):
        if col in mdf_v1:
            used |= {p for v in mdf_v1[col].dropna() for p in str(v).split(";")}
    v1_pdf = v1_pdf.loc[[p for p in v1_pdf.index if p in used]]
    v1 = petab.Problem(sbml_model=model, sbml_document=doc, condition_df=cond_df,
                       measurement_df=mdf_v1, observable_df=odf, parameter_df=v1_pdf)
    settings = solver or SolverSettings(**(((config.get("sbmlhybrid") or {}).get("solver"))
                                           or SCIML_SOLVER))
    name = f"sciml_{model.getId() or 'model'}"
    problem = _finish(v1, name, path, {"sbml": None}, settings)
    if terms:
        problem = hybridize(problem, terms, name=f"{name}_{'_'.join(unrolled)}")
    return SciMLProblem(path, problem, nets, {k: v.estimate for k, v in init.items()},
                        mech, pre, unrolled, exp_map)


def _with_assignments(cond_df: pd.DataFrame, assign: dict[str, dict[str, Any]],
                      model: Any) -> pd.DataFrame:
    """Condition table with network-output parameter ids set (unset: the model's value)."""
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


__all__ = ["SCIML_SOLVER", "PreNetwork", "SciMLProblem", "load_sciml_problem"]
