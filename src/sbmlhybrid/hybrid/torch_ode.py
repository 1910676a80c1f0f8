"""`TorchODE`: a PEtab problem's rate-rule SBML model simulated in torch (hand-written).

What this is for: parts of a hybrid model that cannot be written as SBML math — above all the
flux-allocation layer with *active* bounds, a quadratic program solved on every right-hand
side evaluation — need the model in torch. The rate rules and assignment rules are parsed with
PEtab's sympy parser and turned into torch functions with ``sympy.lambdify(modules="torch")``
(one function per stage, common subexpressions shared); the rest is hand-written because no
library does it: PEtab parameter/condition tables to per-condition parameter tensors, a
batched fixed-step RK4 (all conditions integrate on one time grid, so the flux layer sees one
batch per stage; the step count and backprop memory are known in advance), and the Gaussian
negative log-likelihood of the measurement table. Gradients are torch autograd through the
RK4 steps (discretize-then-differentiate); the flux layer contributes exact implicit
gradients.

Scope (anything else raises `NotSupportedError` naming the entity): models whose states are
rate-rule variables (no reactions, events or algebraic rules); observables without
placeholders and with ``lin`` transformation and normal noise; no pre-equilibration.
For everything else use the compiled AMICI path (`sbmlhybrid.objective`), which this class
reproduces to the RK4 step error (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import libsbml
import numpy as np
import petab.v1 as petab
import sympy as sp
import torch
from torch import Tensor, nn

from sbmlhybrid.errors import InputError, NotSupportedError
from sbmlhybrid.hybrid._torch_protocol import DTYPE, ProtocolMethods
from sbmlhybrid.hybrid.flux_coupling import FluxCoupling
from sbmlhybrid.hybrid.sbml_sympy import (
    constant_values,
    resolve_rules,
    sympify_formula,
    sympify_math,
)
from sbmlhybrid.problem import Problem

_FAILED_STEP_VALUE = 1e20  # objective reported for a line-search trial whose simulation failed


def unscale(x: Tensor, scale: str) -> Tensor:
    """A PEtab-scaled value (``lin``/``log``/``log10``) on linear scale, differentiably."""
    if scale == petab.LOG10:
        return 10.0 ** x
    if scale == petab.LOG:
        return torch.exp(x)
    return x


def _check_scope(model: libsbml.Model, pp: petab.Problem) -> None:
    if model.getNumReactions():
        raise NotSupportedError(f"reaction {model.getReaction(0).getId()!r}: TorchODE handles "
                                "rate-rule models only")
    if model.getNumEvents():
        raise NotSupportedError(f"event {model.getEvent(0).getId() or 0!r}: not supported")
    for i in range(model.getNumRules()):
        if model.getRule(i).isAlgebraic():
            raise NotSupportedError("algebraic rules are not supported")
    mdf = pp.measurement_df
    if petab.PREEQUILIBRATION_CONDITION_ID in mdf and \
            mdf[petab.PREEQUILIBRATION_CONDITION_ID].notna().any():
        raise NotSupportedError("pre-equilibration is not supported by TorchODE")
    for col in (petab.OBSERVABLE_PARAMETERS, petab.NOISE_PARAMETERS):
        if col in mdf and mdf[col].notna().any():
            raise NotSupportedError(f"measurement column {col} is not supported by TorchODE")
    for oid, row in pp.observable_df.iterrows():
        if row.get(petab.OBSERVABLE_TRANSFORMATION, petab.LIN) not in (petab.LIN, None) or \
                row.get(petab.NOISE_DISTRIBUTION, petab.NORMAL) not in (petab.NORMAL, None):
            raise NotSupportedError(f"observable {oid!r}: only lin/normal is supported")


class TorchODE(ProtocolMethods, nn.Module):
    """Batched torch simulation and likelihood of a PEtab problem with a rate-rule model.

    An object of the objective protocol (`sbmlhybrid.objective.Objective`; methods in
    `sbmlhybrid.hybrid._torch_protocol`): ``x_free_ids``, ``x_nominal_free``, ``conditions``
    (simulation condition ids), ``evaluate(x, conditions=...)`` (``nll`` and its autograd
    gradient), ``simulate(x)`` (PEtab simulation table) and ``pypesto_problem``, so `fit`,
    `profile`, `sample` and `sbmlhybrid.layers.ObjectiveLayer` take it.

    Args:
        problem: The PEtab problem (its measurement table defines conditions and times).
        flux_coupling: Optional: the coupled rates are computed by their rate laws, passed
            through ``flux_coupling.layer`` (bounds enforced) and the consistent values feed
            the rate rules — the torch counterpart of `couple_flux_allocation`.
        max_step: Largest RK4 step (model time units); every measurement time is hit exactly.

    Shapes: ``x_free`` (n_free,) on PEtab scale in ``x_free_ids`` order (the order of
    `sbmlhybrid.objective` for the same problem); states (n_conditions, n_states).
    """

    def __init__(self, problem: Problem, flux_coupling: FluxCoupling | None = None,
                 max_step: float = 0.02) -> None:
        super().__init__()
        pp = problem.petab_problem
        model = pp.sbml_model
        _check_scope(model, pp)
        self.coupling = flux_coupling
        self.max_step = float(max_step)
        self.state_ids = [model.getRule(i).getVariable() for i in range(model.getNumRules())
                          if model.getRule(i).isRate()]
        rules = {model.getRule(i).getVariable(): sympify_math(model.getRule(i).getMath(),
                                                              model.getRule(i).getVariable())
                 for i in range(model.getNumRules()) if model.getRule(i).isAssignment()}
        values = constant_values(model, rules, self.state_ids)
        self.param_ids = list(values)
        self.register_buffer("_defaults", torch.tensor([values[p] for p in self.param_ids],
                                                        dtype=DTYPE))
        intercept = flux_coupling.symbols if flux_coupling is not None else []
        if flux_coupling is not None:
            self.register_buffer("_factors", torch.as_tensor(flux_coupling.factors,
                                                             dtype=DTYPE))
        missing = [s for s in intercept if s not in rules]
        if missing:
            raise InputError(f"coupled rates {missing} are not assignment-rule variables")
        kinetic = resolve_rules(rules)

        def stage2(expr: sp.Expr) -> sp.Expr:  # coupled rates stay symbols (consistent values)
            return expr.xreplace({sp.Symbol(v): e for v, e in kinetic.items()
                                  if v not in intercept})

        self._compile_dynamics(model, kinetic, intercept, stage2)
        self._compile_observables(pp, intercept, stage2)
        self._tables(pp)
        self._init_protocol(problem)

    def _symbols(self, intercept: Sequence[str]) -> tuple[list, list, list, sp.Symbol]:
        """Sympy symbols of states, constants, coupled rates, and time."""
        return ([sp.Symbol(s) for s in self.state_ids], [sp.Symbol(p) for p in self.param_ids],
                [sp.Symbol(s) for s in intercept], sp.Symbol("time"))

    def _compile_dynamics(self, model: libsbml.Model, kinetic: dict[str, sp.Expr],
                          intercept: Sequence[str], stage2: Callable[[sp.Expr], sp.Expr]
                          ) -> None:
        """Torch functions of the kinetic (coupled) rates, the right-hand side and the
        initial states."""
        x_sym, p_sym, q_sym, t_sym = self._symbols(intercept)
        rates = [stage2(sympify_math(model.getRule(i).getMath(),
                                     model.getRule(i).getVariable()))
                 for i in range(model.getNumRules()) if model.getRule(i).isRate()]
        args = [*x_sym, *p_sym, t_sym]
        self._kinetic = sp.lambdify(args, [kinetic[s] for s in intercept], "torch", cse=True)
        self._rhs = sp.lambdify([*args, *q_sym], rates, "torch", cse=True)
        init = []
        for sid in self.state_ids:
            ia = model.getInitialAssignment(sid)
            if ia is not None:
                init.append(stage2(sympify_math(ia.getMath(), f"initial value of {sid}")))
            else:
                e = model.getElementBySId(sid)
                init.append(sp.Float(e.getInitialConcentration() if isinstance(
                    e, libsbml.Species) else e.getValue()))
        self._init = sp.lambdify([*p_sym, t_sym], init, "torch", cse=True)

    def _compile_observables(self, pp: petab.Problem, intercept: Sequence[str],
                             stage2: Callable[[sp.Expr], sp.Expr]) -> None:
        """Torch functions of the observables and of their noise formulas."""
        x_sym, p_sym, q_sym, t_sym = self._symbols(intercept)
        obs = pp.observable_df
        self.observable_ids = list(obs.index)
        formulas = [stage2(sympify_formula(str(obs.loc[o, petab.OBSERVABLE_FORMULA]), o))
                    for o in self.observable_ids]
        self._obs = sp.lambdify([*x_sym, *p_sym, t_sym, *q_sym], formulas, "torch", cse=True)
        # the allocation at output times is only needed when an observable reads a coupled rate
        self._obs_reads_rates = any(str(s) in intercept for f in formulas
                                    for s in f.free_symbols)
        noise = [stage2(sympify_formula(str(obs.loc[o, petab.NOISE_FORMULA]), f"noise of {o}"))
                 for o in self.observable_ids]
        self._sigma = sp.lambdify(p_sym, noise, "torch")

    def _tables(self, pp: petab.Problem) -> None:
        pdf = pp.parameter_df
        self.x_free_ids = [p for p in pdf.index if pdf.loc[p, petab.ESTIMATE] == 1]
        self.scales = [pdf.loc[p, petab.PARAMETER_SCALE] for p in self.x_free_ids]
        self.bounds = np.array([[pdf.loc[p, petab.LOWER_BOUND], pdf.loc[p, petab.UPPER_BOUND]]
                                for p in self.x_free_ids], dtype=float)
        for i, s in enumerate(self.scales):
            self.bounds[i] = [petab.scale(b, s) for b in self.bounds[i]]
        self.x_nominal_free = np.array([petab.scale(pdf.loc[p, petab.NOMINAL_VALUE], s)
                                        for p, s in zip(self.x_free_ids, self.scales)])
        self._fixed = {p: float(pdf.loc[p, petab.NOMINAL_VALUE]) for p in pdf.index
                       if pdf.loc[p, petab.ESTIMATE] != 1}
        mdf = pp.measurement_df
        self.measurements = mdf.reset_index(drop=True)  # rows of `measurement_simulations`
        self.condition_ids = list(dict.fromkeys(mdf[petab.SIMULATION_CONDITION_ID]))
        cdf = pp.condition_df
        self._overrides: list[dict[str, float | str]] = []
        for cid in self.condition_ids:
            row = {} if cdf is None else cdf.loc[cid].drop(labels=[petab.CONDITION_NAME],
                                                           errors="ignore").to_dict()
            for target in row:
                if target not in self.param_ids:
                    raise NotSupportedError(f"condition {cid!r}: column {target!r} is not a "
                                            "constant model parameter")
            self._overrides.append({k: v for k, v in row.items()
                                    if not (isinstance(v, float) and math.isnan(v))})
        self.times = np.unique(mdf[petab.TIME].to_numpy(float))
        if self.times[0] < 0:
            raise InputError("negative measurement time")
        ci = {c: i for i, c in enumerate(self.condition_ids)}
        oi = {o: i for i, o in enumerate(self.observable_ids)}
        self._m_cond = torch.tensor([ci[c] for c in mdf[petab.SIMULATION_CONDITION_ID]])
        self._m_time = torch.tensor(np.searchsorted(self.times, mdf[petab.TIME].to_numpy(float)))
        self._m_obs = torch.tensor([oi[o] for o in mdf[petab.OBSERVABLE_ID]])
        self._m_y = torch.tensor(mdf[petab.MEASUREMENT].to_numpy(float), dtype=DTYPE)

    def parameters_of(self, x_free: Tensor) -> Tensor:
        """(n_conditions, n_params) model parameter values for ``x_free`` (PEtab scale)."""
        x = torch.as_tensor(x_free, dtype=DTYPE)
        value: dict[str, Tensor] = {}
        for i, (pid, s) in enumerate(zip(self.x_free_ids, self.scales)):
            value[pid] = unscale(x[i], s)
        base = []
        for j, pid in enumerate(self.param_ids):
            if pid in value:
                base.append(value[pid])
            elif pid in self._fixed:
                base.append(torch.tensor(self._fixed[pid], dtype=DTYPE))
            else:
                base.append(self._defaults[j])
        rows = []
        for over in self._overrides:
            row = list(base)
            for target, v in over.items():
                j = self.param_ids.index(target)
                row[j] = torch.tensor(float(v), dtype=DTYPE) if not isinstance(v, str) else (
                    base[self.param_ids.index(v)])
            rows.append(torch.stack(row))
        return torch.stack(rows)

    @staticmethod
    def _stack(values: Sequence[Tensor | float], like: Tensor) -> Tensor:
        return torch.stack([torch.as_tensor(v, dtype=DTYPE).expand(like.shape[0])
                            if not isinstance(v, Tensor) or v.ndim == 0 else v
                            for v in values], dim=-1)

    def coupled_rates(self, x: Tensor, p: Tensor, t: float | Tensor
                      ) -> tuple[Tensor, Tensor, Tensor] | None:
        """Kinetic rates, fluxes and consistent rates at states ``x`` (batch, n_states).

        Returns ``(q_kinetic, v, q_consistent)`` with shapes (batch, n_measured),
        (batch, n_fluxes), (batch, n_measured), model units for q; None without coupling.
        """
        if self.coupling is None:
            return None
        args = [*x.unbind(-1), *p.unbind(-1), t]
        q = self._stack(self._kinetic(*args), x)
        v, res = self.coupling.layer(q * self._factors)
        return q, v, (q * self._factors + res) / self._factors

    def rhs(self, t: float | Tensor, x: Tensor, p: Tensor) -> Tensor:
        """d states / dt, (batch, n_states)."""
        args = [*x.unbind(-1), *p.unbind(-1), t]
        coupled = self.coupled_rates(x, p, t)
        q = [] if coupled is None else list(coupled[2].unbind(-1))
        return self._stack(self._rhs(*args, *q), x)

    def states(self, x_free: Tensor) -> Tensor:
        """States at ``self.times``: (n_times, n_conditions, n_states)."""
        return self._states(self.parameters_of(x_free))

    def _states(self, p: Tensor) -> Tensor:
        x = self._stack(self._init(*p.unbind(-1), 0.0), p)
        out, t = [], 0.0
        for t_next in self.times:
            n = max(1, math.ceil((t_next - t) / self.max_step - 1e-9)) if t_next > t else 0
            h = (t_next - t) / n if n else 0.0
            for _ in range(n):  # classic RK4
                k1 = self.rhs(t, x, p)
                k2 = self.rhs(t + h / 2, x + h / 2 * k1, p)
                k3 = self.rhs(t + h / 2, x + h / 2 * k2, p)
                k4 = self.rhs(t + h, x + h * k3, p)
                x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
                t += h
            t = float(t_next)
            out.append(x)
        return torch.stack(out)

    def coupled_trajectories(self, x_free: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The allocation along the simulated trajectories, at ``self.times``.

        Returns ``(q_kinetic, v, q_consistent)``: (n_times, n_conditions, n_measured),
        (n_times, n_conditions, n_fluxes), (n_times, n_conditions, n_measured).
        """
        if self.coupling is None:
            raise InputError("this TorchODE has no flux coupling")
        p = self.parameters_of(x_free)
        states = self._states(p)
        rates = [self.coupled_rates(states[k], p, float(t)) for k, t in enumerate(self.times)]
        return tuple(torch.stack([r[i] for r in rates]) for i in range(3))  # type: ignore

    def _observables(self, p: Tensor) -> Tensor:
        states = self._states(p)
        ys = []
        for k, t in enumerate(self.times):
            q: list[Tensor | float] = []
            if self.coupling is not None:  # unread arguments get placeholders
                q = list(self.coupled_rates(states[k], p, float(t))[2].unbind(-1)) \
                    if self._obs_reads_rates else [0.0] * len(self.coupling.symbols)
            ys.append(self._stack(self._obs(*states[k].unbind(-1), *p.unbind(-1), float(t), *q),
                                  p))
        return torch.stack(ys)

    def observables(self, x_free: Tensor) -> Tensor:
        """Observables at ``self.times``: (n_times, n_conditions, n_observables)."""
        return self._observables(self.parameters_of(x_free))

    def _subset(self, x_free: Tensor, conditions: Sequence[int] | None
                ) -> tuple[Tensor, Tensor, Tensor]:
        """Parameters of the conditions (rows in `conditions` order), the measurement rows
        of those conditions (mask over the table) and each row's position in the subset."""
        p = self.parameters_of(x_free)
        if conditions is None:
            return p, torch.ones(len(self._m_y), dtype=torch.bool), self._m_cond
        idx = torch.as_tensor(list(conditions), dtype=torch.long)
        position = torch.full((len(self.condition_ids),), -1, dtype=torch.long)
        position[idx] = torch.arange(len(idx))
        mask = position[self._m_cond] >= 0
        return p[idx], mask, position[self._m_cond[mask]]

    def measurement_simulations(self, x_free: Tensor, conditions: Sequence[int] | None = None
                                ) -> Tensor:
        """The simulated value of every measurement-table row (of the conditions with these
        indices; default all), shape (n_rows,), in table order."""
        p, mask, cond = self._subset(x_free, conditions)
        return self._observables(p)[self._m_time[mask], cond, self._m_obs[mask]]

    def nll(self, x_free: Tensor, conditions: Sequence[int] | None = None) -> Tensor:
        """Negative log-likelihood of the measurement table (of the conditions with these
        indices; default all): the same value as AMICI's -llh up to the RK4 error."""
        p, mask, cond = self._subset(x_free, conditions)
        obs = self._m_obs[mask]
        y = self._observables(p)[self._m_time[mask], cond, obs]
        sigma = self._stack(self._sigma(*p.unbind(-1)), p)[cond, obs]
        r = (y - self._m_y[mask]) / sigma
        return 0.5 * torch.sum(r**2 + torch.log(2 * math.pi * sigma**2))


