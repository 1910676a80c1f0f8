"""Negative log-likelihood, gradient and simulation table of a PEtab v2 problem.

Reused from AMICI's native PEtab v2 path: `ExperimentManager` (one ExpData per experiment:
timepoints, data, numeric sigmas, t0, pre-equilibration, constants; mapping of problem
parameters and placeholder overrides onto model parameters), `run_simulations`,
`PetabSimulator`'s aggregation of likelihood sensitivities over experiments and
`rdatas_to_simulation_df`; pyPESTO for the optimization problem (bounds, fixed parameters,
start points from the petab priors: `pypesto.petab.util.PetabStartpoints`).

Hand-written, with the same public surface as `ModelObjective`: exact evaluation on any
subset of experiments (AMICI's `PetabSimulator.simulate` and pyPESTO's
`AmiciPetabV2Objective` always simulate all experiments and rebuild every ExpData per call;
here ExpData are made once and only re-parameterized), solver settings per problem, a
size-based forward/adjoint choice, priors (`petab_v2_priors`), errors naming the failed
experiment, work counting (`work`: every experiment AMICI ran, as `ModelObjective` counts
conditions), a pyPESTO likelihood that takes experiment subsets (`PetabV2Likelihood`, an
`EvaluateObjective` over the full vector: the mini-batch optimizers batch experiments
through it), and pickling/copying that rebuilds from the compile cache (thread, process and
MPI engines get their own AMICI objects).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import amici.sim.sundials as asd
import numpy as np
import pandas as pd
import pypesto
from amici.importers.petab import rdatas_to_simulation_df, unflatten_simulation_df
from amici.sim.sundials.petab import ExperimentManager, PetabSimulator
from pypesto.objective import AggregatedObjective
from pypesto.petab.util import PetabStartpoints

from sbmlhybrid._logs import quiet_amici_simulations
from sbmlhybrid.build import CompiledModel, compile_problem
from sbmlhybrid.build.v2 import amici_importer
from sbmlhybrid.errors import InputError, SimulationError
from sbmlhybrid.objective._common import (
    ADJOINT_ABOVE_N_PARAMETERS,
    DEFAULT_THREADS,
    Evaluation,
    apply_solver_settings,
    free_vector,
    lookup_indices,
)
from sbmlhybrid.objective.petab_v2_priors import prior_objective
from sbmlhybrid.objective.protocol import EvaluateObjective
from sbmlhybrid.objective.work import WorkCounter
from sbmlhybrid.problem.v2 import ProblemV2


class PetabV2Objective:
    """Objective of a PEtab v2 problem over its model compiled by AMICI's v2 importer.

    Parameters are on linear scale (PEtab v2 has no parameter scales).

    Args:
        problem: Validated problem (`sbmlhybrid.problem.load_problem` on a v2 YAML).
        compiled: Its compiled model; compiled (or taken from the cache) if omitted.
        sensitivity_method: "forward", "adjoint" or "auto" (default: the problem's setting).

    Attributes:
        conditions: Ids of the experiments with measurements (the unit of simulation), in
            measurement-table order; `evaluate(conditions=...)` takes these or indices.
        x_ids: All parameter-table ids (the full vector of `pypesto_problem`).
        pypesto_problem: pyPESTO problem (bounds, fixed parameters, priors, start points).
        amici_model, amici_solver: The AMICI model and the solver of every simulation.
        work: Counter of the experiments simulated (`sbmlhybrid.objective.work`; one per
            experiment AMICI ran, with or without sensitivities).
    """

    def __init__(self, problem: ProblemV2, compiled: CompiledModel | None = None,
                 sensitivity_method: str | None = None):
        quiet_amici_simulations()
        self.problem = problem
        # (re)built through the cache if its folder is gone: AMICI's importer would otherwise
        # build straight into the final folder, without lock or atomic rename
        self.compiled = compiled if compiled is not None and compiled.path.is_dir() \
            else compile_problem(problem)
        importer = amici_importer(problem, self.compiled.module_name, self.compiled.path)
        self.amici_model = importer.create_model()  # the folder exists: imports, no build
        # The importer's converted problem (experiments as events) is the one that matches
        # the compiled model; its parameter table is the problem's.
        self.petab_problem = importer.petab_problem
        self._manager = ExperimentManager(model=self.amici_model,
                                          petab_problem=self.petab_problem)
        self.amici_solver = self.amici_model.create_solver()
        self._simulator = PetabSimulator(self._manager, solver=self.amici_solver)
        self.conditions: list[str] = list(dict.fromkeys(
            m.experiment_id for m in self.petab_problem.measurements))
        self._edatas = [self._manager.create_edata(e) for e in self.conditions]
        self.work = WorkCounter(n_conditions=len(self.conditions))
        self.x_ids: list[str] = list(self.petab_problem.x_ids)
        self._free_index = [self.x_ids.index(i) for i in self.x_free_ids]
        method = sensitivity_method or problem.solver.sensitivity_method
        if method == "auto":
            method = "adjoint" if len(self.x_free_ids) > ADJOINT_ABOVE_N_PARAMETERS \
                else "forward"
        self.sensitivity_method = method
        self.apply_solver_settings()
        self.n_threads = DEFAULT_THREADS
        self.pypesto_problem = self._make_pypesto_problem()

    # ---- pickling / copying: rebuild from the compile cache -------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"problem": self.problem, "compiled": self.compiled,
                "sensitivity_method": self.sensitivity_method, "n_threads": self.n_threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["problem"], state["compiled"], state["sensitivity_method"])
        self.n_threads = state["n_threads"]

    # ---- settings -------------------------------------------------------------------------
    @property
    def n_threads(self) -> int:
        """AMICI (OpenMP) threads that simulate the experiments of an evaluation."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value: int) -> None:
        if int(value) < 1:
            raise InputError(f"number of threads must be >= 1, got {value}")
        self._n_threads = int(value)

    def apply_solver_settings(self) -> None:
        """Push the problem's tolerances and sensitivity method to the AMICI solver."""
        apply_solver_settings(self.amici_solver, self.problem.solver, self.sensitivity_method)

    # ---- parameters and experiments ------------------------------------------------------
    @property
    def x_free_ids(self) -> list[str]:
        """Ids of the estimated parameters (the order of `grad` and of free vectors)."""
        return list(self.petab_problem.x_free_ids)

    @property
    def x_nominal_free(self) -> np.ndarray:
        """Nominal estimated parameters (linear scale), shape (n_free,)."""
        return np.asarray(self.petab_problem.get_x_nominal(free=True, fixed=False), dtype=float)

    def full_x(self, x_free: Sequence[float] | None) -> np.ndarray:
        """Free parameter vector -> full vector (order `x_ids`) incl. fixed parameters."""
        x = free_vector(x_free, self.x_nominal_free, self.x_free_ids)
        return self.pypesto_problem.get_full_vector(x)

    def condition_indices(self, conditions: Sequence[int | str] | None) -> list[int]:
        """Indices into `conditions` for experiment ids or integer indices (default: all)."""
        return lookup_indices(conditions, self.conditions, "experiment")

    # ---- evaluation -----------------------------------------------------------------------
    def evaluate(self, x_free: Sequence[float] | None = None,
                 conditions: Sequence[int | str] | None = None, gradient: bool = True,
                 return_rdatas: bool = False, raise_on_failure: bool = True) -> Evaluation:
        """Negative log-likelihood (and gradient) over all or a subset of experiments.

        Exact on subsets: single-experiment values and gradients sum to the full ones.
        Priors are not included (`pypesto_problem.objective` includes them).

        Args:
            x_free: Estimated parameters (linear scale), shape (n_free,); default nominal.
            conditions: Experiment ids or indices; default all.
            gradient: Also compute the gradient, shape (n_free,).
            return_rdatas: Keep AMICI's return data (full reporting: y, chi2, res, ...).
            raise_on_failure: Raise `SimulationError` naming the failed experiment(s);
                otherwise return fval=inf and grad=nan.
        """
        x = self.full_x(x_free)
        return self.evaluate_full(x, self.condition_indices(conditions), gradient,
                                  return_rdatas, raise_on_failure)

    def evaluate_full(self, x_full: np.ndarray, idx: Sequence[int], gradient: bool,
                      return_rdatas: bool = False, raise_on_failure: bool = False
                      ) -> Evaluation:
        """`evaluate` on a full parameter vector (order `x_ids`) and experiment indices."""
        params = {pid: float(v) for pid, v in zip(self.x_ids, x_full, strict=True)}
        edatas = [self._edatas[i] for i in idx]
        for edata in edatas:
            self._manager.apply_parameters(edata, problem_parameters=params)
        solver = self.amici_solver
        solver.set_sensitivity_order(asd.SensitivityOrder.first if gradient
                                     else asd.SensitivityOrder.none)
        solver.set_return_data_reporting_mode(
            asd.RDataReporting.full if return_rdatas else asd.RDataReporting.likelihood)
        rdatas = asd.run_simulations(self.amici_model, solver, edatas,
                                     num_threads=self.n_threads)
        failed = [self.conditions[i] for i, r in zip(idx, rdatas, strict=True)
                  if r.status != asd.AMICI_SUCCESS or not np.isfinite(r.llh)]
        fval = float(-sum(r.llh for r in rdatas)) if not failed else np.inf
        # AMICI skips the experiments after a failed one (status "not run"): not simulated
        self.work.record(sum(int(r.status) != asd.AMICI_NOT_RUN for r in rdatas), gradient,
                         len(edatas), fval)
        grad = None
        if gradient:
            # private API, used here only: PetabSimulator sums the sensitivities of any list
            # of return data (placeholder overrides mapped back to problem parameters);
            # its public `simulate` runs every experiment and rebuilds all ExpData.
            sllh = None if failed else self._simulator._aggregate_sllh(rdatas)
            grad = np.full(len(self.x_free_ids), np.nan) if sllh is None else \
                np.array([-sllh.get(pid, 0.0) for pid in self.x_free_ids])
        if failed and raise_on_failure:
            raise SimulationError(
                f"integration failed for experiment(s) {failed} at parameters "
                f"{dict(zip(self.x_free_ids, np.round(x_full[self._free_index], 6)))}")
        return Evaluation(fval, grad, list(rdatas) if return_rdatas else None)

    def __call__(self, x_free: Sequence[float], conditions: Sequence[int | str] | None = None
                 ) -> tuple[float, np.ndarray]:
        """(fval, grad) over all or a subset of experiments; see `evaluate`."""
        ev = self.evaluate(x_free, conditions)
        return ev.fval, ev.grad  # type: ignore[return-value]

    def simulate(self, x_free: Sequence[float] | None = None,
                 conditions: Sequence[int | str] | None = None) -> pd.DataFrame:
        """PEtab v2 simulation table (measurement rows with ``simulation``) at `x_free`.

        Measurements without an experiment have an empty ``experimentId`` (NaN).
        """
        ev = self.evaluate(x_free, conditions, gradient=False, return_rdatas=True)
        table = rdatas_to_simulation_df(ev.rdatas, self.amici_model, self.petab_problem)
        if self.problem.unflattened is not None:
            table = unflatten_simulation_df(table, self.problem.unflattened)
        return table.reset_index(drop=True)

    def llh(self, x_free: Sequence[float] | None = None) -> float:
        """Log-likelihood (priors excluded) at `x_free` (default: nominal)."""
        return -self.evaluate(x_free, gradient=False).fval

    def log_prior(self, x_free: Sequence[float] | None = None) -> float:
        """Log-prior density at `x_free` (0 for a problem without priors)."""
        prior = prior_objective(self.petab_problem, self.x_ids)
        return 0.0 if prior is None else -float(prior(self.full_x(x_free)))

    # ---- pyPESTO --------------------------------------------------------------------------
    def _make_pypesto_problem(self) -> pypesto.Problem:
        pp = self.petab_problem
        likelihood = PetabV2Likelihood(self)
        prior = prior_objective(pp, self.x_ids)
        objective = likelihood if prior is None else AggregatedObjective([likelihood, prior])
        # copy_objective=False: the problem evaluates through this instance, so settings
        # changed here (threads, tolerances) reach the optimizer; engines still copy it.
        return pypesto.Problem(
            objective=objective, lb=pp.lb, ub=pp.ub, x_fixed_indices=pp.x_fixed_indices,
            x_fixed_vals=pp.get_x_nominal(free=False, fixed=True), x_names=self.x_ids,
            x_scales=["lin"] * len(self.x_ids), x_priors_defs=prior,
            startpoint_method=PetabStartpoints(petab_problem=pp), copy_objective=False)


class PetabV2Likelihood(EvaluateObjective):
    """pyPESTO objective: negative log-likelihood of experiments, on the full vector (the
    parameter table's, order ``owner.x_ids``; fixed parameters get a zero gradient).

    Function values and gradients only (optimizers build Hessian approximations); all
    experiments per call, any subset through `evaluate_conditions` (mini-batches).
    """

    def __init__(self, owner: PetabV2Objective):
        super().__init__(owner, x_names=owner.x_ids)
        self._pypesto_free: list[int] | None = None

    def update_from_problem(self, dim_full: int, x_free_indices: Sequence[int],
                            x_fixed_indices: Sequence[int],
                            x_fixed_vals: Sequence[float]) -> None:
        super().update_from_problem(dim_full, x_free_indices, x_fixed_indices, x_fixed_vals)
        self._pypesto_free = list(x_free_indices)

    def evaluate_conditions(self, x: np.ndarray, conditions: Sequence[int] | None,
                            gradient: bool) -> Evaluation:
        """`EvaluateObjective.evaluate_conditions` on the full vector `x`, shape
        (len(x_ids),); conditions: experiment indices (None: all)."""
        owner = self.owner
        if gradient and self._pypesto_free is not None:
            extra = set(self._pypesto_free) - set(owner._free_index)
            if extra:  # constants of the compiled model: AMICI has no sensitivities
                raise InputError(f"no gradient w.r.t. {[owner.x_ids[i] for i in extra]}: "
                                 "not estimated in the PEtab problem")
        ev = owner.evaluate_full(np.asarray(x, dtype=float),
                                 owner.condition_indices(conditions), gradient)
        grad = None
        if gradient and ev.grad is not None:
            grad = np.zeros(len(owner.x_ids))
            grad[owner._free_index] = ev.grad
        return Evaluation(ev.fval, grad)


__all__ = ["PetabV2Likelihood", "PetabV2Objective"]
