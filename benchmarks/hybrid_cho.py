"""CHO fed-batch: white, gray and black box models trained on 8 conditions, tested on 3 held-out
feed strategies.

* white: all 17 kinetic parameters of the mechanistic model are fitted;
* gray: a (Lac, Glc) -> r_lac_shift network replaces the lactate-shift law (its 2 parameters
  drop out), the 15 other kinetic parameters are fitted together with the weights;
* gray_known_yield: the same gray box with the lactate yield Y_lac_glc fixed at its true
  value, as when it is measured apart (with it free, the shift term is not identifiable);
* gray_prior: gray_known_yield with a normal prior N(0, `WEIGHT_PRIOR_SD`^2) on every weight
  (`NetworkTerm.weight_prior_sd`): without it the known-yield network fits the training
  data below the truth's likelihood and extrapolates badly to the held-out feeds;
* black: one (Glc, Gln, Lac, Amm) -> 7 specific rates network; only mass balances and feed
  dilution are kept (`sbmlhybrid.hybrid.examples`).

All five use the foundation's multi-start `fit` (fides) with the same number of starts and
iterations, the starts in parallel on the process engine: kinetic parameters uniformly on
log10 scale within their bounds, weights like torch's default init. Held-out error: RMSE
between the simulated observables and the noise-free true trajectories
(`true_trajectories_test.tsv`) per observable, divided by that observable's range in the
truth, then averaged over observables (`test_rmse_*`). The gray box's learned term is
compared with the true law on the (Lac, Glc) states the training conditions visit (the
noise-free training trajectories): ``lacshift.rel_rmse`` = RMSE / range of the true term;
it "follows the true function" at <= `LACSHIFT_TOL` (plots
``hybrid_cho_lacshift_<model>.png``).
Fitted parameters are written to ``petab_problems/cho_fedbatch/hybrid_fit_<model>.tsv`` (used
by the notebook).

Resumable: each model's fit is checkpointed after every chunk of starts in
``benchmarks/results/hybrid_cho/<model>_maxiter<N>.h5`` (`fit`'s own checkpoint); a rerun
with the same settings runs only the missing starts. The JSON is written once, by the call
that finds all five models complete, with the commit, the command line and the load before
each timing (fit quality does not depend on load; the seconds do).

Usage: ``nice -n 10 python benchmarks/hybrid_cho.py [--starts 10] [--max-iter 300]
[--workers 2] [--models white gray gray_known_yield gray_prior black]``
Writes ``benchmarks/results/hybrid_cho.json`` and the lactate-shift plots.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, git_commit, load1, write_json  # noqa: E402

CHO = REPO / "petab_problems" / "cho_fedbatch"
RECORDS = RESULTS / "hybrid_cho"
MODELS = ("white", "gray", "gray_known_yield", "gray_prior", "black")
WIDTHS = {"white": (), "gray": (6, 6), "gray_known_yield": (6, 6), "gray_prior": (6, 6),
          "black": (8, 8)}
#: Prior standard deviation of the weights of ``gray_prior`` (the network sees inputs scaled
#: to [-1, 1] and its softplus output is scaled to the term's size, so weights of order 1
#: suffice; the known-yield fit without a prior used weights up to 7).
WEIGHT_PRIOR_SD = 1.0
#: Fixed at its true (nominal) value in ``gray_known_yield``: with it free, a larger yield and
#: a network grown by the same multiple of q_glc fit the data as well (see `lacshift_score`).
KNOWN_YIELD = "Y_lac_glc"
#: The learned lactate-shift term follows the true law when its RMSE on the visited states
#: is at most this fraction of the true term's range there.
LACSHIFT_TOL = 0.1


def truth_problem(split: str, name: str):
    """The split's problem with the noise-free truth as its measurement table."""
    from sbmlhybrid.problem import load_problem

    base = load_problem(CHO / ("problem.yaml" if split == "train" else "problem_test.yaml"))
    truth = pd.read_csv(CHO / f"true_trajectories_{split}.tsv", sep="\t")
    pp = copy.copy(base.petab_problem)
    pp.measurement_df = truth.rename(columns={"simulation": "measurement"})
    return dataclasses.replace(base, petab_problem=pp, name=name)


