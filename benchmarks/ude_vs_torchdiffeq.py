"""Gradient cost of the CHO gray-box UDE: sbmlhybrid (AMICI, compiled) vs plain torch + torchdiffeq.

The same model — CHO fed-batch mass balances, 15 kinetic parameters (log10 scale) and the
(Lac, Glc) -> r_lac_shift tanh network of `sbmlhybrid.hybrid.examples.cho_graybox_terms` — is
written a second time in plain torch (batched over the 8 training conditions) and integrated
with `torchdiffeq.odeint_adjoint`. Both compute the negative log-likelihood of the training
data and its gradient w.r.t. the same parameter vector (the hybrid objective's free
parameters, at the weights trained by `benchmarks/hybrid_cho.py` when present).

Accuracy: a reference gradient from AMICI with forward sensitivities at rtol = atol = 1e-12.
For each tool and setting the relative L2 gradient error vs the reference and the median wall
time of (value + gradient) are measured; "matched accuracy" = the fastest setting of each
tool whose error is <= `TARGET_REL_ERR`. `speedup` = torchdiffeq time / sbmlhybrid time there.
torchdiffeq is a benchmark-only dependency (``pip install torchdiffeq``).

Usage: ``nice -n 10 python benchmarks/ude_vs_torchdiffeq.py``
Writes ``benchmarks/results/ude_vs_torchdiffeq.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
CHO = REPO / "petab_problems" / "cho_fedbatch"
OUT = REPO / "benchmarks" / "results" / "ude_vs_torchdiffeq.json"
TARGET_REL_ERR = 1e-4
STATES = ["Xv", "Xd", "Glc", "Gln", "Lac", "Amm", "mAb", "V"]


class GrayBoxODE(nn.Module):
    """CHO gray-box right-hand side in torch; `x` = the hybrid objective's free vector."""

    def __init__(self, objective, hp, x0: np.ndarray):
        super().__init__()
        pp = hp.petab_problem
        self.x = nn.Parameter(torch.tensor(x0, dtype=torch.float64))
        ids = objective.x_free_ids
        self.idx = {pid: i for i, pid in enumerate(ids)}
        pdf = pp.parameter_df
        self.fixed = {pid: float(pdf.loc[pid, "nominalValue"]) for pid in pdf.index
                      if pid not in self.idx}
        term = hp.hybrid.terms[0]
        self.layers = []
        for lay in term.layers:
            w = [self.idx[f"lacshift__W{lay.index}_{r}_{c}"] for r in range(lay.n_out)
                 for c in range(lay.n_in)]
            b = [self.idx[f"lacshift__b{lay.index}_{r}"] for r in range(lay.n_out)]
            self.layers.append((torch.tensor(w), torch.tensor(b), lay.n_out, lay.n_in))
        c, s = np.array(hp.hybrid.normalization["lacshift"]).T
        self.c, self.s = torch.tensor(c), torch.tensor(s)
        self.oscale = term.scales[0]
        cond = pp.condition_df.loc[objective_conditions(objective)]
        self.cond = {k: torch.tensor(cond[k].to_numpy(float)) for k in cond.columns
                     if k != "conditionName"}

    def p(self, pid: str) -> torch.Tensor | float:
        if pid in self.idx:
            return 10.0 ** self.x[self.idx[pid]]
        return self.fixed[pid]

    def net(self, lac: torch.Tensor, glc: torch.Tensor) -> torch.Tensor:
        h = (torch.stack([lac, glc], -1) - self.c) / self.s
        for k, (w, b, n_out, n_in) in enumerate(self.layers):
            h = h @ self.x[w].reshape(n_out, n_in).T + self.x[b]
            if k < len(self.layers) - 1:
                h = torch.tanh(h)
        return self.oscale * torch.log1p(torch.exp(h[..., 0]))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xv, xd, glc, gln, lac, amm, mab, vol = y.unbind(-1)
        p, cd = self.p, self.cond
        feed = cd["feed_rate"] * 1.0 / (1 + torch.exp(-8 * (t - cd["feed_start"])))
        dil = feed / vol
        mu = (p("mu_max") * glc / (p("K_glc") + glc) * gln / (p("K_gln") + gln)
              * p("KI_lac") / (p("KI_lac") + lac) * p("KI_amm") / (p("KI_amm") + amm))
        mu_d = p("kd0") + p("kd_amm") * amm / (p("KD_amm") + amm)
        q_glc = mu / p("Y_x_glc") + p("m_glc") * glc / (p("K_glc") + glc)
        q_gln = mu / p("Y_x_gln")
        q_lac = p("Y_lac_glc") * q_glc - self.net(lac, glc)
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


def objective_conditions(objective) -> list[str]:
    return [sim for _pre, sim in objective.conditions]


def data_tensors(objective, hp):
    """Times (n_t,), measurements and sigmas (n_t, n_cond, n_states) with NaN = no data."""
    mdf = hp.petab_problem.measurement_df
    obs = hp.petab_problem.observable_df
    times = np.sort(mdf["time"].unique())
    conds = objective_conditions(objective)
    meas = np.full((len(times), len(conds), len(STATES)), np.nan)
    sig = np.ones_like(meas)
    for _i, row in mdf.iterrows():
        k = STATES.index(obs.loc[row["observableId"], "observableFormula"])
        it, ic = np.searchsorted(times, row["time"]), conds.index(row["simulationConditionId"])
        meas[it, ic, k] = row["measurement"]
        sig[it, ic, k] = float(obs.loc[row["observableId"], "noiseFormula"])
    return torch.tensor(times), torch.tensor(meas), torch.tensor(sig)


