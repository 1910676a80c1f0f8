"""Import of whole PEtab SciML problems: `load_sciml_problem(yaml) -> SciMLProblem`.

Users reach it through the one front door, `sbmlhybrid.load_problem`, which sends every YAML
with a SciML extension section here. The YAML is parsed once; each step below reads what the
previous ones collected (`_Import`).

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
from pathlib import Path
from typing import Any

import libsbml
import numpy as np
import pandas as pd
import petab.v1 as petab
from petab.v2.core import ConditionTable, ExperimentTable, MeasurementTable

from sbmlhybrid.errors import InputError, Issue, NotSupportedError
from sbmlhybrid.hybrid import NetworkTerm, hybridize
from sbmlhybrid.hybrid.hybridize import set_assignment_rule
from sbmlhybrid.problem import SolverSettings

# private loader steps of the problem package, used here only: the SciML tables become a
# petab.v1 problem that must be validated exactly as a v1 YAML would be
from sbmlhybrid.problem.load import _finish, _load_sbml
from sbmlhybrid.problem.v2 import DEFAULT_CONDITION, experiments_to_conditions, measurements_to_v1
from sbmlhybrid.sciml.hdf5 import read_inputs
from sbmlhybrid.sciml.objective import SciMLObjective
from sbmlhybrid.sciml.problem import (
    array_files,
    initialize_networks,
    read_problem_yaml,
    sciml_section,
    table_files,
)
from sbmlhybrid.sciml.routing import NetworkIO, as_sequential, network_io
from sbmlhybrid.sciml.sciml_problem import PreNetwork, SciMLProblem

_NET_PARAM = re.compile(r"^(?P<net>[A-Za-z_]\w*)\.parameters")
#: Tolerances used unless the YAML sets them in ``sbmlhybrid: solver:`` (gradients to ~1e-8);
#: keys the YAML leaves out keep these values.
SCIML_SOLVER = {"rtol": 1e-10, "atol": 1e-12, "max_steps": 100_000}
OUTPUT_BOUND = 1e8
_V1_PARAMETER_COLUMNS = [petab.PARAMETER_SCALE, petab.LOWER_BOUND, petab.UPPER_BOUND,
                         petab.NOMINAL_VALUE, petab.ESTIMATE]


def sciml_solver_settings(config: dict[str, Any]) -> SolverSettings:
    """`SCIML_SOLVER` updated with the YAML's ``sbmlhybrid: solver:`` entries."""
    given = (config.get("sbmlhybrid") or {}).get("solver") or {}
    if not isinstance(given, dict):
        raise InputError("'sbmlhybrid: solver:' must be a mapping of solver settings")
    return SolverSettings(**{**SCIML_SOLVER, **given})


def _tsv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(Issue("file not found", file=str(path)))
    return pd.read_csv(path, sep="\t", float_precision="round_trip", dtype={"conditionId": str})


def _tables(files: list[Path]) -> pd.DataFrame:
    return pd.concat([_tsv(f) for f in files]) if files else pd.DataFrame()


