"""Figures of a fit, written as PNG: waterfall, parameters, fitted trajectories vs data.

Reused: `pypesto.visualize.waterfall` and `pypesto.visualize.parameters`. Added: a
trajectory panel per observable with one colour per condition, simulated at the best
parameters on a dense time grid, data as markers (pyPESTO's model-fit plot needs a PEtab
visualization table that few problems ship).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import petab.v1 as petab
import pypesto
import pypesto.visualize

from sbmlhybrid.objective import ModelObjective


def best_x_free(result: pypesto.Result, objective: ModelObjective) -> np.ndarray:
    """Best start's estimated parameters on PEtab scale, shape (n_free,)."""
    best = result.optimize_result.list[0]
    return np.asarray(best.x)[objective.pypesto_problem.x_free_indices]


def plot_trajectories(objective: ModelObjective, x_free: np.ndarray | None,
                      conditions: list[str] | None = None, n_time: int = 120,
                      title: str = "") -> plt.Figure:
    """Simulated observables (lines, dense grid) against data (markers), one panel each."""
    mdf = objective.problem.petab_problem.measurement_df
    idx = objective.condition_indices(conditions)
    obs_ids = list(dict.fromkeys(mdf[petab.OBSERVABLE_ID]))
    ncol = min(4, len(obs_ids))
    nrow = int(np.ceil(len(obs_ids) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), squeeze=False)
    model_obs = list(objective.amici_objective.amici_model.get_observable_ids())
    if n_time:
        curves = objective.dense_simulation(x_free, idx, n_time)
    else:  # simulated at the measurement times only
        ev = objective.evaluate(x_free, idx, gradient=False, return_rdatas=True,
                                raise_on_failure=False)
        curves = [(np.asarray(r.ts), np.asarray(r.y)) for r in ev.rdatas or []]
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    for k, (i, (t, y)) in enumerate(zip(idx, curves)):
        _pre, sim_id = objective.conditions[i]
        color = colors[k % 10]
        data = mdf[mdf[petab.SIMULATION_CONDITION_ID] == sim_id]
        for j, oid in enumerate(obs_ids):
            ax = axes[j // ncol][j % ncol]
            o = model_obs.index(oid)
            ax.plot(t, y[:, o], color=color, lw=1.3, label=sim_id if j == 0 else None)
            d = data[data[petab.OBSERVABLE_ID] == oid]
            ax.plot(d[petab.TIME], d[petab.MEASUREMENT], "o", ms=3, color=color, alpha=0.8)
            ax.set_title(oid, fontsize=9)
            ax.set_xlabel("time")
    for j in range(len(obs_ids), nrow * ncol):
        axes[j // ncol][j % ncol].axis("off")
    fig.legend(loc="lower right", fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_fit_plots(result: pypesto.Result, objective: ModelObjective, folder: str | Path,
                    conditions: list[str] | None = None) -> list[Path]:
    """Write waterfall.png, parameters.png and fit.png into `folder`; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    ax = pypesto.visualize.waterfall(result)
    fig = np.atleast_1d(ax)[0].get_figure()
    paths.append(folder / "waterfall.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    ax = pypesto.visualize.parameters(result)
    fig = np.atleast_1d(ax)[0].get_figure()
    paths.append(folder / "parameters.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    if not hasattr(objective, "dense_simulation"):  # PEtab v2: no dense trajectories yet
        return paths
    fig = plot_trajectories(objective, best_x_free(result, objective), conditions,
                            title=f"{objective.problem.name}: best fit vs data")
    paths.append(folder / "fit.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def simulation_frame(objective: ModelObjective, x_free: np.ndarray | None) -> pd.DataFrame:
    """PEtab simulation table with residuals (measurement - simulation)."""
    sim = objective.simulate(x_free)
    mdf = objective.problem.petab_problem.measurement_df
    keys = [petab.OBSERVABLE_ID, petab.SIMULATION_CONDITION_ID, petab.TIME]
    merged = sim.merge(mdf[[*keys, petab.MEASUREMENT]].drop_duplicates(keys), on=keys,
                       how="left", suffixes=("", "_data"))
    merged["residual"] = merged[petab.MEASUREMENT] - merged[petab.SIMULATION]
    return merged
