"""Likelihood and gradient of an imported PEtab SciML problem (`SciMLObjective`).

The free vector is ``[estimated mechanistic parameters (PEtab scale), estimated network
parameter entries (per network, per ``layer.array`` in module order, row-major)]``.
One evaluation: set network parameters (torch leaves), run the static networks per
experiment (`sbmlhybrid.sciml.importer`; inputs: numbers, arrays, expressions of parameters
evaluated in torch), assemble the compiled v1 problem's parameter vector (mechanistic
values, unrolled weights, network outputs), let the `ModelObjective` compute the negative
log-likelihood and its AMICI gradient, and pull the gradient back: unrolled weights map
one-to-one, network outputs through torch autograd (hand-written chain rule; AMICI has no
vector-Jacobian API).

`SciMLObjective` implements the objective protocol (`sbmlhybrid.objective.Objective`):
``x_free_ids``, ``x_nominal_free``, ``evaluate(x, conditions=experiment ids)``, ``simulate``
and a ``pypesto_problem`` (`sbmlhybrid.sciml.fitting`) with the priors of the parameter table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import petab.v1 as petab
import torch
from torch.func import functional_call

from sbmlhybrid.errors import InputError
from sbmlhybrid.hybrid.network import weight_ids
from sbmlhybrid.hybrid.objective import objective_of
from sbmlhybrid.hybrid.torch_ode import unscale
from sbmlhybrid.objective import Evaluation, free_vector, lookup_indices
from sbmlhybrid.problem.v2 import DEFAULT_CONDITION, simulation_table_to_v2
from sbmlhybrid.sciml.fitting import prior_term, sciml_pypesto_problem
from sbmlhybrid.sciml.inputs import network_arguments
from sbmlhybrid.sciml.sciml_problem import SciMLProblem

__all__ = ["SciMLEvaluation", "SciMLObjective", "unrolled_weight_keys"]


@dataclass
class SciMLEvaluation(Evaluation):
    """One evaluation (an `Evaluation` with the gradient also in the problem's layout).

    Attributes:
        fval: Negative log-likelihood (priors excluded).
        grad: Gradient w.r.t. the free vector (`SciMLObjective.x_free_ids`), or None.
        mech_grad: Parameter id -> d fval / d value (PEtab scale) for every mechanistic
            parameter, estimated or not.
        net_grad: Network id -> {"layer.array": gradient array (PyTorch layout, every entry,
            frozen ones included)}.
    """

    mech_grad: dict[str, float] = field(default_factory=dict)
    net_grad: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def unrolled_weight_keys(term: Any, layer_of: dict[int, str]
                         ) -> list[tuple[str, str, tuple[int, ...]]]:
    """(v1 weight parameter id, SciML ``layer.array`` key, index) of an unrolled network."""
    out = []
    for pid, key, idx in weight_ids(term.name, term.layers):
        pos, arr = key.split(".")
        out.append((pid, f"{layer_of[int(pos)]}.{arr}", idx))
    return out


class SciMLObjective:
    """Negative log-likelihood of a `SciMLProblem` over mechanistic + network parameters.

    Args:
        problem: From `sbmlhybrid.load_problem` on a PEtab SciML YAML.
        sensitivity_method: "forward", "adjoint" or None (the problem's setting).
        compiled: The compiled model of ``problem.problem`` (compiled or taken from the
            cache if omitted).

    Attributes:
        problem: The SciML problem.
        model: The compiled v1 problem's `ModelObjective`.
        conditions: Experiment id of each condition the model simulates ("" for
            measurements without an experiment); `evaluate(conditions=...)` takes these
            ids or indices.
        pypesto_problem: pyPESTO problem over the free vector (likelihood and priors).
    """

    def __init__(self, problem: SciMLProblem, sensitivity_method: str | None = None,
                 compiled: Any = None):
        self.problem = problem
        self.model = objective_of(problem.problem, compiled, sensitivity_method)
        mech = problem.mech
        self.scales = {p: str(mech.loc[p, petab.PARAMETER_SCALE]) for p in mech.index}
        self.mech_nominal = {p: float(petab.scale(float(mech.loc[p, petab.NOMINAL_VALUE]),
                                                  self.scales[p])) for p in mech.index}
        self.mech_ids = [p for p in mech.index if int(mech.loc[p, petab.ESTIMATE]) == 1]
        self.net_nominal = {n: {k: p.detach().numpy().copy() for k, p in net.named_parameters()}
                            for n, net in problem.networks.items()}
        self.net_ids: list[tuple[str, str, tuple[int, ...]]] = []
        for n, arrays in self.net_nominal.items():
            for key, arr in arrays.items():
                mask = problem.estimate[n][key]
                self.net_ids += [(n, key, tuple(int(i) for i in idx))
                                 for idx in zip(*np.nonzero(mask))] if arr.ndim else \
                    ([(n, key, ())] if mask else [])
        self.weight_map = {pid: (n, key, idx) for n, (term, layer_of) in problem.unrolled.items()
                           for pid, key, idx in unrolled_weight_keys(term, layer_of)}
        self.out_map = {pid: (pre.nn_id, eid, j) for pre in problem.pre
                        for eid, outs in pre.out_params.items() for j, pid in outs.items()}
        unknown = [p for p in self.model.x_free_ids if p not in self.mech_nominal
                   and p not in self.weight_map and p not in self.out_map]
        if unknown:
            raise InputError(f"compiled problem has parameters without a source: {unknown}")
        experiment_of = {(pre or "", sim): e for e, (pre, sim) in problem.experiments.items()}
        experiment_of[("", DEFAULT_CONDITION)] = ""
        self.conditions = [experiment_of.get(c, c[1]) for c in self.model.conditions]
        self.prior = prior_term(self)
        self.pypesto_problem = sciml_pypesto_problem(self)

    # ---- the free vector ------------------------------------------------------------------
    @property
    def x_free_ids(self) -> list[str]:
        """Free vector ids: mechanistic ids, then ``net.layer.array[i,j]``."""
        return self.mech_ids + [f"{n}.{k}[{','.join(map(str, i))}]" for n, k, i in self.net_ids]

    @property
    def x_nominal_free(self) -> np.ndarray:
        """Nominal free vector, shape (n_free,)."""
        return np.array([self.mech_nominal[p] for p in self.mech_ids]
                        + [self.net_nominal[n][k][i] for n, k, i in self.net_ids], dtype=float)

    @property
    def x_scales(self) -> list[str]:
        """Scale of each free parameter (network entries: "lin")."""
        return [self.scales[p] for p in self.mech_ids] + ["lin"] * len(self.net_ids)

    @property
    def compiled(self) -> Any:
        """The compiled model (`sbmlhybrid.build.CompiledModel`)."""
        return self.model.compiled

    @property
    def n_threads(self) -> int:
        """AMICI threads simulating the conditions of an evaluation."""
        return self.model.n_threads

    @n_threads.setter
    def n_threads(self, value: int) -> None:
        self.model.n_threads = value

    def _x(self, x: Sequence[float] | None) -> np.ndarray:
        return free_vector(x, self.x_nominal_free, self.x_free_ids)

    def condition_indices(self, conditions: Sequence[int | str] | None) -> list[int] | None:
        """Model condition indices for experiment ids or indices (None: all)."""
        if conditions is None:
            return None
        return lookup_indices(conditions, self.conditions, "experiment")

    # ---- torch side -----------------------------------------------------------------------
    def _leaves(self, x: np.ndarray, grad: bool
                ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
        mech = dict(self.mech_nominal)
        mech.update(zip(self.mech_ids, map(float, x[:len(self.mech_ids)])))
        arrays = {n: {k: v.copy() for k, v in d.items()} for n, d in self.net_nominal.items()}
        for (n, k, i), v in zip(self.net_ids, x[len(self.mech_ids):]):
            arrays[n][k][i] = v
        leaves = {p: torch.tensor(v, dtype=torch.float64, requires_grad=grad)
                  for p, v in mech.items()}
        params = {n: {k: torch.tensor(v, dtype=torch.float64, requires_grad=grad)
                      for k, v in d.items()} for n, d in arrays.items()}
        return leaves, params

    def _pre_outputs(self, leaves: dict[str, torch.Tensor],
                     params: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """v1 parameter id -> network output value (0-d tensor)."""
        out: dict[str, torch.Tensor] = {}
        values = {p: unscale(t, self.scales[p]) for p, t in leaves.items()}
        for pre in self.problem.pre:
            net = self.problem.networks[pre.nn_id]
            for eid, outs in pre.out_params.items():
                args = network_arguments(pre.inputs[eid], values)
                y = functional_call(net, params[pre.nn_id], args)
                y = (y[0] if isinstance(y, tuple) else y).reshape(-1)
                for j, pid in outs.items():
                    out[pid] = y[j]
        return out

    def _v1_vector(self, leaves: dict[str, torch.Tensor],
                   params: dict[str, dict[str, torch.Tensor]],
                   outputs: dict[str, torch.Tensor]) -> np.ndarray:
        x = []
        for pid in self.model.x_free_ids:
            if pid in self.weight_map:
                n, k, i = self.weight_map[pid]
                x.append(float(params[n][k][i].detach()))
            elif pid in self.out_map:
                x.append(float(outputs[pid].detach()))
            else:
                x.append(float(leaves[pid].detach()))
        return np.asarray(x)

    def v1_parameters(self, x: Sequence[float] | None = None) -> np.ndarray:
        """The compiled problem's free vector (`ModelObjective.x_free_ids`) for `x`."""
        xa = self._x(x)
        with torch.no_grad():
            leaves, params = self._leaves(xa, False)
            return self._v1_vector(leaves, params, self._pre_outputs(leaves, params))

    # ---- evaluation -----------------------------------------------------------------------
    def evaluate(self, x_free: Sequence[float] | None = None,
                 conditions: Sequence[int | str] | None = None, gradient: bool = True,
                 raise_on_failure: bool = True) -> SciMLEvaluation:
        """Negative log-likelihood (and gradient) at `x_free` (default: nominal), over all
        experiments or a subset (experiment ids or indices into `conditions`; exact: the
        values and gradients of single experiments sum to the full ones)."""
        xa = self._x(x_free)
        idx = self.condition_indices(conditions)
        # the network gradients come from torch autograd, also when a caller (a torch
        # layer's forward) runs with grad mode off
        with torch.enable_grad():
            leaves, params = self._leaves(xa, gradient)
            outputs = self._pre_outputs(leaves, params)
        ev = self.model.evaluate(self._v1_vector(leaves, params, outputs), idx,
                                 gradient=gradient, raise_on_failure=raise_on_failure)
        if not gradient:
            return SciMLEvaluation(ev.fval, None)
        if not np.isfinite(ev.fval):
            return SciMLEvaluation(ev.fval, np.full(len(xa), np.nan))
        with torch.enable_grad():
            return self._pull_back(ev, leaves, params, outputs)

    def _pull_back(self, ev: Evaluation, leaves: dict[str, torch.Tensor],
                   params: dict[str, dict[str, torch.Tensor]],
                   outputs: dict[str, torch.Tensor]) -> SciMLEvaluation:
        """The compiled problem's gradient in the free vector's and the problem's layout."""
        g1 = dict(zip(self.model.x_free_ids, ev.grad))  # type: ignore[arg-type]
        net_grad = {n: {k: np.zeros_like(v) for k, v in d.items()}
                    for n, d in self.net_nominal.items()}
        mech_grad = {p: g1.get(p, 0.0) for p in self.mech_nominal}
        for pid, (n, k, i) in self.weight_map.items():
            net_grad[n][k][i] += g1[pid]
        pulled = [g1[p] * y for p, y in outputs.items() if y.requires_grad]
        if pulled:
            torch.stack(pulled).sum().backward()
            for p, leaf in leaves.items():
                if leaf.grad is not None:
                    mech_grad[p] += float(leaf.grad)
            for n, d in params.items():
                for k, t in d.items():
                    if t.grad is not None:
                        net_grad[n][k] += t.grad.numpy()
        grad = np.array([mech_grad[p] for p in self.mech_ids]
                        + [net_grad[n][k][i] for n, k, i in self.net_ids], dtype=float)
        return SciMLEvaluation(ev.fval, grad, mech_grad=mech_grad, net_grad=net_grad)

    def __call__(self, x_free: Sequence[float]) -> tuple[float, np.ndarray]:
        """(fval, grad) at `x_free`."""
        ev = self.evaluate(x_free)
        return ev.fval, ev.grad  # type: ignore[return-value]

    def llh(self, x_free: Sequence[float] | None = None) -> float:
        """Log-likelihood (priors excluded) at `x_free` (default: nominal)."""
        return -self.evaluate(x_free, gradient=False).fval

    def log_prior(self, x_free: Sequence[float] | None = None) -> float:
        """Log-prior density at `x_free` (0 for a problem without priors)."""
        return 0.0 if self.prior is None else -float(self.prior(self._x(x_free)))

    def simulate(self, x_free: Sequence[float] | None = None,
                 conditions: Sequence[int | str] | None = None) -> pd.DataFrame:
        """Simulation table with ``experimentId`` (PEtab v2 / SciML layout)."""
        idx = self.condition_indices(conditions)
        table = self.model.simulate(self.v1_parameters(x_free), idx)
        return simulation_table_to_v2(table, self.problem.experiments)