def _value(text: Any) -> Any:
    """Number (float) if `text` parses as one, else the stripped string."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return str(text).strip()


def _is_pre(ref: dict[str, Any]) -> bool:
    return bool(ref.get("pre_initialization", ref.get("static", False)))


class _Import:
    """State of one import: the files as read, then the v1 tables being assembled."""

    def __init__(self, path: Path, config: dict[str, Any]):
        self.path, self.config, self.where = path, config, str(path)
        section = sciml_section(path, config)
        self.refs: dict[str, Any] = section.get("neural_networks",
                                                section.get("neural_nets")) or {}
        self.init = initialize_networks(path, config=config)
        self.nets = {k: v.net for k, v in self.init.items()}
        mapping: dict[str, str] = {}
        for f in table_files(path, "mapping_files", config):
            df = _tsv(f)
            mapping |= dict(zip(df["petabEntityId"], df["modelEntityId"].fillna("")))
        hyb: dict[str, str] = {}
        for f in [path.parent / str(x) for x in section.get("hybridization_files") or []]:
            df = _tsv(f)
            hyb |= {str(k): str(v).strip() for k, v in zip(df["targetId"], df["targetValue"])}
        self.ios: dict[str, NetworkIO] = network_io(self.nets, mapping, hyb, self.where)
        self.input_ids = {s.petab_id for io in self.ios.values() for s in io.inputs}
        self.net_param_ids = {p for p, m in mapping.items() if _NET_PARAM.match(str(m))}
        models = config.get("model_files") or {}
        if len(models) != 1:
            raise NotSupportedError(Issue("exactly one model file is supported", self.where))
        self.doc = _load_sbml(path.parent / str(next(iter(models.values()))["location"]))
        self.model = self.doc.getModel()
        self.sbml_ids = {e.getId() for e in self.doc.getListOfAllElements() if e.isSetId()}
        self._parameters()
        self._experiments()
        self.arrays: dict[str, dict[str, np.ndarray]] = {}
        for af in array_files(path, config):
            for k, v in read_inputs(af).items():
                self.arrays.setdefault(k, {}).update(v)

    def files(self, key: str, required: bool = False) -> list[Path]:
        files = table_files(self.path, key, self.config)
        if required and not files:
            raise InputError(Issue(f"'{key}' lists no file", self.where, entity=key))
        return files

    def _parameters(self) -> None:
        """Mechanistic rows (network inputs and weights are torch-side) and the v1 table."""
        pdf = _tables(self.files("parameter_files", True)).set_index("parameterId")
        if petab.PARAMETER_SCALE not in pdf:
            pdf[petab.PARAMETER_SCALE] = petab.LIN
        pdf[petab.ESTIMATE] = [int(str(v).strip().lower() in ("1", "true", "1.0"))
                               for v in pdf[petab.ESTIMATE]]
        self.pdf = pdf
        mech = pdf.drop(index=[p for p in pdf.index if p in self.net_param_ids])
        mech[petab.NOMINAL_VALUE] = mech[petab.NOMINAL_VALUE].astype(float)
        self.mech = mech
        targets = {t for io in self.ios.values() for ts in io.targets.values() for t in ts}
        v1 = mech.drop(index=[p for p in mech.index if p in self.input_ids or p in targets])
        v1 = v1[_V1_PARAMETER_COLUMNS].copy()
        v1[petab.ESTIMATE] = 1  # frozen values are fixed in SciMLObjective (shared builds)
        self.v1_pdf = v1

    def _experiments(self) -> None:
        """Experiments and conditions (changes of network inputs are consumed by torch),
        measurements and observables."""
        exp_df = _tables(self.files("experiment_files"))
        self.experiments = ExperimentTable.from_df(exp_df).experiments if len(exp_df) else []
        changes: dict[str, list[tuple[str, Any]]] = {}
        self.net_changes: dict[str, dict[str, Any]] = {}
        for f in self.files("condition_files"):
            for c in ConditionTable.from_df(_tsv(f)).conditions:
                for ch in c.changes:
                    if ch.target_id in self.input_ids:
                        self.net_changes.setdefault(c.id, {})[ch.target_id] = \
                            _value(ch.target_value)
                    else:
                        changes.setdefault(c.id, []).append((ch.target_id, ch.target_value))
        self.cond_df, self.exp_map = experiments_to_conditions(
            self.experiments, changes, self.model, set(self.v1_pdf.index), self.where)
        measurements = MeasurementTable.from_df(
            _tables(self.files("measurement_files", True))).measurements
        self.mdf_v1 = measurements_to_v1(measurements, self.exp_map)
        self.used_exps = list(dict.fromkeys((m.experiment_id or "") for m in measurements))
        self.odf = _tables(self.files("observable_files", True)).set_index(petab.OBSERVABLE_ID)

    # ---- pre-initialization networks: per-experiment output parameters -------------------
    def _pre_input(self, nn_id: str, slot: Any, eid: str, conds: list[str]) -> Any:
        """What feeds one input element of a pre-initialization network in experiment
        `eid`: a number, a parameter id or an array."""
        val: Any = None
        for c in conds:
            val = self.net_changes.get(c, {}).get(slot.petab_id, val)
        if val is None:
            val = _value(slot.source) if slot.source is not None else slot.petab_id
        if val == "array":
            group = self.arrays.get(slot.petab_id, {})
            key = next((c for c in conds if c in group), "0")
            if key not in group:
                raise InputError(Issue(f"no array input {slot.petab_id!r} for experiment "
                                       f"{eid!r}", self.where, entity=slot.petab_id))
            val = group[key]
        if isinstance(val, str) and val not in self.pdf.index:
            raise InputError(Issue(f"network {nn_id!r} input {slot.petab_id!r}: {val!r} is "
                                   "not a parameter", self.where, entity=slot.petab_id))
        return val

    def _output_targets(self, io: NetworkIO, oid: str) -> list[str]:
        """Model entities a pre-initialization output sets (an observable's use of the
        output id adds a constant parameter of that id)."""
        tgts = list(io.targets.get(oid, []))
        obs_text = " ".join(map(str, self.odf[petab.OBSERVABLE_FORMULA]))
        if re.search(rf"\b{re.escape(oid)}\b", obs_text):
            tgts.append(oid)
            if oid not in self.sbml_ids:  # a constant the condition table sets
                p = self.model.createParameter()
                p.setId(oid)
                p.setConstant(True)
                p.setValue(0.0)
                self.sbml_ids.add(oid)
        return tgts

    def pre_networks(self) -> list[PreNetwork]:
        exp_conditions = {e.id: [c for p in e.sorted_periods if p.time != -math.inf
                                 for c in p.condition_ids] for e in self.experiments}
        pre: list[PreNetwork] = []
        assign: dict[str, dict[str, Any]] = {}
        new_rows = []
        for nn_id, ref in self.refs.items():
            if not _is_pre(ref):
                continue
            io = self.ios[nn_id]
            per_exp: dict[str, list[list[Any]]] = {}
            out_params: dict[str, dict[int, str]] = {}
            targets = {oid: self._output_targets(io, oid) for oid in io.outputs.values()}
            for eid in self.used_exps:
                conds = exp_conditions.get(eid, [])
                args: dict[int, list[Any]] = {}
                for slot in io.inputs:
                    args.setdefault(slot.arg, []).append(self._pre_input(nn_id, slot, eid,
                                                                         conds))
                per_exp[eid] = [args[a] for a in sorted(args)]
                out_params[eid] = {}
                pre_c, sim_c = self.exp_map.get(eid, (None, DEFAULT_CONDITION))
                for j, oid in io.outputs.items():
                    if not targets[oid]:
                        continue
                    pid = f"{oid}__{eid or DEFAULT_CONDITION.strip('_')}"
                    out_params[eid][j] = pid
                    new_rows.append({"parameterId": pid, petab.PARAMETER_SCALE: petab.LIN,
                                     # never optimized directly; finite for PEtab v1
                                     petab.LOWER_BOUND: -OUTPUT_BOUND,
                                     petab.UPPER_BOUND: OUTPUT_BOUND,
                                     petab.NOMINAL_VALUE: 0.0, petab.ESTIMATE: 1})
                    for t in targets[oid]:
                        for c in (pre_c, sim_c):
                            if c is not None:
                                assign.setdefault(c, {})[t] = pid
            pre.append(PreNetwork(nn_id, io, per_exp, out_params))
        self.cond_df = _with_assignments(self.cond_df, assign, self.model)
        if new_rows:
            self.v1_pdf = pd.concat([self.v1_pdf,
                                     pd.DataFrame(new_rows).set_index("parameterId")])
        return pre

    # ---- dynamic networks: placeholders for outputs used by observables, then unroll -----
    def _dynamic_term(self, nn_id: str) -> tuple[NetworkTerm, dict[int, str]]:
        io = self.ios[nn_id]
        seq, layer_of = as_sequential(self.nets[nn_id])
        inputs = []
        for slot in io.inputs:
            if slot.source is None or slot.source not in self.sbml_ids:
                raise NotSupportedError(Issue(
                    f"network {nn_id!r} input {slot.petab_id!r}: a network evaluated during "
                    "simulation needs model entities as inputs (hybridization table), got "
                    f"{slot.source!r}", self.where, entity=slot.petab_id))
            inputs.append(slot.source)
        tgt_ids, kinds = [], []
        for j in range(max(io.outputs) + 1 if io.outputs else 0):
            oid = io.outputs.get(j, f"{nn_id}_output__{j}")
            tgts = io.targets.get(oid, [])
            if len(tgts) > 1:
                raise NotSupportedError(Issue(f"network {nn_id!r} output {oid!r} sets several "
                                              f"entities {tgts}", self.where, entity=oid))
            if tgts:
                self.odf[petab.OBSERVABLE_FORMULA] = [
                    re.sub(rf"\b{re.escape(oid)}\b", tgts[0], str(f))
                    for f in self.odf[petab.OBSERVABLE_FORMULA]]
                tgt_ids.append(tgts[0])
                kinds.append("parameter" if self.model.getParameter(tgts[0]) is not None
                             else "auto")
            else:
                set_assignment_rule(self.model, oid, "0")  # placeholder, replaced by the net
                self.sbml_ids.add(oid)
                tgt_ids.append(oid)
                kinds.append("assignment")
        bound = 10.0 + 2 * max(float(p.detach().abs().max()) for p in seq.parameters())
        term = NetworkTerm(nn_id, seq, inputs, tgt_ids, kind=kinds,
                           input_scales={i: (0.0, 1.0) for i in inputs}, weight_bound=bound)
        return term, layer_of

    def dynamic_networks(self) -> dict[str, tuple[NetworkTerm, dict[int, str]]]:
        return {nn_id: self._dynamic_term(nn_id) for nn_id, ref in self.refs.items()
                if not _is_pre(ref)}

    # ---- the v1 problem ------------------------------------------------------------------
    def v1_problem(self) -> petab.Problem:
        """The petab.v1 problem of the used conditions, observables and parameters."""
        mdf = petab.get_measurement_df(self.mdf_v1)
        used = set(mdf[petab.SIMULATION_CONDITION_ID])
        if petab.PREEQUILIBRATION_CONDITION_ID in mdf:
            used |= set(mdf[petab.PREEQUILIBRATION_CONDITION_ID].dropna())
        cond_df = self.cond_df.loc[[c for c in self.cond_df.index if c in used]]
        odf = self.odf[[c for c in self.odf.columns if c in (
            petab.OBSERVABLE_FORMULA, petab.NOISE_FORMULA, petab.OBSERVABLE_TRANSFORMATION,
            petab.NOISE_DISTRIBUTION)]]
        # parameters only the networks read (e.g. condition values of network inputs) are
        # torch-side: PEtab v1 rejects parameter-table rows no model entity or table uses
        ids = {e.getId() for e in self.doc.getListOfAllElements() if e.isSetId()}
        ids |= {str(s) for f in [*odf[petab.OBSERVABLE_FORMULA], *odf[petab.NOISE_FORMULA]]
                for s in petab.math.sympify_petab(f).free_symbols}
        ids |= {v for v in cond_df.to_numpy().ravel() if isinstance(v, str)}
        for col in (petab.OBSERVABLE_PARAMETERS, petab.NOISE_PARAMETERS):
            if col in mdf:
                ids |= {p for v in mdf[col].dropna() for p in str(v).split(";")}
        pdf = self.v1_pdf.loc[[p for p in self.v1_pdf.index if p in ids]]
        return petab.Problem(sbml_model=self.model, sbml_document=self.doc,
                             condition_df=cond_df, measurement_df=mdf, observable_df=odf,
                             parameter_df=pdf)


def load_sciml_problem(path: str | Path, solver: SolverSettings | None = None,
                       config: dict[str, Any] | None = None) -> SciMLProblem:
    """Load a PEtab SciML problem (PEtab v2-style tables + ``extensions: sciml``).

    Prefer `sbmlhybrid.load_problem`, which calls this for SciML YAMLs.

    Args:
        path: Problem YAML.
        solver: Solver settings; default: `SCIML_SOLVER` updated with the YAML's
            ``sbmlhybrid: solver:`` entries.
        config: The YAML's parsed content, if already read (it is parsed once).

    Raises:
        InputError: unreadable files, missing values.
        NotSupportedError: a network graph or layer that cannot be routed (named), or a
            PEtab feature without a v1 equivalent.
    """
    path = Path(path)
    config = read_problem_yaml(path) if config is None else config
    state = _Import(path, config)
    pre = state.pre_networks()
    unrolled = state.dynamic_networks()
    settings = solver or sciml_solver_settings(config)
    name = f"sciml_{state.model.getId() or 'model'}"
    problem = _finish(state.v1_problem(), name, path, {"sbml": None}, settings)
    if unrolled:
        problem = hybridize(problem, [term for term, _ in unrolled.values()],
                            name=f"{name}_{'_'.join(unrolled)}")
    return SciMLProblem(path, problem, state.nets,
                        {k: v.estimate for k, v in state.init.items()}, state.mech, pre,
                        unrolled, state.exp_map,
                        {k: (v.lower, v.upper) for k, v in state.init.items()},
                        objective_class=SciMLObjective)


def _with_assignments(cond_df: pd.DataFrame, assign: dict[str, dict[str, Any]],
                      model: libsbml.Model) -> pd.DataFrame:
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


__all__ = ["SCIML_SOLVER", "PreNetwork", "SciMLProblem", "load_sciml_problem",
           "sciml_solver_settings"]
