"""Negative log-likelihood, gradient and simulation tables of a compiled PEtab problem.

Reused: pyPESTO's `AmiciObjective` (via its PEtab objective creator, so pickling for process
and MPI engines rebuilds the model from the cache folder) and AMICI's PEtab v1 helpers. Added
by hand: exact evaluation on any subset of conditions (pyPESTO has no API for it; the subset's
ExpData and parameter mapping are passed through `call_unprocessed`), solver settings per
problem, a size-based choice of forward vs adjoint sensitivities, and clear errors naming the
condition when an integration fails.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import amici.sim.sundials as asd
import numpy as np
import pandas as pd
import petab.v1 as petab
import pypesto
import pypesto.petab
from amici.sim._parameter_mapping import ParameterMapping

from sbmlhybrid._logs import quiet_amici_simulations
from sbmlhybrid.build import CompiledModel, compile_problem
from sbmlhybrid.errors import InputError, SimulationError
from sbmlhybrid.objective._common import (
    ADJOINT_ABOVE_N_PARAMETERS,
    DEFAULT_THREADS,
    Evaluation,
    apply_solver_settings,
    free_vector,
    lookup_indices,
)
from sbmlhybrid.objective.work import WorkCounter, install_work_counter
from sbmlhybrid.problem import Problem
from sbmlhybrid.problem.v2 import ProblemV2

if TYPE_CHECKING:
    from sbmlhybrid.objective.petab_v2 import PetabV2Objective


class ModelObjective:
    """Objective of a PEtab problem over its compiled AMICI model.

    Args:
        problem: Validated problem (`sbmlhybrid.problem.load_problem`).
        compiled: Its compiled model; compiled (or taken from the cache) if omitted.
        sensitivity_method: "forward", "adjoint" or "auto" (default: the problem's setting).

    Attributes:
        pypesto_problem: pyPESTO problem (bounds, scales, fixed parameters, priors).
        work: Counter of the conditions simulated (`sbmlhybrid.objective.work`).
        amici_objective: The underlying `pypesto.objective.AmiciObjective`.
        conditions: (preequilibration id or "", simulation id) per experimental condition,
            in the order of `amici_objective.edatas`.
    """

    def __init__(self, problem: Problem, compiled: CompiledModel | None = None,
                 sensitivity_method: str | None = None):
        quiet_amici_simulations()
        self.problem = problem
        self.compiled = compiled or compile_problem(problem)
        importer = pypesto.petab.PetabImporter(
            problem.petab_problem, output_folder=str(self.compiled.path),
            model_name=self.compiled.module_name, validate_petab=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            creator = importer.create_objective_creator()
            model = self.compiled.create_model()
            # Steady-state guesses are stored by position in the evaluated ExpData list, which
            # is wrong for condition subsets: off.
            amici_objective = creator.create_objective(model=model, verbose=False,
                                                       guess_steadystate=False)
            self.pypesto_problem = importer.create_problem(amici_objective)
        # pyPESTO's Problem deep-copies its objective (and wraps it with priors): use the copy
        # it optimizes, so solver settings and subset calls act on what `fit` runs.
        self.amici_objective = _find_amici_objective(self.pypesto_problem.objective)
        # Every simulation of the objective that optimizers call is counted (one unit of work
        # = one condition with sensitivities; see sbmlhybrid.objective.work).
        self.work: WorkCounter = install_work_counter(self.amici_objective)
        self.pypesto_problem.problem_name = problem.name  # type: ignore[attr-defined]
        sim_conditions = petab.get_simulation_conditions(problem.petab_problem.measurement_df)
        pre = sim_conditions.get(petab.PREEQUILIBRATION_CONDITION_ID,
                                 pd.Series([""] * len(sim_conditions)))
        self.conditions: list[tuple[str, str]] = [
            ("" if pd.isna(a) else str(a), str(b))
            for a, b in zip(pre, sim_conditions[petab.SIMULATION_CONDITION_ID])
        ]
        method = sensitivity_method or problem.solver.sensitivity_method
        if method == "auto":
            n_free = len(problem.petab_problem.x_free_ids)
            method = "adjoint" if n_free > ADJOINT_ABOVE_N_PARAMETERS else "forward"
        self.sensitivity_method = method
        self.apply_solver_settings()
        self.n_threads = DEFAULT_THREADS

    @property
    def n_threads(self) -> int:
        """AMICI (OpenMP) threads that simulate the conditions of an evaluation in parallel."""
        return int(self.amici_objective.n_threads)

    @n_threads.setter
    def n_threads(self, value: int) -> None:
        if int(value) < 1:
            raise InputError(f"number of threads must be >= 1, got {value}")
        self.amici_objective.n_threads = int(value)

    # ---- settings -------------------------------------------------------------------------
    def apply_solver_settings(self) -> None:
        """Push the problem's tolerances and sensitivity method to the AMICI solver."""
        apply_solver_settings(self.amici_objective.amici_solver, self.problem.solver,
                              self.sensitivity_method)

    # ---- parameters -----------------------------------------------------------------------
    @property
    def x_free_ids(self) -> list[str]:
        """Ids of the estimated parameters (the order of `grad` and of free vectors)."""
        return list(self.problem.petab_problem.x_free_ids)

    @property
    def x_nominal_free(self) -> np.ndarray:
        """Nominal estimated parameters on PEtab scale, shape (n_free,)."""
        return np.asarray(self.problem.petab_problem.x_nominal_free_scaled, dtype=float)

    def full_x(self, x_free: Sequence[float] | None) -> np.ndarray:
        """Free parameter vector (PEtab scale) -> full vector incl. fixed parameters."""
        x = free_vector(x_free, self.x_nominal_free, self.x_free_ids)
        return self.pypesto_problem.get_full_vector(x)

    # ---- conditions -----------------------------------------------------------------------
    def condition_indices(self, conditions: Sequence[int | str] | None) -> list[int]:
        """Indices into `conditions` for ids (simulation condition ids) or integer indices."""
        return lookup_indices(conditions, [c[1] for c in self.conditions], "condition")

    # ---- evaluation -----------------------------------------------------------------------
    def evaluate(self, x_free: Sequence[float] | None = None,
                 conditions: Sequence[int | str] | None = None, gradient: bool = True,
                 return_rdatas: bool = False, raise_on_failure: bool = True) -> Evaluation:
        """Negative log-likelihood (and gradient) over all or a subset of conditions.

        The subset value is exact: summing single-condition evaluations gives the full value
        and gradient. Priors are not included (see `pypesto_problem.objective` for those).

        Args:
            x_free: Estimated parameters on PEtab scale, shape (n_free,); default nominal.
            conditions: Condition ids or indices; default all.
            gradient: Also compute the gradient (shape (n_free,)).
            return_rdatas: Keep AMICI's return data (full reporting).
            raise_on_failure: Raise `SimulationError` naming the failed condition(s);
                otherwise return fval=inf and grad=nan.
        """
        idx = self.condition_indices(conditions)
        obj = self.amici_objective
        kwargs = {}
        if conditions is not None:
            kwargs = {"edatas": [obj.edatas[i] for i in idx],
                      "parameter_mapping": ParameterMapping([obj.parameter_mapping[i]
                                                             for i in idx])}
        x_full = self.full_x(x_free)  # validated, nominal if None
        x = self.full_free(x_full)
        # A plain objective belongs to the pyPESTO problem and maps free <-> full vectors
        # itself; inside an aggregate (with priors) it works on full vectors.
        plain = obj is self.pypesto_problem.objective
        orders = (0, 1) if gradient else (0,)
        # Only likelihood and its gradient unless return data are wanted: pyPESTO switches to
        # full reporting (residuals, sy, ...) whenever return_dict is set, which costs time.
        reporting = asd.RDataReporting.full if return_rdatas else asd.RDataReporting.likelihood
        result = obj(x if plain else x_full, sensi_orders=orders, return_dict=True,
                     amici_reporting=reporting,
                     **kwargs)
        rdatas = result.get("rdatas") or []
        fval = float(result["fval"])
        if not np.isfinite(fval):
            failed = [self.conditions[i][1] for i, r in zip(idx, rdatas) if r.status != 0]
            if raise_on_failure:
                raise SimulationError(
                    f"integration failed for condition(s) {failed or '?'} at parameters "
                    f"{dict(zip(self.x_free_ids, np.round(x, 6)))}")
        grad = None
        if gradient:
            grad = np.asarray(result["grad"], dtype=float)
            if not plain:
                grad = grad[self.pypesto_problem.x_free_indices]
        return Evaluation(fval, grad, rdatas if return_rdatas else None)

    def full_free(self, x_full: np.ndarray) -> np.ndarray:
        return np.asarray(x_full)[self.pypesto_problem.x_free_indices]

    def __call__(self, x_free: Sequence[float], conditions: Sequence[int | str] | None = None
                 ) -> tuple[float, np.ndarray]:
        """(fval, grad) over all or a subset of conditions; see `evaluate`."""
        ev = self.evaluate(x_free, conditions)
        return ev.fval, ev.grad  # type: ignore[return-value]

    def simulate(self, x_free: Sequence[float] | None = None,
                 conditions: Sequence[int | str] | None = None) -> pd.DataFrame:
        """PEtab simulation table (measurement table with simulated values) at `x_free`."""
        from amici.sim.sundials.petab.v1 import rdatas_to_simulation_df

        idx = self.condition_indices(conditions)
        ev = self.evaluate(x_free, idx, gradient=False, return_rdatas=True)
        mdf = self.problem.petab_problem.measurement_df
        keep = np.zeros(len(mdf), dtype=bool)
        for i in idx:
            pre, sim = self.conditions[i]
            mask = mdf[petab.SIMULATION_CONDITION_ID] == sim
            if petab.PREEQUILIBRATION_CONDITION_ID in mdf:
                col = mdf[petab.PREEQUILIBRATION_CONDITION_ID].fillna("")
                mask &= col == pre
            keep |= mask.to_numpy()
        table = rdatas_to_simulation_df(ev.rdatas, self.amici_objective.amici_model,
                                        mdf.loc[keep].reset_index(drop=True))
        if self.problem.unflattened is not None:
            table = petab.unflatten_simulation_df(table, self.problem.unflattened)
        return table

    def dense_simulation(self, x_free: Sequence[float] | None,
                         conditions: Sequence[int | str] | None = None, n_time: int = 120
                         ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Observables on a dense time grid: per condition (t (n_time,), y (n_time, n_y))."""
        idx = self.condition_indices(conditions)
        obj = self.amici_objective
        self.evaluate(x_free, idx, gradient=False, raise_on_failure=False)  # fills edatas
        solver = obj.amici_solver.clone()
        solver.set_sensitivity_order(asd.SensitivityOrder.none)
        solver.set_return_data_reporting_mode(asd.RDataReporting.full)
        out = []
        for i in idx:
            edata = asd.ExpData(obj.edatas[i])
            t_end = max(edata.get_timepoints()) if len(edata.get_timepoints()) else 1.0
            edata.set_timepoints(np.linspace(0.0, t_end, n_time))
            rdata = asd.run_simulation(obj.amici_model, solver, edata)
            out.append((np.asarray(rdata.ts), np.asarray(rdata.y)))
        return out

    def llh(self, x_free: Sequence[float] | None = None) -> float:
        """Log-likelihood (priors excluded) at `x_free` (default: nominal)."""
        return -self.evaluate(x_free, gradient=False).fval


def _find_amici_objective(objective: pypesto.objective.ObjectiveBase
                          ) -> pypesto.objective.AmiciObjective:
    """The AmiciObjective inside a pyPESTO objective (plain, or aggregated with priors)."""
    if isinstance(objective, pypesto.objective.AmiciObjective):
        return objective
    for inner in getattr(objective, "_objectives", []):
        if isinstance(inner, pypesto.objective.AmiciObjective):
            return inner
    raise TypeError(f"no AmiciObjective in {type(objective).__name__}")


def create_objective(problem: Problem | ProblemV2, compiled: CompiledModel | None = None,
                     sensitivity_method: str | None = None) -> ModelObjective | PetabV2Objective:
    """Compile (or take from the cache) and wrap a problem; see `ModelObjective` (PEtab v2
    problems: `sbmlhybrid.objective.petab_v2.PetabV2Objective`, AMICI's native v2 path)."""
    if isinstance(problem, ProblemV2):
        from sbmlhybrid.objective.petab_v2 import PetabV2Objective

        return PetabV2Objective(problem, compiled, sensitivity_method)
    return ModelObjective(problem, compiled, sensitivity_method)