def train(ode: TorchODE, x0: Sequence[float], max_iter: int = 50,
          callback: Callable[[int, float], None] | None = None) -> tuple[np.ndarray, list[float]]:
    """Minimize ``ode.nll`` with L-BFGS-B (scipy) on torch gradients within the PEtab bounds.

    scipy's L-BFGS-B rather than ``torch.optim.LBFGS``: it handles the bounds itself and its
    line search backtracks reliably; torch's optimizer with projection stalled on the tests'
    toy problem. A trial point whose fixed-step simulation blows up (the flux layer refuses
    infinite rates) is reported as a failed step (a huge value), so the search backtracks.

    Returns the best ``x_free`` found and the objective after each iteration.
    """
    from scipy.optimize import minimize

    best = {"f": math.inf, "x": np.asarray(x0, float).copy()}

    def fun(xv: np.ndarray) -> tuple[float, np.ndarray]:
        x = torch.tensor(xv, dtype=DTYPE, requires_grad=True)
        try:
            loss = ode.nll(x)
            if not bool(torch.isfinite(loss)):
                raise FloatingPointError("non-finite objective")
            loss.backward()
        except (InputError, FloatingPointError):
            return _FAILED_STEP_VALUE, np.zeros_like(xv)
        f = float(loss.detach())
        if f < best["f"]:
            best.update(f=f, x=xv.copy())
        return f, x.grad.numpy().copy()

    trace: list[float] = []

    def after_iteration(xk: np.ndarray) -> None:
        trace.append(best["f"])
        if callback is not None:
            callback(len(trace) - 1, best["f"])

    minimize(fun, np.clip(best["x"], *ode.bounds.T), jac=True, method="L-BFGS-B",
             bounds=[tuple(b) for b in ode.bounds], callback=after_iteration,
             options={"maxiter": max_iter})
    return best["x"], trace
