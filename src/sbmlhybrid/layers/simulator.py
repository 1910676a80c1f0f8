"""A differentiable PyTorch layer over a compiled AMICI model.

Hand-written (neither AMICI nor pyPESTO has a torch bridge or a vector-Jacobian product):
the `torch.autograd.Function` (`_Simulate`), the per-batch-element `ExpData` set-up (inputs
overriding a condition's parameters, per-element fixed parameters), and the two backward
passes

* ``"forward"``: forward sensitivities are computed together with the forward pass (``sy``,
  shape (n_t, n_in, n_y) per element, kept in ``ctx``); backward is
  ``einsum("btj,btpj->bp", g, sy)``.
* ``"adjoint"``: the forward pass runs without sensitivities; backward runs one adjoint
  solve per element on pseudo-data ``m = y + g`` with normal noise of sigma 1, so that
  ``d llh / d theta = sum (m - y) dy/dtheta = g^T dy/dtheta`` is AMICI's ``sllh``
  (needs all observables normal and untransformed).

Reused: AMICI's simulator (`run_simulation(s)`, which releases the GIL; OpenMP threads for a
batch), its forward/adjoint sensitivities and parameter scaling (inputs may be on ln or log10
scale: AMICI then returns sensitivities w.r.t. the scaled inputs), and the project's compile
cache (see `sbmlhybrid.layers.build` for constructors from PEtab problems and SBML files).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import amici.sim.sundials as asd
import numpy as np
import torch
from torch import nn

from sbmlhybrid._logs import quiet_amici_simulations
from sbmlhybrid.errors import InputError, NotSupportedError, SimulationError
from sbmlhybrid.objective import apply_solver_settings
from sbmlhybrid.problem import SolverSettings

_SCALES = {"lin": asd.ParameterScaling.none, "log": asd.ParameterScaling.ln,
           "log10": asd.ParameterScaling.log10}
# Forward sensitivities cost ~ n_in extra state-sized solves, the adjoint ~ 2 extra solves plus
# a restart at every output time point; measured on the shipped binding-chain model
# (benchmarks/results/torch_layer.json) forward wins at all n_in <= 10, so "auto" only picks the
# adjoint for many inputs and few output times.
ADJOINT_MIN_INPUTS = 24


@dataclass
class ConditionTable:
    """Per-condition parameters a layer starts from before its inputs override some of them.

    Attributes:
        ids: Condition names, shape (n_c,) (used in error messages).
        fixed: Fixed parameters (AMICI constants), shape (n_c, n_fixed), model order.
        free: Free parameters on linear scale, shape (n_c, n_free), model order.
    """

    ids: list[str]
    fixed: np.ndarray
    free: np.ndarray

    def __post_init__(self) -> None:
        self.fixed = np.atleast_2d(np.asarray(self.fixed, dtype=float))
        self.free = np.atleast_2d(np.asarray(self.free, dtype=float))
        if not len(self.ids) == len(self.fixed) == len(self.free):
            raise InputError(f"condition table: {len(self.ids)} ids, {len(self.fixed)} fixed "
                             f"rows and {len(self.free)} free rows differ")


class AmiciBatchSimulator:
    """Runs a compiled model for a batch of parameter rows, with or without sensitivities.

    Args:
        model: AMICI model instance (owned by this object from now on).
        input_ids: Free model parameters that form the inputs, in input order.
        timepoints: Output times, shape (n_t,), model time units.
        conditions: Per-condition base values (default: one condition, the model's values).
        input_scale: "lin", "log" (natural log) or "log10" for all inputs, or one per input.
        rtol, atol, max_steps: CVODES settings (use rtol <= 1e-12 for finite-difference checks).
        num_threads: OpenMP threads of `run_simulations` for a batch.
        solver: All solver settings at once (integration method, quadrature tolerances);
            replaces `rtol`, `atol` and `max_steps` when given.
    """

    def __init__(self, model: asd.Model, input_ids: Sequence[str], timepoints: Sequence[float],
                 conditions: ConditionTable | None = None,
                 input_scale: str | Sequence[str] = "lin", rtol: float = 1e-8,
                 atol: float = 1e-12, max_steps: int = 100_000, num_threads: int = 1,
                 solver: SolverSettings | None = None):
        quiet_amici_simulations()
        self.model = model
        self.free_ids = list(model.get_free_parameter_ids())
        self.fixed_ids = list(model.get_fixed_parameter_ids())
        self.observable_ids = list(model.get_observable_ids())
        self.input_ids = list(input_ids)
        unknown = [p for p in self.input_ids if p not in self.free_ids]
        if unknown:
            hint = [p for p in unknown if p in self.fixed_ids]
            raise InputError(
                f"layer inputs {unknown} are not free parameters of the model (free: "
                f"{self.free_ids})" + (f"; {hint} are fixed (constants without sensitivities)"
                                      if hint else ""))
        if len(set(self.input_ids)) != len(self.input_ids):
            raise InputError(f"duplicate layer inputs in {self.input_ids}")
        self.input_index = np.array([self.free_ids.index(p) for p in self.input_ids], dtype=int)
        scales = [input_scale] * len(self.input_ids) if isinstance(input_scale, str) \
            else list(input_scale)
        if len(scales) != len(self.input_ids) or any(s not in _SCALES for s in scales):
            raise InputError(f"input_scale must be one of {list(_SCALES)} (or one per input), "
                             f"got {input_scale!r}")
        self.input_scale = scales
        pscale = [asd.ParameterScaling.none] * len(self.free_ids)
        for i, s in zip(self.input_index, scales):
            pscale[i] = _SCALES[s]
        self._pscale = asd.parameter_scaling_from_int_vector([int(s) for s in pscale])
        self.timepoints = np.asarray(timepoints, dtype=float).ravel()
        if self.timepoints.size == 0 or np.any(np.diff(self.timepoints) < 0):
            raise InputError("timepoints must be a non-empty, non-decreasing sequence")
        model.set_timepoints(self.timepoints)
        model.set_parameter_scale(asd.ParameterScaling.none)
        if conditions is None:
            conditions = ConditionTable(["default"], np.asarray(model.get_fixed_parameters()),
                                        np.asarray(model.get_free_parameters()))
        if conditions.fixed.shape[1] != len(self.fixed_ids) or \
                conditions.free.shape[1] != len(self.free_ids):
            raise InputError("condition table columns do not match the model's parameters")
        self.conditions = conditions
        self.num_threads = int(num_threads)
        self.solver = model.create_solver()
        apply_solver_settings(self.solver, solver or SolverSettings(
            rtol=rtol, atol=atol, max_steps=max_steps, steady_state_rtol=None))
        self._plain = self.solver.clone()
        self._plain.set_sensitivity_order(asd.SensitivityOrder.none)
        self._fsa = self.solver.clone()
        self._fsa.set_sensitivity_order(asd.SensitivityOrder.first)
        self._fsa.set_sensitivity_method(asd.SensitivityMethod.forward)
        self._asa = self.solver.clone()
        self._asa.set_sensitivity_order(asd.SensitivityOrder.first)
        self._asa.set_sensitivity_method(asd.SensitivityMethod.adjoint)
        self._pool: list[asd.ExpData] = []
        self.adjoint_supported = all(
            model.get_observable_scaling(i) == asd.ObservableScaling.lin
            for i in range(len(self.observable_ids)))

    @property
    def n_inputs(self) -> int:
        return len(self.input_ids)

    # ---- ExpData per batch element ----------------------------------------------------------
    def _scaled_inputs_to_row(self, theta: np.ndarray) -> np.ndarray:
        """Check the inputs (batch, n_in); returns them as a float64 array."""
        theta = np.asarray(theta, dtype=float)
        if theta.ndim != 2 or theta.shape[1] != self.n_inputs:
            raise InputError(f"layer input has shape {theta.shape}, expected (batch, "
                             f"{self.n_inputs}) for {self.input_ids}")
        return theta

    def condition_rows(self, batch: int, condition: Sequence[int] | np.ndarray | None
                       ) -> np.ndarray:
        """Condition-table row of each batch element, shape (batch,)."""
        n_c = len(self.conditions.ids)
        if condition is None:
            if n_c == 1:
                return np.zeros(batch, dtype=int)
            if n_c == batch:
                return np.arange(batch)
            raise InputError(f"batch of {batch} but {n_c} conditions: pass `condition` "
                             "(row index per batch element)")
        rows = np.asarray(condition, dtype=int).ravel()
        if rows.shape != (batch,) or rows.min(initial=0) < 0 or rows.max(initial=0) >= n_c:
            raise InputError(f"condition must hold {batch} indices in 0..{n_c - 1}")
        return rows

    def edatas(self, theta: np.ndarray, rows: np.ndarray, fixed: np.ndarray | None,
               sensitivities: bool) -> list[asd.ExpData]:
        """ExpData per batch element: condition row, fixed override, inputs (scaled)."""
        theta = self._scaled_inputs_to_row(theta)
        batch = len(theta)
        while len(self._pool) < batch:
            self._pool.append(asd.ExpData(self.model))
        free = self.conditions.free[rows].copy()
        free[:, self.input_index] = theta  # scaled values for the inputs, linear elsewhere
        fixed_rows = self.conditions.fixed[rows] if fixed is None else np.asarray(fixed, float)
        if fixed_rows.shape != (batch, len(self.fixed_ids)):
            raise InputError(f"fixed parameters have shape {fixed_rows.shape}, expected "
                             f"({batch}, {len(self.fixed_ids)}) for {self.fixed_ids}")
        plist = self.input_index.tolist() if sensitivities else []
        out = self._pool[:batch]
        for e, p, k in zip(out, free.tolist(), fixed_rows.tolist()):
            e.pscale = self._pscale
            e.free_parameters = p
            e.fixed_parameters = k
            e.plist = plist
        return out

    def _check(self, rdatas: list, theta: np.ndarray, rows: np.ndarray,
               fixed: np.ndarray | None) -> None:
        for i, r in enumerate(rdatas):
            if r.status != 0:
                name = self.conditions.ids[rows[i]]
                inputs = dict(zip(self.input_ids, np.round(theta[i], 6).tolist()))
                k = self.conditions.fixed[rows[i]] if fixed is None else np.asarray(fixed)[i]
                consts = dict(zip(self.fixed_ids, np.round(k, 6).tolist()))
                raise SimulationError(
                    f"integration failed (AMICI status {r.status}) for condition {name!r} "
                    f"(batch element {i}) with inputs {inputs} (scale {self.input_scale}) and "
                    f"fixed parameters {consts}")

    # ---- simulations ------------------------------------------------------------------------
    def _run(self, solver: asd.Solver, edatas: list[asd.ExpData]) -> list:
        """One AMICI call per element (one thread) or `run_simulations` with OpenMP threads.

        A loop reuses the solver's memory; `run_simulations` clones the solver per element,
        which for adjoints re-allocates the checkpoint buffers (binding-chain model, 64
        elements: 13 ms vs 3.3 ms per element at max_steps 1e4, 81 vs 3.7 ms at 1e5), and
        2 threads gave only 1.09x for plain simulations (benchmarks/results/torch_layer.json),
        so threads are opt-in.
        """
        if self.num_threads > 1:
            return asd.run_simulations(self.model, solver, edatas, failfast=False,
                                       num_threads=self.num_threads)
        return [asd.run_simulation(self.model, solver, e) for e in edatas]

    def simulate(self, theta: np.ndarray, rows: np.ndarray, fixed: np.ndarray | None = None,
                 sensitivities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Observables y (batch, n_t, n_y) and, if asked, sy (batch, n_t, n_in, n_y)."""
        edatas = self.edatas(theta, rows, fixed, sensitivities)
        rdatas = self._run(self._fsa if sensitivities else self._plain, edatas)
        self._check(rdatas, np.asarray(theta), rows, fixed)
        y = np.stack([r.y for r in rdatas])
        sy = np.stack([r.sy for r in rdatas]) if sensitivities else None
        return y, sy

    def vjp_adjoint(self, theta: np.ndarray, rows: np.ndarray, fixed: np.ndarray | None,
                    y: np.ndarray, g: np.ndarray) -> np.ndarray:
        """g^T dy/dtheta per element, shape (batch, n_in), by one adjoint solve per element.

        Args:
            y: Observables of the forward pass at `theta`, shape (batch, n_t, n_y).
            g: Output cotangent, same shape.
        """
        if not self.adjoint_supported:
            raise NotSupportedError("adjoint VJP needs untransformed (lin) observables; "
                                    "use sensitivity='forward'")
        edatas = self.edatas(theta, rows, fixed, True)
        ones = np.ones(y[0].size)
        for e, yi, gi in zip(edatas, y, g):
            e.set_measurements((yi + np.nan_to_num(gi)).ravel())
            e.set_noise_scales(ones)
        try:
            rdatas = self._run(self._asa, edatas)
        finally:
            for e in edatas:
                e.clear_observations()
        self._check(rdatas, np.asarray(theta), rows, fixed)
        return np.stack([r.sllh for r in rdatas])


class _Simulate(torch.autograd.Function):
    """theta (batch, n_in) -> y (batch, n_t, n_y); backward by FSA einsum or adjoint VJP."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, sim: AmiciBatchSimulator, rows: np.ndarray,
                fixed: np.ndarray | None, mode: str) -> torch.Tensor:
        x = theta.detach().cpu().numpy()
        need = ctx.needs_input_grad[0]
        y, sy = sim.simulate(x, rows, fixed, sensitivities=need and mode == "forward")
        ctx.sim, ctx.rows, ctx.fixed, ctx.mode, ctx.x = sim, rows, fixed, mode, x
        ctx.sy, ctx.y = sy, y if mode == "adjoint" else None
        return torch.from_numpy(y).to(theta.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):
        g_np = g.detach().cpu().numpy().astype(float)
        if ctx.mode == "forward":
            grad = np.einsum("btj,btpj->bp", g_np, ctx.sy)
        else:
            grad = ctx.sim.vjp_adjoint(ctx.x, ctx.rows, ctx.fixed, ctx.y, g_np)
        return torch.from_numpy(grad).to(g.device), None, None, None, None


class SimulatorLayer(nn.Module):
    """Differentiable model simulation: parameters (batch, n_in) -> observables (batch, n_t, n_y).

    The batch runs over conditions: element i uses row ``condition[i]`` of the layer's
    condition table (default: row i, or the single row), with the inputs replacing the
    condition's values of `input_ids` and an optional per-element override of the fixed
    parameters (`fixed_ids`, no gradient). Computation is float64 on the CPU.

    Build with `SimulatorLayer.from_problem`, `from_objective` or `from_sbml`
    (`sbmlhybrid.layers.build`), or directly from an `AmiciBatchSimulator`.

    Args:
        simulator: The batch simulator.
        sensitivity: "forward", "adjoint" or "auto" (adjoint for >= `ADJOINT_MIN_INPUTS`
            inputs when n_in > n_t * n_y and the observables allow it).
    """

    def __init__(self, simulator: AmiciBatchSimulator, sensitivity: str = "auto"):
        super().__init__()
        if sensitivity not in ("auto", "forward", "adjoint"):
            raise InputError(f"sensitivity must be auto, forward or adjoint, not {sensitivity!r}")
        self.simulator = simulator
        n_out = simulator.timepoints.size * len(simulator.observable_ids)
        if sensitivity == "auto":
            use_adjoint = (simulator.adjoint_supported and simulator.n_inputs >= ADJOINT_MIN_INPUTS
                           and simulator.n_inputs > n_out)
            sensitivity = "adjoint" if use_adjoint else "forward"
        if sensitivity == "adjoint" and not simulator.adjoint_supported:
            raise NotSupportedError("adjoint backward needs untransformed (lin) observables")
        self.sensitivity = sensitivity

    # convenient read-only views
    @property
    def input_ids(self) -> list[str]:
        return self.simulator.input_ids

    @property
    def fixed_ids(self) -> list[str]:
        return self.simulator.fixed_ids

    @property
    def observable_ids(self) -> list[str]:
        return self.simulator.observable_ids

    @property
    def timepoints(self) -> np.ndarray:
        return self.simulator.timepoints

    @property
    def condition_ids(self) -> list[str]:
        return self.simulator.conditions.ids

    def default_inputs(self, condition: Sequence[int] | None = None) -> torch.Tensor:
        """Condition-table values of the inputs on input scale, shape (n_rows, n_in)."""
        rows = np.arange(len(self.condition_ids)) if condition is None else np.asarray(condition)
        lin = self.simulator.conditions.free[rows][:, self.simulator.input_index]
        out = lin.copy()
        for j, s in enumerate(self.simulator.input_scale):
            if s == "log":
                out[:, j] = np.log(lin[:, j])
            elif s == "log10":
                out[:, j] = np.log10(lin[:, j])
        return torch.from_numpy(out)

    def forward(self, theta: torch.Tensor, condition: Sequence[int] | torch.Tensor | None = None,
                fixed: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Simulate.

        Args:
            theta: Inputs on their scale, shape (batch, n_in) (or (n_in,) for one element).
            condition: Condition-table row per element, shape (batch,).
            fixed: Fixed parameters per element, shape (batch, n_fixed) in `fixed_ids` order.

        Returns:
            Observables, shape (batch, n_t, n_y), float64 (n_y in `observable_ids` order).

        Raises:
            SimulationError: an integration failed (names the condition and the parameters).
        """
        squeeze = theta.dim() == 1
        theta = theta.reshape(1, -1) if squeeze else theta
        theta = theta.to(torch.float64)
        rows = self.simulator.condition_rows(theta.shape[0], None if condition is None else
                                             np.asarray(torch.as_tensor(condition).cpu()))
        if isinstance(fixed, torch.Tensor):
            fixed = fixed.detach().cpu().numpy().astype(float)
        y = _Simulate.apply(theta, self.simulator, rows, fixed, self.sensitivity)
        return y[0] if squeeze else y

    def extra_repr(self) -> str:
        return (f"inputs={self.input_ids}, observables={self.observable_ids}, "
                f"n_t={self.timepoints.size}, sensitivity={self.sensitivity!r}")
