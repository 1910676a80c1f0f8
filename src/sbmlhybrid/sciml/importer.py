"""Import of whole PEtab SciML problems: `load_sciml_problem(yaml) -> SciMLProblem`.

Users reach it through the one front door, `sbmlhybrid.load_problem`, which sends every YAML
with a SciML extension section here. The YAML is parsed once; each step below reads what the
previous ones collected (`_Import`).

Routing of each network (hand-written; see `sbmlhybrid.sciml.routing` for the tables,
`sbmlhybrid.sciml.inputs` for what feeds an input):

* ``static: true`` (``pre_initialization: true`` in older files; inputs: numbers, math
  expressions of parameters from the hybridization or condition table, array files):
  evaluated in torch before simulation, once per experiment (a trial evaluation at import
  names arrays the network cannot take). Output j of experiment e becomes the estimated v1
  parameter ``<outputId>__<e>``, assigned to the output's model targets through the v1
  condition table. Gradients: AMICI's gradient w.r.t. those parameters, pulled back through
  the network (and the parameters its inputs use) by torch.
* otherwise (inputs: expressions of model entities, parameters and ``time``, array files):
  unrolled into SBML assignment rules (`sbmlhybrid.sciml.dynamic`, then
  `sbmlhybrid.hybrid.hybridize`: kind ``parameter`` for model parameters it replaces, an
  assignment-rule placeholder named like the output id where an observable uses it), so
  AMICI's forward/adjoint sensitivities give the weight gradients.

The mapping table is checked against the networks first (`sbmlhybrid.sciml.mapping`), its
input elements (each argument's elements 0..n-1 once each, n from the first Linear layer
and the array inputs where known) once the arrays are read, its output elements once the
routing knows each network's output size; array inputs must be finite, and every
measurement must name an experiment of the experiment table. Rows in messages are TSV line
numbers (the header is row 1), as in the PEtab v1/v2 loaders.

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

import numpy as np
import pandas as pd
import petab.v1 as petab
from petab.v1.models.sbml_model import SbmlModel
from petab.v2.core import ConditionTable, ExperimentTable, MeasurementTable

from sbmlhybrid.errors import InputError, Issue, NotSupportedError
from sbmlhybrid.hybrid import NetworkTerm, hybridize
from sbmlhybrid.problem import (
    SolverSettings,
    load_sbml,
    problem_from_tables,
    read_tsv,
    solver_settings,
)
from sbmlhybrid.problem.v2 import (
    DEFAULT_CONDITION,
    experiments_to_conditions,
    measurements_to_v1,
    unknown_experiments,
)
from sbmlhybrid.sciml.dynamic import dynamic_term, with_assignments
from sbmlhybrid.sciml.hdf5 import check_finite_inputs, read_inputs
from sbmlhybrid.sciml.inputs import (
    InputExpression,
    array_for,
    check_static_inputs,
    parse_expression,
)
from sbmlhybrid.sciml.mapping import (
    check_input_indices,
    check_mapping,
    check_output_indices,
    mapping_dict,
    read_mapping,
)
from sbmlhybrid.sciml.objective import SciMLObjective
from sbmlhybrid.sciml.problem import (
    array_files,
    initialize_networks,
    read_problem_yaml,
    sciml_section,
    table_files,
)
from sbmlhybrid.sciml.routing import (
    InputSlot,
    NetworkIO,
    argument_sizes,
    array_size,
    network_io,
)
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
    return solver_settings(config, SCIML_SOLVER)


def _tsv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(Issue("file not found", file=str(path)))
    return read_tsv(path, dtype={"conditionId": str})


def _tables(files: list[Path]) -> pd.DataFrame:
    return pd.concat([_tsv(f) for f in files]) if files else pd.DataFrame()


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
        self.mapping_rows = read_mapping(table_files(path, "mapping_files", config))
        check_mapping(self.mapping_rows, self.nets)
        mapping = mapping_dict(self.mapping_rows)
        hyb: dict[str, str] = {}
        self.hyb_where: dict[str, Issue] = {}
        for f in [path.parent / str(x) for x in section.get("hybridization_files") or []]:
            df = _tsv(f)
            # start=2: rows are TSV lines, the header being line 1
            for line, (t, v) in enumerate(zip(df["targetId"], df["targetValue"]), start=2):
                if pd.isna(v) or not str(v).strip():
                    continue  # an array input (spec: leave its row empty)
                hyb[str(t)] = str(v).strip()
                self.hyb_where[str(t)] = Issue("", str(f), line, "targetValue", str(t))
        self.ios: dict[str, NetworkIO] = network_io(self.nets, mapping, hyb, self.where)
        self.input_ids = {s.petab_id for io in self.ios.values() for s in io.inputs}
        self.net_param_ids = {p for p, m in mapping.items() if _NET_PARAM.match(str(m))}
        models = config.get("model_files") or {}
        if len(models) != 1:
            raise NotSupportedError(Issue("exactly one model file is supported", self.where))
        self.doc = load_sbml(path.parent / str(next(iter(models.values()))["location"]))
        self.model = self.doc.getModel()
        self.sbml_ids = {e.getId() for e in self.doc.getListOfAllElements() if e.isSetId()}
        self._parameters()
        self._experiments()
        self.arrays: dict[str, dict[str, tuple[np.ndarray, Path]]] = {}
        issues: list[Issue] = []
        for af in array_files(path, config):
            group = read_inputs(af)
            issues += check_finite_inputs(group, str(af))
            for k, v in group.items():
                self.arrays.setdefault(k, {}).update({key: (a, af) for key, a in v.items()})
        if issues:
            raise InputError(issues, header="Invalid network input arrays")
        # before either routing: a gap would shift later inputs into the wrong slot
        sizes = {pid: array_size(group) for pid, group in self.arrays.items()}
        check_input_indices(self.mapping_rows, {
            nn_id: argument_sizes(self.nets[nn_id], io, sizes) for nn_id, io in self.ios.items()})

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
        self.net_changes: dict[str, dict[str, tuple[Any, Issue]]] = {}
        for f in self.files("condition_files"):
            df = _tsv(f)
            rows = {(str(c), str(t)): line for line, (c, t) in  # TSV lines, header 1
                    enumerate(zip(df["conditionId"], df["targetId"]), start=2)}
            for c in ConditionTable.from_df(df).conditions:
                for ch in c.changes:
                    if ch.target_id in self.input_ids:
                        where = Issue("", str(f), rows.get((c.id, ch.target_id)),
                                      "targetValue", ch.target_id)
                        self.net_changes.setdefault(c.id, {})[ch.target_id] = \
                            (ch.target_value, where)
                    else:
                        changes.setdefault(c.id, []).append((ch.target_id, ch.target_value))
        self.exp_conditions = {e.id: [c for p in e.sorted_periods if p.time != -math.inf
                                      for c in p.condition_ids] for e in self.experiments}
        self.cond_df, self.exp_map = experiments_to_conditions(
            self.experiments, changes, self.model, set(self.v1_pdf.index), self.where)
        measurements, issues = [], []
        for f in self.files("measurement_files", True):
            table = MeasurementTable.from_df(_tsv(f)).measurements
            issues += unknown_experiments(table, set(self.exp_conditions), str(f))
            measurements += table
        if issues:  # v1 conversion would send them to the empty default condition
            raise InputError(issues, header=f"Invalid PEtab SciML problem {self.path}")
        self.mdf_v1 = measurements_to_v1(measurements, self.exp_map)
        self.used_exps = list(dict.fromkeys((m.experiment_id or "") for m in measurements))
        self.odf = _tables(self.files("observable_files", True)).set_index(petab.OBSERVABLE_ID)

    # ---- pre-initialization networks: per-experiment output parameters -------------------
    def _pre_input(self, nn_id: str, slot: InputSlot, eid: str, conds: list[str]) -> Any:
        """What feeds one input element of a static network in experiment `eid`: a number,
        an `InputExpression` of parameters or (a whole argument) an `ArrayInput`."""
        val: Any = None
        where = Issue("", self.where, entity=slot.petab_id)
        for c in conds:
            val, where = self.net_changes.get(c, {}).get(slot.petab_id, (val, where))
        if val is None and slot.source is not None:
            val, where = slot.source, self.hyb_where[slot.petab_id]
        if val is None or (isinstance(val, str) and val == "array"):
            arr = array_for(self.arrays.get(slot.petab_id, {}), slot.petab_id, conds)
            if arr is not None:
                return arr
            if val is not None or slot.index is None:
                raise InputError(Issue(f"no array input {slot.petab_id!r} for experiment "
                                       f"{eid!r}", where.file, where.row, where.column,
                                       slot.petab_id))
            val = slot.petab_id  # a parameter of the input's id (parameter table)
        expr = parse_expression(val, where)
        if expr.is_number:
            return float(expr)
        unknown = sorted(str(s) for s in expr.free_symbols if str(s) not in self.mech.index)
        if unknown:
            raise InputError(Issue(f"network {nn_id!r} input {slot.petab_id!r}: {str(val)!r} "
                                   f"uses {unknown}, which are not parameters of the parameter "
                                   "table", where.file, where.row, where.column, slot.petab_id))
        return InputExpression(expr)

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
                conds = self.exp_conditions.get(eid, [])
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
            values = {p: float(self.mech.loc[p, petab.NOMINAL_VALUE]) for p in self.mech.index}
            n_out = check_static_inputs(nn_id, self.nets[nn_id], per_exp, values)
            if n_out is not None:
                check_output_indices(self.mapping_rows, nn_id, n_out)
            pre.append(PreNetwork(nn_id, io, per_exp, out_params))
        self.cond_df = with_assignments(self.cond_df, assign, self.model)
        if new_rows:
            self.v1_pdf = pd.concat([self.v1_pdf,
                                     pd.DataFrame(new_rows).set_index("parameterId")])
        return pre

    # ---- dynamic networks: unrolled into the SBML (`sbmlhybrid.sciml.dynamic`) -----------
    def dynamic_networks(self) -> dict[str, tuple[NetworkTerm, dict[int, str]]]:
        out = {}
        for nn_id, ref in self.refs.items():
            if not _is_pre(ref):
                term, layer_of = dynamic_term(self, nn_id)
                out[nn_id] = (term, layer_of)
        return out

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
        return petab.Problem(model=SbmlModel(sbml_model=self.model, sbml_document=self.doc),
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
    problem = problem_from_tables(state.v1_problem(), name, path, {"sbml": None}, settings)
    if unrolled:
        problem = hybridize(problem, [term for term, _ in unrolled.values()],
                            name=f"{name}_{'_'.join(unrolled)}")
    return SciMLProblem(path, problem, state.nets,
                        {k: v.estimate for k, v in state.init.items()}, state.mech, pre,
                        unrolled, state.exp_map,
                        {k: (v.lower, v.upper) for k, v in state.init.items()},
                        {k: v.prior for k, v in state.init.items()},
                        objective_class=SciMLObjective)


__all__ = ["SCIML_SOLVER", "PreNetwork", "SciMLProblem", "load_sciml_problem",
           "sciml_solver_settings"]
