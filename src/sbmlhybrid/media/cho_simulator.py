"""Culture outcomes of many medium formulations through the compiled AMICI CHO fed-batch model.

Reused: the project's bundled PEtab problem ``petab_problems/cho_fedbatch/problem.yaml``
(shipped inside the package as ``sbmlhybrid/_problems/cho_fedbatch``, see `CHO_PROBLEM`;
loaded with ``sbmlhybrid.problem.load_problem``, compiled once into the model cache by
``sbmlhybrid.build.compile_problem``) and AMICI's ``run_simulations`` over one ``ExpData``
per formulation (per-formulation kinetic parameters and initial medium ride on the ExpData).
Hand-written: the mapping of multipliers onto the model's own parameters, the outcome
read-out, and the failure check.

A formulation is given as multipliers on the model's nominal values, one column per entry
of ``CHO_PARAMETERS``: the 17 kinetic parameters of the CHO model (Monod growth on glucose
and glutamine, lactate/ammonia inhibition, basal and ammonia-driven death, yields,
maintenance, lactate shift, growth- and non-growth-associated antibody productivity; nominal
values from the problem's parameter table) and the initial medium's glucose and glutamine
(``Glc0``, ``Gln0``; nominal ``MEDIUM_INITIAL``). Inoculum, feed rate, feed start and feed
composition come from one condition of the problem (default ``fed_standard``: 2 % of V0 per
day of 200 mM glucose / 20 mM glutamine from day 3). Units: days, mM, 1e6 cells/mL, mg/L.
"""

from __future__ import annotations

import dataclasses
from importlib.resources import files
from pathlib import Path

import amici.sim.sundials as asd
import numpy as np

from sbmlhybrid._logs import quiet_amici_simulations
from sbmlhybrid.errors import InputError, SimulationError
from sbmlhybrid.objective import apply_solver_settings

# Package data (pyproject.toml: tool.setuptools.package-data): in the source tree
# sbmlhybrid/_problems/cho_fedbatch links to petab_problems/cho_fedbatch, an installed
# package holds copies of its tables. Installed as plain files, so this is a real path.
CHO_PROBLEM = Path(str(files("sbmlhybrid") / "_problems" / "cho_fedbatch" / "problem.yaml"))
# Kinetic parameters of the CHO fed-batch SBML model (petab_problems/cho_fedbatch/model.py).
CHO_KINETIC = ("mu_max", "K_glc", "K_gln", "KI_lac", "KI_amm", "kd0", "kd_amm", "KD_amm",
               "Y_x_glc", "m_glc", "Y_x_gln", "Y_lac_glc", "q_lac_upt", "K_sw", "Y_amm_gln",
               "alpha_mab", "beta_mab")
# Initial-medium inputs (condition parameters of the model) set by the formulation.
CHO_MEDIUM = ("Glc0", "Gln0")
CHO_PARAMETERS = CHO_KINETIC + CHO_MEDIUM  # column order of the multiplier matrices
MEDIUM_INITIAL = {"Glc0": 35.0, "Gln0": 6.0}  # mM, the standard medium (condition fed_standard)
OUTCOMES = ("titer_g_per_L", "peak_vcd_1e6_per_mL", "final_viability", "ivcd_1e6_day_per_mL")