def torch_nll_grad(func: GrayBoxODE, data, method: str, rtol: float, atol: float
                   ) -> tuple[float, np.ndarray]:
    from torchdiffeq import odeint_adjoint

    times, meas, sig = data
    func.zero_grad()
    y = odeint_adjoint(func, func.initial(), times, method=method, rtol=rtol, atol=atol,
                       adjoint_params=(func.x,))
    mask = ~torch.isnan(meas)
    r = (y - torch.nan_to_num(meas)) / sig
    nll = 0.5 * (r[mask] ** 2).sum() + (torch.log(sig[mask]) + 0.5 * math.log(2 * math.pi)).sum()
    nll.backward()
    return float(nll), func.x.grad.numpy().copy()


def timed(fn, repeats: int) -> tuple[float, tuple]:
    out, ts = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), out


def main() -> None:
    from sbmlhybrid import create_objective
    from sbmlhybrid.hybrid import hybridize, set_nominal
    from sbmlhybrid.hybrid.examples import cho_graybox_terms
    from sbmlhybrid.problem import SolverSettings, load_problem

    torch.set_num_threads(1)
    hp = hybridize(load_problem(CHO / "problem.yaml"), cho_graybox_terms())
    fitted = CHO / "hybrid_fit_gray.tsv"
    if fitted.exists():
        tab = pd.read_csv(fitted, sep="\t")
        hp = set_nominal(hp, dict(zip(tab["parameterId"], tab["value"])))
    ref_obj = create_objective(dataclasses.replace(
        hp, solver=SolverSettings(rtol=1e-12, atol=1e-12, sensitivity_method="forward")))
    x = ref_obj.x_nominal_free
    ref = ref_obj.evaluate(x)
    gnorm = np.linalg.norm(ref.grad)
    rows = []
    for method in ("forward", "adjoint"):
        for rtol in (1e-6, 1e-8):
            obj = create_objective(dataclasses.replace(
                hp, solver=SolverSettings(rtol=rtol, atol=rtol * 1e-2,
                                          sensitivity_method=method)))
            t, ev = timed(lambda obj=obj: obj.evaluate(x), 5)
            rows.append({"tool": "sbmlhybrid", "setting": f"{method} rtol={rtol:g}",
                         "seconds": t, "rel_grad_err": float(np.linalg.norm(ev.grad - ref.grad)
                                                            / gnorm),
                         "nll": ev.fval, "loadavg_1min": os.getloadavg()[0]})
            print(rows[-1], flush=True)
    func = GrayBoxODE(ref_obj, hp, x)
    data = data_tensors(ref_obj, hp)
    for method, rtols in (("dopri5", (1e-5, 1e-7, 1e-9)), ("bosh3", (1e-5, 1e-7)),
                          ("dopri8", (1e-7, 1e-9))):
        for rtol in rtols:
            try:
                t, (nll, grad) = timed(lambda m=method, r=rtol: torch_nll_grad(
                    func, data, m, r, r * 1e-2), 2)
            except Exception as err:  # a solver that fails (e.g. step size underflow)
                rows.append({"tool": "torchdiffeq", "setting": f"{method} rtol={rtol:g}",
                             "error": f"{type(err).__name__}: {err}"[:200]})
                continue
            rows.append({"tool": "torchdiffeq", "setting": f"adjoint {method} rtol={rtol:g}",
                         "seconds": t, "rel_grad_err": float(np.linalg.norm(grad - ref.grad)
                                                            / gnorm),
                         "nll": nll, "loadavg_1min": os.getloadavg()[0]})
            print(rows[-1], flush=True)
    ok = [r for r in rows if r.get("rel_grad_err", np.inf) <= TARGET_REL_ERR]
    best = {tool: min((r for r in ok if r["tool"] == tool), key=lambda r: r["seconds"],
                      default=None) for tool in ("sbmlhybrid", "torchdiffeq")}
    result = {
        "model": "CHO gray box (8 states, 15 kinetic parameters + lacshift 2-6-6-1 tanh net)",
        "n_parameters": len(x), "n_conditions": len(ref_obj.conditions),
        "reference": "AMICI forward sensitivities rtol=atol=1e-12", "reference_nll": ref.fval,
        "target_rel_grad_err": TARGET_REL_ERR, "runs": rows,
        "best_sbmlhybrid": best["sbmlhybrid"], "best_torchdiffeq": best["torchdiffeq"],
        "speedup": (best["torchdiffeq"]["seconds"] / best["sbmlhybrid"]["seconds"]
                    if best["sbmlhybrid"] and best["torchdiffeq"] else None),
        "note": "wall time of NLL + gradient over all 8 training conditions, median of "
                "repeats, 1 torch thread, shared 2-core machine (see loadavg)",
    }
    OUT.write_text(json.dumps(result, indent=1))
    print("speedup", result["speedup"])


if __name__ == "__main__":
    main()