def rmse_by_observable(observable_ids, simulation, truth) -> dict[str, float]:
    """Per-observable RMSE of `simulation` vs `truth` divided by the truth's range."""
    frame = pd.DataFrame({"observableId": np.asarray(observable_ids),
                          "simulation": np.asarray(simulation, float),
                          "measurement": np.asarray(truth, float)})
    out = {}
    for oid, g in frame.groupby("observableId"):
        rng = g["measurement"].max() - g["measurement"].min()
        out[oid] = float(np.sqrt(np.mean((g["simulation"] - g["measurement"]) ** 2)) / rng)
    return out


def rmse_table(objective) -> dict[str, float]:
    """Per-observable RMSE vs truth divided by the truth's range, at the nominal parameters."""
    sim = objective.simulate(objective.x_nominal_free)
    mdf = objective.problem.petab_problem.measurement_df
    assert list(sim["observableId"]) == list(mdf["observableId"])
    # AMICI's table renames the measurement column, so the truth comes from the problem
    return rmse_by_observable(sim["observableId"], sim["simulation"], mdf["measurement"])


def build(kind: str, widths: tuple[int, ...]):
    from sbmlhybrid import create_objective, load_problem
    from sbmlhybrid.hybrid import hybridize
    from sbmlhybrid.hybrid.examples import cho_blackbox_terms, cho_graybox_terms

    train = load_problem(CHO / "problem.yaml")
    if kind == "white":
        return train, create_objective(train)
    if kind in ("gray_known_yield", "gray_prior"):  # the yield measured apart: fixed
        pp = copy.copy(train.petab_problem)
        pp.parameter_df = pp.parameter_df.copy()
        pp.parameter_df.loc[KNOWN_YIELD, "estimate"] = 0
        train = dataclasses.replace(train, petab_problem=pp)
    terms = cho_blackbox_terms(widths) if kind == "black" else cho_graybox_terms(widths)
    if kind == "gray_prior":
        terms = [dataclasses.replace(t, weight_prior_sd=WEIGHT_PRIOR_SD) for t in terms]
    hp = hybridize(train, terms)
    return hp, create_objective(hp)


def pick_sensitivity(objective) -> dict[str, float]:
    """Time one gradient with forward and adjoint sensitivities; keep the faster."""
    times = {"loadavg_1min_before": load1()}
    for method in ("forward", "adjoint"):
        objective.sensitivity_method = method
        objective.apply_solver_settings()
        t0 = time.perf_counter()
        objective.evaluate(objective.x_nominal_free)
        times[method] = round(time.perf_counter() - t0, 3)
    times["loadavg_1min_after"] = load1()
    objective.sensitivity_method = min(("forward", "adjoint"), key=times.get)
    objective.apply_solver_settings()
    return times


def visited_states() -> pd.DataFrame:
    """States [mM, 1e9 cells/L] of the noise-free training trajectories, one row per sample."""
    truth = pd.read_csv(CHO / "true_trajectories_train.tsv", sep="\t")
    wide = truth.pivot_table(index=["simulationConditionId", "time"], columns="observableId",
                             values="simulation")
    return wide.rename(columns=lambda c: c.removeprefix("obs_"))


def cho_model():
    """`petab_problems/cho_fedbatch/model.py`: the documented truth and rate laws."""
    sys.path.insert(0, str(CHO))
    import model

    return model


def true_parameters() -> dict[str, float]:
    """The documented true kinetic parameters of the CHO problem."""
    return {p[0]: p[1] for p in cho_model().KINETIC_PARAMETERS}


def lactate_rate(values: dict[str, float], states: pd.DataFrame,
                 r_lac_shift: np.ndarray | None = None) -> np.ndarray:
    """q_lac [mmol/(1e9 cells d)] by the model's rate laws (`model.py` RATES) at `states`.

    Parameters missing from `values` take their true values; `r_lac_shift` (the network's
    output) replaces the lactate-shift law when given.
    """
    import sympy as sp

    env = true_parameters() | dict(values)
    env |= {c: states[c].to_numpy(float) for c in states.columns}
    for name, formula, _unit in cho_model().RATES:
        if name in ("F", "D"):  # feeding: time-dependent, not part of the specific rates
            continue
        if name == "r_lac_shift" and r_lac_shift is not None:
            env[name] = r_lac_shift
            continue
        expr = sp.sympify(formula)
        symbols = sorted(expr.free_symbols, key=str)
        env[name] = sp.lambdify(symbols, expr, "numpy")(*[env[str(x)] for x in symbols])
    return np.asarray(env["q_lac"], float)


