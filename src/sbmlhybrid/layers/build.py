"""Constructors of `SimulatorLayer` from a PEtab problem, its objective, or a bare SBML model.

Reused: the project's content-hash compile cache (`sbmlhybrid.build.compile_problem`; no second
cache here), its PEtab loading (`sbmlhybrid.problem`) and `ModelObjective`, whose pyPESTO /
AMICI parameter mapping fills one `ExpData` per PEtab condition (condition-table values,
condition-specific overrides, parameter scales). Hand-written: reading those filled `ExpData`
back into a `ConditionTable` (linear free parameters and fixed parameters per condition) and,
for a bare SBML model, a minimal in-memory PEtab problem (inputs and other parameters free,
`fixed_ids` constant, one normal-noise observable per requested formula) so that the model is
compiled through the same cache; species given as inputs get an initial-value parameter
``x0_<species>`` (an SBML initial assignment) so initial values are differentiable inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import amici.sim.sundials as asd
import libsbml
import numpy as np
import pandas as pd
import petab.v1 as petab
from petab.v1.models.sbml_model import SbmlModel

from sbmlhybrid.build import compile_problem
from sbmlhybrid.errors import InputError, NotSupportedError
from sbmlhybrid.layers.simulator import AmiciBatchSimulator, ConditionTable, SimulatorLayer
from sbmlhybrid.objective import ModelObjective, create_objective
from sbmlhybrid.problem import Problem, SolverSettings, load_problem


def _layer(model: asd.Model, input_ids: Sequence[str], timepoints: Sequence[float],
           table: ConditionTable | None, input_scale: str | Sequence[str], sensitivity: str,
           solver: SolverSettings, num_threads: int) -> SimulatorLayer:
    sim = AmiciBatchSimulator(model, input_ids, timepoints, table, input_scale=input_scale,
                              num_threads=num_threads, solver=solver)
    return SimulatorLayer(sim, sensitivity=sensitivity)


def layer_from_objective(objective: ModelObjective, input_ids: Sequence[str],
                         timepoints: Sequence[float] | None = None,
                         x_free: Sequence[float] | None = None,
                         conditions: Sequence[int | str] | None = None,
                         input_scale: str | Sequence[str] = "lin", sensitivity: str = "auto",
                         solver: SolverSettings | None = None, num_threads: int = 1
                         ) -> SimulatorLayer:
    """Observables layer over a PEtab v1 problem's model; one condition-table row per PEtab
    condition.

    It reads the AMICI ExpData that pyPESTO's parameter mapping fills, which only a
    `ModelObjective` (PEtab v1, bare SBML, hybrid) has; for any objective of the protocol
    (PEtab v2, SciML, torch ODE) `sbmlhybrid.layers.ObjectiveLayer` is the torch layer (its
    negative log-likelihood, differentiable).

    Args:
        objective: The problem's objective (its compiled model and parameter mapping).
        input_ids: Model parameter ids that become inputs (free AMICI parameters).
        timepoints: Output times, shape (n_t,); default: all measurement times.
        x_free: Estimated parameters on PEtab scale, shape (n_free,), that fill the
            non-input parameters (default: nominal values).
        conditions: Subset of condition ids or indices (default: all, objective order).
        input_scale: Scale of the inputs ("lin", "log", "log10"; or one per input).
        sensitivity: Backward mode, see `SimulatorLayer`.
        solver: Tolerances (default: the problem's solver settings).
        num_threads: OpenMP threads per batch.

    Raises:
        NotSupportedError: `objective` is not a `ModelObjective` (names `ObjectiveLayer`).
    """
    if not isinstance(objective, ModelObjective):
        raise NotSupportedError(
            f"layer_from_objective builds an observables layer from the AMICI ExpData of a "
            f"PEtab v1 ModelObjective; {type(objective).__name__} has none: use "
            "sbmlhybrid.layers.ObjectiveLayer(objective, input_ids) (the negative "
            "log-likelihood of any objective as a torch function)")
    idx = objective.condition_indices(conditions)
    objective.evaluate(x_free, idx, gradient=False, raise_on_failure=False)  # fills ExpData
    ids, fixed, free = [], [], []
    for i in idx:
        e = objective.amici_objective.edatas[i]
        if len(e.fixed_parameters_pre_equilibration):
            raise NotSupportedError(f"condition {objective.conditions[i]} uses "
                                    "pre-equilibration, which SimulatorLayer does not support")
        pre, sim = objective.conditions[i]
        ids.append(f"{pre}:{sim}" if pre else sim)
        fixed.append(np.asarray(e.fixed_parameters, dtype=float))
        free.append([asd.unscale_parameter(v, s) for v, s in zip(e.free_parameters, e.pscale)])
    if timepoints is None:
        mdf = objective.problem.petab_problem.measurement_df
        timepoints = np.unique(mdf[petab.TIME].to_numpy(dtype=float))
    model = objective.compiled.create_model()
    return _layer(model, input_ids, timepoints, ConditionTable(ids, np.array(fixed),
                                                               np.array(free)),
                  input_scale, sensitivity, solver or objective.problem.solver, num_threads)


def layer_from_problem(problem: Problem | str | Path, input_ids: Sequence[str],
                       timepoints: Sequence[float] | None = None,
                       x_free: Sequence[float] | None = None, **kwargs) -> SimulatorLayer:
    """Layer over a PEtab problem (YAML path or loaded `Problem`); see `layer_from_objective`."""
    if not isinstance(problem, Problem):
        problem = load_problem(problem)
    return layer_from_objective(create_objective(problem), input_ids, timepoints, x_free,
                                **kwargs)


def sbml_problem(sbml: str | Path, input_ids: Sequence[str],
                 observables: Mapping[str, str] | None = None,
                 fixed_ids: Sequence[str] = ()) -> tuple[Problem, list[str]]:
    """Minimal PEtab problem of an SBML model for a layer; returns it and the input ids.

    Species among `input_ids` are replaced by new parameters ``x0_<species>`` that set their
    initial values. Observables default to one per species (``y_<species>``).
    """
    text = Path(sbml).read_text() if Path(str(sbml)).suffix in (".xml", ".sbml") else str(sbml)
    doc = libsbml.readSBMLFromString(text)
    if doc.getNumErrors(libsbml.LIBSBML_SEV_ERROR):
        raise InputError(f"cannot read SBML: {doc.getError(0).getMessage()}")
    model = doc.getModel()
    species = [s.getId() for s in model.getListOfSpecies()]
    inputs = []
    for pid in input_ids:
        if pid in species:
            sp = model.getSpecies(pid)
            new = f"x0_{pid}"
            p = model.createParameter()
            p.setId(new), p.setConstant(True)
            p.setValue(sp.getInitialConcentration() if sp.isSetInitialConcentration()
                       else sp.getInitialAmount())
            if model.getInitialAssignmentBySymbol(pid) is not None:
                raise InputError(f"species {pid!r} already has an initial assignment")
            ia = model.createInitialAssignment()
            ia.setSymbol(pid), ia.setMath(libsbml.parseL3Formula(new))
            inputs.append(new)
        elif model.getParameter(pid) is not None:
            inputs.append(pid)
        else:
            raise InputError(f"layer input {pid!r} is neither a parameter nor a species")
    observables = dict(observables or {f"y_{s}": s for s in species})
    ruled = {model.getRule(i).getVariable() for i in range(model.getNumRules())}
    params = [p for p in model.getListOfParameters() if p.getConstant() and p.getId() not in ruled]
    missing = set(fixed_ids) - {p.getId() for p in params}
    if missing:
        raise InputError(f"fixed_ids {sorted(missing)} are not constant SBML parameters")
    par_df = pd.DataFrame([{petab.PARAMETER_ID: p.getId(), petab.PARAMETER_SCALE: petab.LIN,
                            petab.LOWER_BOUND: -1e300, petab.UPPER_BOUND: 1e300,
                            petab.NOMINAL_VALUE: p.getValue(),
                            petab.ESTIMATE: 0 if p.getId() in fixed_ids else 1} for p in params])
    obs_df = pd.DataFrame([{petab.OBSERVABLE_ID: o, petab.OBSERVABLE_FORMULA: f,
                            petab.NOISE_FORMULA: 1.0, petab.NOISE_DISTRIBUTION: petab.NORMAL}
                           for o, f in observables.items()])
    meas_df = pd.DataFrame([{petab.OBSERVABLE_ID: o, petab.SIMULATION_CONDITION_ID: "c0",
                             petab.TIME: 0.0, petab.MEASUREMENT: 0.0} for o in observables])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp = petab.Problem(model=SbmlModel(sbml_model=model, sbml_document=doc),
                           condition_df=petab.get_condition_df(
                               pd.DataFrame({petab.CONDITION_ID: ["c0"]})),
                           measurement_df=petab.get_measurement_df(meas_df),
                           observable_df=petab.get_observable_df(obs_df),
                           parameter_df=petab.get_parameter_df(par_df))
    return Problem(pp, f"{model.getId() or 'sbml'}_layer", None), inputs


def layer_from_sbml(sbml: str | Path, input_ids: Sequence[str], timepoints: Sequence[float],
                    observables: Mapping[str, str] | None = None, fixed_ids: Sequence[str] = (),
                    input_scale: str | Sequence[str] = "lin", sensitivity: str = "auto",
                    solver: SolverSettings | None = None, num_threads: int = 1
                    ) -> SimulatorLayer:
    """Layer over a bare SBML model (file or text), compiled through the project cache.

    Args:
        sbml: SBML file path or SBML text.
        input_ids: Parameter or species ids (species: their initial values) that become inputs.
        timepoints: Output times, shape (n_t,).
        observables: Observable id -> formula in model entities (default: each species).
        fixed_ids: Parameters that become per-element constants (`forward(..., fixed=)`).
    """
    problem, inputs = sbml_problem(sbml, input_ids, observables, fixed_ids)
    model = compile_problem(problem).create_model()
    return _layer(model, inputs, timepoints, None, input_scale, sensitivity,
                  solver or SolverSettings(), num_threads)
