"""The two gray-box UDEs in plain torch, integrated with torchdiffeq, for `ude_speed.py`.

Reused: torchdiffeq (`odeint` with backpropagation through the solver, `odeint_adjoint` with
its default or its seminorm adjoint norm; solvers dopri5, dopri8, bosh3, and the fixed-grid
``implicit_adams``). Hand-written: the right-hand sides (the same equations as the SBML
models: `petab_problems/cho_fedbatch/model.py`, `petab_problems/stiff_binding`), batched over
conditions, and the NLL.

Parameters are transformed once per call: ``10**x`` (log10-scaled kinetic constants) and the
weight matrices are computed from the free vector before integrating and handed to the
right-hand side as leaf tensors (the adjoint parameters); their gradients are chained back to
``x`` by one autograd call afterwards. No right-hand-side evaluation touches ``x``.
"""

from __future__ import annotations

import math

import numpy as np
import petab.v1 as petab
import torch
from torch import nn


class GrayBoxUDE(nn.Module):
    """Base: parameters of a hybrid problem as torch leaves, the network, RHS counters.

    Args:
        up: `benchmarks._ude_problems.UDEProblem`.
        conditions: Condition ids, the batch order.
    """

    def __init__(self, up, conditions: list[str]):
        super().__init__()
        pp = up.hp.petab_problem
        self.x_ids = list(up.x_ids)
        pdf = pp.parameter_df
        self.scales = [pdf.loc[p, petab.PARAMETER_SCALE] for p in self.x_ids]
        self.fixed = {p: float(pdf.loc[p, petab.NOMINAL_VALUE]) for p in pdf.index
                      if p not in self.x_ids}
        term = up.hp.hybrid.terms[0]
        self.net_name = term.name
        self.layer_index = [[self.x_ids.index(f"{term.name}__W{lay.index}_{r}_{c}")
                             for r in range(lay.n_out) for c in range(lay.n_in)]
                            for lay in term.layers]
        self.bias_index = [[self.x_ids.index(f"{term.name}__b{lay.index}_{r}")
                            for r in range(lay.n_out)] for lay in term.layers]
        self.shapes = [(lay.n_out, lay.n_in) for lay in term.layers]
        c, s = np.array(up.hp.hybrid.normalization[term.name]).T
        self.center, self.scale = torch.tensor(c), torch.tensor(s)
        self.out_scale = float(term.scales[0])
        cond = pp.condition_df.loc[conditions]
        self.cond = {k: torch.tensor(cond[k].to_numpy(float)) for k in cond.columns
                     if k != "conditionName"}
        self.k: dict[str, torch.Tensor] = {}
        self.weights: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.nfe = 0

    def prepare(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Transform the free vector once: returns (graph tensors, their leaf copies).

        The leaves (kinetic constants on linear scale, then W, b per layer) are what the RHS
        reads and what `odeint_adjoint` differentiates; `chain` maps their gradients to x.
        """
        net_idx = {i for idx in self.layer_index + self.bias_index for i in idx}
        graph, names = [], []
        for i, (pid, sc) in enumerate(zip(self.x_ids, self.scales)):
            if i in net_idx:
                continue
            graph.append(10.0 ** x[i] if sc == petab.LOG10 else
                         torch.exp(x[i]) if sc == petab.LOG else x[i])
            names.append(pid)
        for w, b, shape in zip(self.layer_index, self.bias_index, self.shapes):
            graph += [x[w].reshape(shape), x[b]]
        leaves = [g.detach().requires_grad_(True) for g in graph]
        self.k = dict(zip(names, leaves[:len(names)]))
        rest = leaves[len(names):]
        self.weights = [(rest[2 * j], rest[2 * j + 1]) for j in range(len(self.shapes))]
        return graph, leaves

    def p(self, pid: str) -> torch.Tensor | float:
        """A kinetic constant (linear scale): estimated leaf or fixed nominal value."""
        return self.k[pid] if pid in self.k else self.fixed[pid]

    def net(self, inputs: torch.Tensor) -> torch.Tensor:
        """Network output in model units; inputs (..., n_in) raw, output (...,)."""
        h = (inputs - self.center) / self.scale
        for j, (w, b) in enumerate(self.weights):
            h = h @ w.T + b
            if j < len(self.weights) - 1:
                h = torch.tanh(h)
        return self.out_scale * torch.log1p(torch.exp(h[..., 0]))


class CHOGrayBox(GrayBoxUDE):
    """CHO fed-batch mass balances with the (Lac, Glc) -> r_lac_shift network; y (n_cond, 8)."""

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        xv, xd, glc, gln, lac, amm, mab, vol = y.unbind(-1)
        p, cd = self.p, self.cond
        feed = cd["feed_rate"] / (1 + torch.exp(-8 * (t - cd["feed_start"])))
        dil = feed / vol
        mu = (p("mu_max") * glc / (p("K_glc") + glc) * gln / (p("K_gln") + gln)
              * p("KI_lac") / (p("KI_lac") + lac) * p("KI_amm") / (p("KI_amm") + amm))
        mu_d = p("kd0") + p("kd_amm") * amm / (p("KD_amm") + amm)
        q_glc = mu / p("Y_x_glc") + p("m_glc") * glc / (p("K_glc") + glc)
        q_gln = mu / p("Y_x_gln")
        q_lac = p("Y_lac_glc") * q_glc - self.net(torch.stack([lac, glc], -1))
        q_amm = p("Y_amm_gln") * q_gln
        q_mab = p("alpha_mab") * mu + p("beta_mab")
        return torch.stack([(mu - mu_d) * xv - dil * xv, mu_d * xv - dil * xd,
                            -q_glc * xv + dil * (cd["Glc_feed"] - glc),
                            -q_gln * xv + dil * (cd["Gln_feed"] - gln),
                            q_lac * xv - dil * lac, q_amm * xv - dil * amm,
                            q_mab * xv - dil * mab, feed], -1)

    def initial(self) -> torch.Tensor:
        cd = self.cond
        one = torch.ones_like(cd["Xv0"])
        return torch.stack([cd["Xv0"], 0 * one, cd["Glc0"], cd["Gln0"], 0.5 * one, 0.3 * one,
                            0 * one, one], -1)


class StiffGrayBox(GrayBoxUDE):
    """stiff_binding with the C -> transcription network; y (n_cond, 5) = (L, R, C, M, P)."""

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        lig, rec, cpx, mrna, prot = y.unbind(-1)
        p = self.p
        v_bind = p("kon") * (lig * rec - p("Kd") * cpx)
        v_tx = self.net(cpx[..., None])
        return torch.stack([-v_bind, -v_bind + p("kt") * (self.cond["R0"] - rec),
                            v_bind - p("ke") * cpx, v_tx - p("kdm") * mrna,
                            p("ktl") * mrna - p("kdp") * prot], -1)

    def initial(self) -> torch.Tensor:
        zero = torch.zeros_like(self.cond["L0"])
        return torch.stack([self.cond["L0"], self.cond["R0"], zero, zero, zero], -1)


def build(up, conditions: list[str]) -> GrayBoxUDE:
    """The torch model of problem `up` batched over `conditions`."""
    return (CHOGrayBox if up.name == "cho" else StiffGrayBox)(up, conditions)


def nll_and_grad(model: GrayBoxUDE, data: dict[str, np.ndarray], x0: np.ndarray, mode: str,
                 method: str, rtol: float, atol: float, step_size: float | None = None,
                 max_num_steps: int = 200_000) -> dict:
    """NLL of the data and its gradient w.r.t. the free vector, through torchdiffeq.

    Args:
        model: `build` output.
        data: `_ude_problems.data_arrays` (t (n_t,), y and sigma (n_t, n_cond, n_states)).
        x0: Free parameters on PEtab scale, shape (n_free,).
        mode: "backprop" (`odeint`, autograd through the solver), "adjoint"
            (`odeint_adjoint`, default norm) or "adjoint_seminorm".
        method: torchdiffeq method name.
        rtol, atol: Tolerances (forward and adjoint solve).
        step_size: Fixed step [time unit] for fixed-grid methods (``implicit_adams``).
        max_num_steps: Cap on adaptive steps (the call fails beyond it).

    Returns:
        ``nll``, ``grad`` (n_free,), ``nfe_forward`` and ``nfe_backward`` (RHS evaluations).
    """
    from torchdiffeq import odeint, odeint_adjoint

    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    graph, leaves = model.prepare(x)
    t = torch.as_tensor(data["t"])
    options = {"step_size": step_size} if step_size else {"max_num_steps": max_num_steps}
    model.nfe = 0
    y0 = model.initial()
    if mode == "backprop":
        ys = odeint(model, y0, t, method=method, rtol=rtol, atol=atol, options=options)
    else:
        adj = dict(options, norm="seminorm") if mode == "adjoint_seminorm" else dict(options)
        ys = odeint_adjoint(model, y0, t, method=method, rtol=rtol, atol=atol, options=options,
                            adjoint_options=adj, adjoint_params=tuple(leaves))
    nfe_forward = model.nfe
    y_obs, sig = torch.as_tensor(data["y"]), torch.as_tensor(data["sigma"])
    mask = ~torch.isnan(y_obs)
    r = (ys - torch.nan_to_num(y_obs)) / sig
    nll = (0.5 * (r[mask] ** 2).sum()
           + (torch.log(sig[mask]) + 0.5 * math.log(2 * math.pi)).sum())
    grads = torch.autograd.grad(nll, leaves, allow_unused=True)
    grads = [torch.zeros_like(g0) if g is None else g for g, g0 in zip(grads, leaves)]
    (gx,) = torch.autograd.grad(graph, x, grads)
    return {"nll": float(nll.detach()), "grad": gx.numpy().copy(), "nfe_forward": nfe_forward,
            "nfe_backward": model.nfe - nfe_forward}