def lacshift_arrays(problem, values: dict[str, float]) -> dict[str, np.ndarray]:
    """On the visited states: (Lac, Glc), learned and true r_lac_shift, fitted and true q_lac."""
    from sbmlhybrid.hybrid.examples import true_lactate_shift

    problem.hybrid.load_weights(values)
    states = visited_states()
    pts = states[["Lac", "Glc"]].to_numpy(float)
    learned = problem.hybrid.term_values("lacshift", pts)[:, 0]
    return {"pts": pts, "learned": learned, "true": true_lactate_shift(pts[:, 0], pts[:, 1]),
            "q_fit": lactate_rate(values, states, learned), "q_true": lactate_rate({}, states)}


def lacshift_score(a: dict[str, np.ndarray], values: dict[str, float]) -> dict:
    """Learned vs true r_lac_shift (the gray box's hidden term) from `lacshift_arrays`."""
    learned, true = a["learned"], a["true"]
    span = float(true.max() - true.min())
    rel_rmse = float(np.sqrt(np.mean((learned - true) ** 2)) / span)
    # The net lactate rate q_lac = Y_lac_glc * q_glc - r_lac_shift is what the data pin down:
    # a larger Y_lac_glc with a term grown by the same multiple of q_glc fits as well.
    q_span = float(a["q_true"].max() - a["q_true"].min())
    q_rel = float(np.sqrt(np.mean((a["q_fit"] - a["q_true"]) ** 2)) / q_span)
    return {"n_states": len(true), "true_range": [float(true.min()), float(true.max())],
            "rel_rmse": rel_rmse, "rel_max_error": float(np.abs(learned - true).max() / span),
            "tolerance": LACSHIFT_TOL, "follows_truth": rel_rmse <= LACSHIFT_TOL,
            "Y_lac_glc_fitted": values.get("Y_lac_glc"),
            "Y_lac_glc_true": true_parameters()["Y_lac_glc"],
            "q_lac_rel_rmse": q_rel, "q_lac_true_range": [float(a["q_true"].min()),
                                                          float(a["q_true"].max())]}