class AmiciCHOSimulator:
    """Outcomes of the compiled CHO fed-batch model for a batch of parameter multipliers.

    The AMICI model is compiled (or taken from the cache) and loaded on first use.

    Args:
        problem_yaml: PEtab problem of the CHO fed-batch model (default: the bundled one).
        condition: Condition id supplying inoculum and feeding (its Glc0/Gln0 are replaced
            by the formulation's).
        t_end: Culture duration (days); outcomes are read at t_end.
        n_time: Output grid points on [0, t_end] (peak VCD and IVCD are taken on it).
        num_threads: OpenMP threads of ``run_simulations`` (1 on a shared machine).
        rtol, atol, max_steps: CVODES settings (default: the problem's solver settings).
        on_failure: "raise" (default) raises ``SimulationError`` naming the failed rows;
            "nan" returns NaN rows for them (and lists them in ``last_failed_``).
    """

    def __init__(self, problem_yaml: str | Path = CHO_PROBLEM, condition: str = "fed_standard",
                 t_end: float = 14.0, n_time: int = 141, num_threads: int = 1,
                 rtol: float | None = None, atol: float | None = None,
                 max_steps: int | None = None, on_failure: str = "raise") -> None:
        quiet_amici_simulations()
        if on_failure not in ("raise", "nan"):
            raise InputError("on_failure must be 'raise' or 'nan'")
        if t_end <= 0 or n_time < 2:
            raise InputError("t_end must be > 0 and n_time >= 2")
        self.problem_yaml = Path(problem_yaml)
        self.condition = condition
        self.t_end, self.n_time, self.num_threads = float(t_end), int(n_time), int(num_threads)
        self.rtol, self.atol, self.max_steps = rtol, atol, max_steps
        self.on_failure = on_failure
        self.last_failed_: np.ndarray = np.zeros(0, dtype=int)
        self._model = None

    # ---- set-up -------------------------------------------------------------------------
    def _load(self) -> None:
        from sbmlhybrid.build import compile_problem
        from sbmlhybrid.problem import load_problem

        problem = load_problem(self.problem_yaml)
        model = compile_problem(problem).create_model()
        free_ids = list(model.get_free_parameter_ids())
        fixed_ids = list(model.get_fixed_parameter_ids())
        missing = [p for p in CHO_KINETIC if p not in free_ids] + \
            [p for p in CHO_MEDIUM if p not in fixed_ids]
        if missing:
            raise InputError(f"{self.problem_yaml}: model lacks parameters {missing}")
        pdf = problem.petab_problem.parameter_df
        self._free = np.array([float(pdf.loc[p, "nominalValue"]) if p in pdf.index
                               else model.get_free_parameter_by_id(p) for p in free_ids])
        self._kin_idx = np.array([free_ids.index(p) for p in CHO_KINETIC])
        cdf = problem.petab_problem.condition_df
        if self.condition not in cdf.index:
            raise InputError(f"unknown condition {self.condition!r}; known: {list(cdf.index)}")
        fixed = np.array(model.get_fixed_parameters(), dtype=float)
        for i, pid in enumerate(fixed_ids):
            if pid in cdf.columns:
                fixed[i] = float(cdf.loc[self.condition, pid])
        self._fixed = fixed
        self._med_idx = np.array([fixed_ids.index(p) for p in CHO_MEDIUM])
        self._medium = np.array([MEDIUM_INITIAL[p] for p in CHO_MEDIUM])
        model.set_parameter_scale(asd.ParameterScaling.none)
        model.set_timepoints(self.times)
        solver = model.create_solver()
        given = problem.solver
        apply_solver_settings(solver, dataclasses.replace(
            given, rtol=self.rtol or given.rtol, atol=self.atol or given.atol,
            max_steps=self.max_steps or given.max_steps))
        solver.set_sensitivity_order(asd.SensitivityOrder.none)
        states = list(model.get_state_ids())
        self._ix = {s: states.index(s) for s in ("Xv", "Xd", "mAb")}
        self._model, self._solver = model, solver

    @property
    def times(self) -> np.ndarray:
        """Output time grid (days), shape (n_time,)."""
        return np.linspace(0.0, self.t_end, self.n_time)

    @property
    def nominal(self) -> np.ndarray:
        """Values at multiplier 1, shape (len(CHO_PARAMETERS),), in model units."""
        if self._model is None:
            self._load()
        return np.r_[self._free[self._kin_idx], self._medium]

    # ---- simulation ---------------------------------------------------------------------
    def trajectories(self, param_multipliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """State trajectories of each formulation.

        Args:
            param_multipliers: (n, len(CHO_PARAMETERS)) positive multipliers on ``nominal``.

        Returns:
            x: (n, n_time, n_states) states (model state order: Xv, Xd, Glc, Gln, Lac, Amm,
            mAb, V), NaN for failed rows; ok: (n,) bool, False where integration failed or
            gave non-finite states.
        """
        m = np.asarray(param_multipliers, dtype=float)
        if m.ndim != 2 or m.shape[1] != len(CHO_PARAMETERS):
            raise InputError(f"param_multipliers must be (n, {len(CHO_PARAMETERS)}), "
                             f"got {m.shape}")
        if not np.all(np.isfinite(m) & (m > 0)):
            raise InputError("param_multipliers must be finite and positive")
        nominal = self.nominal
        values = m * nominal
        edatas = []
        for row in values:
            e = asd.ExpData(self._model)
            free = self._free.copy()
            free[self._kin_idx] = row[:len(CHO_KINETIC)]
            fixed = self._fixed.copy()
            fixed[self._med_idx] = row[len(CHO_KINETIC):]
            e.free_parameters = free
            e.fixed_parameters = fixed
            edatas.append(e)
        rdatas = asd.run_simulations(self._model, self._solver, edatas,
                                     num_threads=max(1, self.num_threads))
        n_x = self._model.nx_rdata
        x = np.full((len(m), self.n_time, n_x), np.nan)
        ok = np.zeros(len(m), dtype=bool)
        for i, r in enumerate(rdatas):
            if r.status == 0:
                xi = np.asarray(r.x)
                if xi.shape == x.shape[1:] and np.isfinite(xi).all():
                    x[i], ok[i] = xi, True
        return x, ok

    def __call__(self, param_multipliers: np.ndarray) -> np.ndarray:
        """Outcomes (n, 4) in ``OUTCOMES`` order: titer at t_end (g/L), peak viable cell
        density (1e6 cells/mL), viability Xv/(Xv+Xd) at t_end, and integral of viable cell
        density over [0, t_end] (1e6 cells day/mL, trapezoid on the output grid).

        Raises:
            SimulationError: integration failed for some rows (unless on_failure="nan").
        """
        m = np.asarray(param_multipliers, dtype=float)
        x, ok = self.trajectories(m)
        self.last_failed_ = np.flatnonzero(~ok)
        if len(self.last_failed_) and self.on_failure == "raise":
            first = self.last_failed_[:5]
            raise SimulationError(
                f"CHO fed-batch integration failed for {len(self.last_failed_)} of {len(m)} "
                f"formulations (rows {first.tolist()}...); multipliers of row {first[0]}: "
                f"{dict(zip(CHO_PARAMETERS, np.round(m[first[0]], 4)))}")
        xv, xd, mab = (x[:, :, self._ix[s]] for s in ("Xv", "Xd", "mAb"))
        ivcd = np.sum(0.5 * (xv[:, 1:] + xv[:, :-1]) * np.diff(self.times), axis=1)
        viability = xv[:, -1] / np.maximum(xv[:, -1] + xd[:, -1], 1e-12)
        return np.stack([mab[:, -1] / 1000.0, xv.max(axis=1), viability, ivcd], axis=1)
