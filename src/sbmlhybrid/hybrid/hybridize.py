"""`hybridize`: compile torch modules into a PEtab problem's SBML model (hand-written).

The network is unrolled into assignment rules (`sbmlhybrid.hybrid.network.unroll`); its
weights become estimated PEtab parameters (linear scale, nominal = the module's
initialization), its normalization constants and output scales become fixed PEtab
parameters. Neither values appear in the SBML, so the AMICI cache key (SBML text, observables,
which parameters are estimated, codegen options) depends only on the architecture: new
weights, a retrained network, transfer to another data set with the same model or other
normalization constants all reuse the compiled model.

The result is an ordinary sbmlhybrid `Problem` (subclass `HybridProblem`, which also carries
the `HybridModel`), so `create_objective`, `fit` and every optimizer apply unchanged.
Reused: libsbml for editing, petab.v1 tables; the foundation's validation.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import libsbml
import numpy as np
import pandas as pd
import petab.v1 as petab
import torch
from petab.v1.math import sympify_petab
from petab.v1.models.sbml_model import SbmlModel

from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.hybrid.network import (
    OUTPUT_TRANSFORMS,
    load_module_weights,
    module_weights,
    torch_output_transform,
    unroll,
    weight_ids,
)
from sbmlhybrid.hybrid.sbml_edit import math_symbols, replace_target, set_assignment_rule
from sbmlhybrid.hybrid.spec import NetworkTerm
from sbmlhybrid.objective._common import ADJOINT_ABOVE_N_PARAMETERS
from sbmlhybrid.problem import Problem, SolverSettings
from sbmlhybrid.problem.validate import validate_problem


@dataclass
class HybridProblem(Problem):
    """A `Problem` whose model contains unrolled networks; `hybrid` describes them."""

    hybrid: HybridModel | None = None


def _data_scale(problem: Problem, iid: str) -> tuple[float, float]:
    """(center, scale) mapping the data range of input `iid` to [-1, 1]."""
    pp = problem.petab_problem
    mdf = pp.measurement_df
    if iid == "time":
        values = mdf[petab.TIME].to_numpy(float)
    else:
        obs = pp.observable_df
        ids = [o for o, f in zip(obs.index, obs[petab.OBSERVABLE_FORMULA])
               if str(f).replace(" ", "") == iid]
        values = mdf.loc[mdf[petab.OBSERVABLE_ID].isin(ids), petab.MEASUREMENT].to_numpy(float)
        if not len(values):
            raise InputError(Issue(f"no observable measures input {iid!r} directly, so its "
                                   "scale cannot be taken from data; give input_scales",
                                   entity=iid))
    lo, hi = float(np.min(values)), float(np.max(values))
    half = (hi - lo) / 2
    return (lo + hi) / 2, half if half > 0 else max(abs(hi), 1.0)


class HybridModel:
    """The networks compiled into a hybrid problem, and the torch side of them.

    Attributes:
        terms: The `NetworkTerm`s, in order.
        normalization: term name -> [(center, scale)] per input (fixed PEtab parameters).
        dropped: Parameters no longer used by any math after the replacement (set to
            ``estimate=0`` so they do not become flat directions of the fit).
    """

    def __init__(self, terms: Sequence[NetworkTerm],
                 normalization: dict[str, list[tuple[float, float]]], dropped: list[str]):
        self.terms = list(terms)
        self.normalization = normalization
        self.dropped = dropped

    def term(self, name: str) -> NetworkTerm:
        for t in self.terms:
            if t.name == name:
                return t
        raise InputError(f"no network named {name!r}; have {[t.name for t in self.terms]}")

    @property
    def weight_ids(self) -> list[str]:
        """PEtab ids of all network weights and biases (state_dict order per term)."""
        return [pid for t in self.terms for pid, _k, _i in weight_ids(t.name, t.layers)]

    def module_values(self) -> dict[str, float]:
        """Weight id -> current value in the torch modules."""
        return {k: v for t in self.terms for k, v in
                module_weights(t.module, t.name, t.layers).items()}

    def load_weights(self, values: Mapping[str, float]) -> None:
        """Write weight values (id -> value, e.g. from `parameter_values`) into the modules."""
        for t in self.terms:
            load_module_weights(t.module, t.name, t.layers, values)

    def term_values(self, name: str, inputs: np.ndarray) -> np.ndarray:
        """The learned term(s) in model units for raw (unnormalized) inputs.

        Args:
            name: Network name.
            inputs: Raw input values, shape (n, n_inputs), units of the SBML inputs.

        Returns:
            Shape (n, n_targets): output_scale * transform(module(normalized inputs)) — the
            exact formula compiled into the model, evaluated in float64 torch.
        """
        t = self.term(name)
        x = np.asarray(inputs, dtype=float)
        c, s = np.array(self.normalization[name]).T
        module = copy.deepcopy(t.module).double()
        with torch.no_grad():
            z = module(torch.as_tensor((x - c) / s))
            cols = [sc * torch_output_transform(tr, z[:, j])
                    for j, (tr, sc) in enumerate(zip(t.transforms, t.scales))]
        return torch.stack(cols, dim=1).numpy()

    def apply(self, problem: Problem, values: Mapping[str, float] | None = None
              ) -> HybridProblem:
        """The same networks and normalization on another problem of the same SBML model.

        Args:
            problem: E.g. held-out conditions (`problem_test.yaml`).
            values: Parameter id -> value (linear scale) for nominal values (e.g. trained
                weights and kinetic parameters); default: the modules' current weights.
        """
        scales = {t.name: dict(zip(t.inputs, self.normalization[t.name])) for t in self.terms}
        terms = [dataclasses.replace(t, input_scales=scales[t.name]) for t in self.terms]
        out = hybridize(problem, terms)
        return set_nominal(out, values) if values is not None else out


def parameter_values(objective: object, x_free: Sequence[float]) -> dict[str, float]:
    """Parameter id -> value on linear scale for a free vector on PEtab scale.

    Args:
        objective: A `ModelObjective` (its problem's parameter table gives the scales).
        x_free: Estimated parameters on PEtab scale, shape (n_free,).
    """
    pdf = objective.problem.petab_problem.parameter_df  # type: ignore[attr-defined]
    out = {}
    for pid, x in zip(objective.x_free_ids, np.asarray(x_free, float)):  # type: ignore[attr-defined]
        out[pid] = float(petab.unscale(x, pdf.loc[pid, petab.PARAMETER_SCALE]))
    return out


def set_nominal(problem: Problem, values: Mapping[str, float]) -> Problem:
    """Copy of `problem` with nominal values replaced (linear scale; unknown ids ignored).

    Nominal values are not part of the compile-cache key, so this never recompiles.
    """
    pp = copy.copy(problem.petab_problem)
    pdf = pp.parameter_df.copy()
    for pid, v in values.items():
        if pid in pdf.index:
            pdf.loc[pid, petab.NOMINAL_VALUE] = float(v)
            if pdf.loc[pid, petab.ESTIMATE] == 1:
                lb, ub = pdf.loc[pid, petab.LOWER_BOUND], pdf.loc[pid, petab.UPPER_BOUND]
                pdf.loc[pid, petab.NOMINAL_VALUE] = float(np.clip(v, lb, ub))
    pp.parameter_df = pdf
    return dataclasses.replace(problem, petab_problem=pp)


def _fixed_row(pid: str, value: float) -> dict:
    return {petab.PARAMETER_ID: pid, petab.PARAMETER_SCALE: petab.LIN,
            petab.LOWER_BOUND: value, petab.UPPER_BOUND: value, petab.NOMINAL_VALUE: value,
            petab.ESTIMATE: 0}


def _check_terms(model: libsbml.Model, terms: Sequence[NetworkTerm]) -> None:
    """InputError for repeated network names, unknown inputs, ids that clash with ours."""
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise InputError(f"network names must be unique, got {names}")
    existing = {e.getId() for e in model.getSBMLDocument().getListOfAllElements()
                if e.isSetId()}
    issues = [Issue(f"{t.name}: input {i!r} is not an SBML id", entity=i)
              for t in terms for i in t.inputs
              if i != "time" and model.getElementBySId(i) is None]
    clash = [e for e in existing for t in terms if e.startswith(f"{t.name}__")]
    issues += [Issue(f"model id {e!r} clashes with generated network ids", entity=e)
               for e in clash]
    if issues:
        raise InputError(issues, header="Cannot hybridize")


def _constant(model: libsbml.Model, pid: str, value: float) -> None:
    """A constant SBML parameter (its real value lives in the PEtab parameter table)."""
    p = model.createParameter()
    p.setId(pid)
    p.setConstant(True)
    p.setValue(value)


def _add_inputs(model: libsbml.Model, problem: Problem, t: NetworkTerm, rows: list[dict]
                ) -> tuple[list[str], list[tuple[float, float]]]:
    """Normalized inputs ``(input - c) / s`` as rules; returns their ids and (c, s) pairs."""
    norm = [t.input_scales.get(i) or _data_scale(problem, i) for i in t.inputs]
    in_syms = []
    for k, iid in enumerate(t.inputs):
        c_id, s_id, v_id = f"{t.name}__c{k}", f"{t.name}__s{k}", f"{t.name}__in{k}"
        _constant(model, c_id, 0.0)
        _constant(model, s_id, 1.0)
        rows += [_fixed_row(c_id, norm[k][0]), _fixed_row(s_id, norm[k][1])]
        set_assignment_rule(model, v_id, f"({iid} - {c_id}) / {s_id}")
        in_syms.append(v_id)
    return in_syms, [(float(c), float(s)) for c, s in norm]


def _add_weights(model: libsbml.Model, t: NetworkTerm, rows: list[dict]) -> None:
    """One estimated PEtab parameter per weight (nominal: the module's value; start points
    drawn like torch's default Linear init)."""
    values = module_weights(t.module, t.name, t.layers)
    fan_in = {pid: t.layers[[lay.index for lay in t.layers].index(int(key.split(".")[0]))]
              .n_in for pid, key, _i in weight_ids(t.name, t.layers)}
    for pid, _key, _idx in weight_ids(t.name, t.layers):
        _constant(model, pid, 0.0)  # the value lives in the parameter table, not in the SBML
        v = values[pid]
        if abs(v) > t.weight_bound:
            raise InputError(f"{t.name}: initial weight {pid}={v} outside +-weight_bound")
        bound = float(min(t.weight_bound, 1.0 / np.sqrt(fan_in[pid])))
        rows.append({petab.PARAMETER_ID: pid, petab.PARAMETER_SCALE: petab.LIN,
                     petab.LOWER_BOUND: -t.weight_bound, petab.UPPER_BOUND: t.weight_bound,
                     petab.NOMINAL_VALUE: v, petab.ESTIMATE: 0 if t.frozen else 1,
                     # multi-start points are drawn like torch's default Linear init
                     petab.INITIALIZATION_PRIOR_TYPE: petab.UNIFORM,
                     petab.INITIALIZATION_PRIOR_PARAMETERS: f"{-bound!r};{bound!r}",
                     **_weight_prior(t)})


def _weight_prior(t: NetworkTerm) -> dict:
    """PEtab objective-prior columns of a weight of `t` (none without `weight_prior_sd`)."""
    if t.weight_prior_sd is None:
        return {}
    return {petab.OBJECTIVE_PRIOR_TYPE: petab.NORMAL,
            petab.OBJECTIVE_PRIOR_PARAMETERS: f"0.0;{float(t.weight_prior_sd)!r}"}


def _add_outputs(model: libsbml.Model, t: NetworkTerm, outs: list[str], rows: list[dict],
                 removed: list[str]) -> None:
    """Scaled, transformed outputs ``oscale * transform(z)`` put in place of the targets."""
    for j in range(len(t.targets)):
        o_id, y_id = f"{t.name}__oscale{j}", f"{t.name}__y{j}"
        _constant(model, o_id, 1.0)
        rows.append(_fixed_row(o_id, t.scales[j]))
        body = OUTPUT_TRANSFORMS[t.transforms[j]].format(z=outs[j])
        set_assignment_rule(model, y_id, f"{o_id} * {body}")
        replace_target(model, t, j, y_id, removed)


def _used_symbols(problem: Problem, model: libsbml.Model) -> set[str]:
    """Ids used by the edited model's math or by the problem's tables."""
    used = math_symbols(model)
    pp = problem.petab_problem
    obs = pp.observable_df
    used |= {s for f in [*obs[petab.OBSERVABLE_FORMULA], *obs[petab.NOISE_FORMULA]]
             for s in map(str, sympify_petab(f).free_symbols)}
    if pp.condition_df is not None:
        used |= {str(v) for v in pp.condition_df.to_numpy().ravel() if isinstance(v, str)}
    meas = pp.measurement_df
    for col in (petab.OBSERVABLE_PARAMETERS, petab.NOISE_PARAMETERS):
        if col in meas:
            used |= {p for v in meas[col].dropna() for p in str(v).split(";")}
    return used


def _parameter_table(problem: Problem, model: libsbml.Model, rows: list[dict],
                     removed: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The new parameter table (replaced parameters gone, unused ones no longer estimated,
    network rows added) and the ids that stopped being estimated."""
    cond = problem.petab_problem.condition_df
    bad = [p for p in removed if cond is not None and p in cond.columns]
    if bad:
        raise InputError(f"parameters {bad} are set per condition and cannot be replaced")
    pdf = problem.petab_problem.parameter_df.copy()
    pdf = pdf.drop(index=[p for p in removed if p in pdf.index])
    used = _used_symbols(problem, model)
    dropped = [p for p in pdf.index if pdf.loc[p, petab.ESTIMATE] == 1 and p not in used]
    pdf.loc[dropped, petab.ESTIMATE] = 0
    new_rows = pd.DataFrame(rows).set_index(petab.PARAMETER_ID)
    pdf = pd.concat([pdf, new_rows.reindex(columns=pdf.columns.union(new_rows.columns,
                                                                     sort=False))])
    return pdf, dropped


def _check_sbml(doc: libsbml.SBMLDocument) -> None:
    """InputError listing libsbml's errors in the edited document."""
    if doc.checkInternalConsistency():
        errors = [doc.getError(i) for i in range(doc.getNumErrors())]
        fatal = [e.getMessage() for e in errors if e.getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
        if fatal:
            raise InputError([Issue(f"SBML after hybridization: {m.strip()}") for m in fatal])


logger = logging.getLogger(__name__)


def _hybrid_solver(solver: SolverSettings) -> SolverSettings:
    """The problem's solver settings, with forward sensitivities replaced by "auto".

    A white-box problem's forward setting was chosen for its kinetic parameters; with the
    weights, forward sensitivities cost grows with their number and AMICI also computes the
    Fisher information (n_p^2 per data point) beside them. Measured on the CHO gray box
    with a 2x32 network (1,200 parameters), under load 3: 12.3 s per gradient forward,
    1.37 s adjoint. "auto" picks the adjoint above 25 free parameters.
    """
    if solver.sensitivity_method != "forward":
        return solver
    logger.info("hybrid problem: sensitivity method 'auto' (adjoint above %d free "
                "parameters) instead of the problem's 'forward'", ADJOINT_ABOVE_N_PARAMETERS)
    return dataclasses.replace(solver, sensitivity_method="auto")


def hybridize(problem: Problem, terms: Sequence[NetworkTerm], name: str | None = None
              ) -> HybridProblem:
    """Replace model parts by networks; returns a new problem (the input is not modified).

    Args:
        problem: A validated PEtab problem.
        terms: What to replace by which network (`NetworkTerm`).
        name: Problem name (cache folder prefix). Default: SBML model id + network names,
            the same for every data set of one model, so train and test share one build.

    Returns:
        A `HybridProblem` (a `Problem`); its `hybrid` attribute is the `HybridModel`. Its
        solver settings are the problem's, except that forward sensitivities become "auto"
        (`_hybrid_solver`); set ``solver`` on the result to force a method.

    Raises:
        InputError: unknown inputs/targets, unsupported layers, ids that clash.
    """
    doc = problem.petab_problem.sbml_document.clone()
    model = doc.getModel()
    _check_terms(model, terms)
    rows: list[dict] = []
    removed: list[str] = []
    normalization: dict[str, list[tuple[float, float]]] = {}
    for t in terms:
        in_syms, normalization[t.name] = _add_inputs(model, problem, t, rows)
        _add_weights(model, t, rows)
        rules, outs = unroll(t.name, t.layers, in_syms, t.representation)
        for var, formula in rules:
            set_assignment_rule(model, var, formula)
        _add_outputs(model, t, outs, rows, removed)
    pdf, dropped = _parameter_table(problem, model, rows, removed)
    _check_sbml(doc)
    pp = copy.copy(problem.petab_problem)
    pp.model = SbmlModel(sbml_model=model, sbml_document=doc)  # never mutate the input's
    pp.parameter_df = pdf
    files = {k: v for k, v in problem.files.items() if k not in ("sbml", "parameter")}
    issues = validate_problem(pp, files)
    if issues:
        raise InputError(issues, header="Hybridized problem is not a valid PEtab problem")
    hm = HybridModel(terms, normalization, dropped)
    base = model.getId() or problem.name
    names = "_".join(t.name for t in terms)
    return HybridProblem(pp, name or f"{base}_{names}", problem.source, files,
                         _hybrid_solver(problem.solver), hybrid=hm)