def plot_lacshift(problem, a: dict[str, np.ndarray], path: Path) -> None:
    """Learned (solid) vs true (dashed) term along Glc at four Lac levels, and on the states.

    `problem` holds the fitted weights (`lacshift_arrays` loaded them).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sbmlhybrid.hybrid.examples import true_lactate_shift

    pts = a["pts"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    glc = np.linspace(0, pts[:, 1].max(), 121)
    for lac, color in zip(np.quantile(pts[:, 0], [0.1, 0.4, 0.7, 0.95]),
                          plt.cm.viridis(np.linspace(0, 0.9, 4))):
        x = np.column_stack([np.full_like(glc, lac), glc])
        axes[0].plot(glc, problem.hybrid.term_values("lacshift", x)[:, 0], color=color,
                     label=f"Lac={lac:.1f} mM")
        axes[0].plot(glc, true_lactate_shift(lac, glc), "--", color=color)
    axes[0].set(xlabel="Glc [mM]", ylabel="r_lac_shift [mmol/(1e9 cells d)]",
                title="learned (solid) vs true (dashed)")
    axes[0].legend(fontsize=8)
    for ax, (x, y) in zip(axes[1:], [(a["true"], a["learned"]), (a["q_true"], a["q_fit"])]):
        ax.plot(x, y, ".", ms=3)
        ax.plot([x.min(), x.max()], [x.min(), x.max()], "k--", lw=0.8)
    axes[1].set(xlabel="true r_lac_shift", ylabel="learned",
                title="on the states the training conditions visit")
    axes[2].set(xlabel="true q_lac", ylabel="fitted q_lac = Y_lac_glc q_glc - r_lac_shift",
                title="net lactate rate (what the data determine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(kind: str, starts: int, max_iter: int, workers: int) -> dict:
    """Fit one model (resuming its checkpoint) and score it on training and held-out truth."""
    from sbmlhybrid import create_objective
    from sbmlhybrid.hybrid import parameter_values, set_nominal
    from sbmlhybrid.optimize import FitSettings, fit
    from sbmlhybrid.results.plots import best_x_free

    load0 = load1()
    t0 = time.perf_counter()
    problem, obj = build(kind, WIDTHS[kind])
    compile_s = time.perf_counter() - t0
    sens = pick_sensitivity(obj)
    settings = FitSettings(n_starts=starts, seed=0, max_iter=max_iter, engine="process",
                           workers=workers)
    result = fit(obj, settings, output=RECORDS / f"{kind}_maxiter{max_iter}.h5")
    load_after_fit = load1()  # the fit's own workers load the machine: seconds_per_start
    runs = result.optimize_result.list
    x_best = best_x_free(result, obj)
    values = parameter_values(obj, x_best)
    pd.DataFrame({"parameterId": list(values), "value": list(values.values())}).to_csv(
        CHO / f"hybrid_fit_{kind}.tsv", sep="\t", index=False, float_format="%.17g")
    scores = {}
    for split in ("train", "test"):
        truth = truth_problem(split, problem.name)
        if kind == "white":
            eval_obj = create_objective(set_nominal(truth, values))
        else:  # the front door compiles hybrid problems with their own codegen choice
            eval_obj = create_objective(problem.hybrid.apply(truth, values))
        scores[split] = rmse_table(eval_obj)
    out = {
        "model": kind, "n_estimated": len(obj.x_free_ids),
        "widths": list(WIDTHS[kind]) if kind != "white" else None,
        "dropped_parameters": getattr(getattr(problem, "hybrid", None), "dropped", []),
        "compile_or_cache_s": round(compile_s, 1), "loadavg_1min_before_compile": load0,
        "gradient_s": sens, "sensitivity_method": obj.sensitivity_method,
        "n_starts": starts, "max_iter": max_iter,
        "n_grad_per_start": [int(r.n_grad or 0) for r in runs],
        "n_fval_per_start": [int(r.n_fval or 0) for r in runs],
        "exitflag_per_start": [int(r.exitflag) if r.exitflag is not None else None
                               for r in runs],
        "seconds_per_start": [round(float(r.time), 1) for r in runs],
        "loadavg_1min_after_fit": load_after_fit,
        "best_nll": float(runs[0].fval), "nll_per_start": [float(r.fval) for r in runs],
        # the fitted objective minus the weight prior (equal to best_nll without a prior)
        "best_nll_data_only": float(obj.evaluate(x_best, gradient=False).fval),
        "test_rmse_per_observable": scores["test"], "train_rmse_per_observable": scores["train"],
        "test_rmse": float(np.mean(list(scores["test"].values()))),
        "train_rmse": float(np.mean(list(scores["train"].values()))),
    }
    if kind.startswith("gray"):
        arrays = lacshift_arrays(problem, values)
        out["lacshift"] = lacshift_score(arrays, values)
        plot_lacshift(problem, arrays, RESULTS / f"hybrid_cho_lacshift_{kind}.png")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("amici").setLevel(logging.ERROR)
    results = {}
    for kind in args.models:
        results[kind] = run(kind, args.starts, args.max_iter, args.workers)
        print(json.dumps({k: v for k, v in results[kind].items() if "per_" not in k}),
              flush=True)
    if set(results) != set(MODELS):
        print("fits checkpointed; hybrid_cho.json is written by a call with all five models")
        return
    write_json("hybrid_cho.json", {
        "command": " ".join(["benchmarks/hybrid_cho.py", *(argv or sys.argv[1:])]),
        "commit": git_commit(), **results,
        **{f"test_rmse_{k}": results[k]["test_rmse"] for k in MODELS},
        "gray_over_black": results["gray"]["test_rmse"] / results["black"]["test_rmse"],
        "metric": ("held-out RMSE vs noise-free truth per observable / the observable's "
                   "range in the truth, mean over the 7 observables")})


if __name__ == "__main__":
    main()
