"""Gray-box fit of the stiff receptor-ligand problem: does the network recover the hidden term?

Problem: `petab_problems/stiff_binding` with the induced-transcription law
``k_tx*C^2/(K_C^2 + C^2)`` replaced by a 1-8-8-1 tanh network of the surface complex C
(`petab_problems/stiff_binding/graybox.py`); the 6 other kinetic parameters are fitted with
the 97 weights. Reused: `sbmlhybrid.hybrid` (hybridize, `HybridModel.term_values`,
`parameter_values`), `sbmlhybrid.create_objective` (AMICI/CVODES, compile cache) and the
multi-start `sbmlhybrid.optimize.fit` (fides; start points: kinetic parameters uniform on
log10 scale in their bounds, weights like torch's default init; resumable per start through
its HDF5 store with a checkpoint after every start). Hand-written: the choice of sensitivity
method by one timed gradient each, the hidden-term error over the data range of C and the
plot.

Usage: ``nice -n 2 python benchmarks/stiff_graybox.py [--starts 10] [--max-iter 300]``
(``--smoke``: 2 starts x 5 iterations under /tmp). Writes
``benchmarks/results/stiff_graybox.json`` and ``.png``; the fit store is
``benchmarks/results/stiff_graybox/fit.hdf5``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
STIFF = REPO / "petab_problems" / "stiff_binding"
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(STIFF))


def pick_sensitivity(objective) -> dict[str, float]:
    """Seconds of one gradient with forward and with adjoint sensitivities; keep the faster."""
    times = {}
    for method in ("forward", "adjoint"):
        objective.sensitivity_method = method
        objective.apply_solver_settings()
        objective.evaluate(objective.x_nominal_free)  # warm-up
        t0 = time.perf_counter()
        objective.evaluate(objective.x_nominal_free)
        times[method] = round(time.perf_counter() - t0, 3)
    objective.sensitivity_method = min(times, key=times.get)
    objective.apply_solver_settings()
    return times


def hidden_term(hp, values: dict[str, float]) -> dict:
    """Learned vs true transcription rate over the data range of C (nM): grid and errors."""
    from graybox import NAME, true_transcription

    mdf = hp.petab_problem.measurement_df
    c_data = mdf.loc[mdf["observableId"] == "obs_C", "measurement"].to_numpy(float)
    c = np.linspace(max(c_data.min(), 0.0), c_data.max(), 200)
    hp.hybrid.load_weights(values)
    learned = hp.hybrid.term_values(NAME, c[:, None])[:, 0]
    true = true_transcription(c)
    return {"C_nM": c.tolist(), "learned": learned.tolist(), "true": true.tolist(),
            "rmse_over_max": float(np.sqrt(np.mean((learned - true) ** 2)) / true.max()),
            "max_abs_err_over_max": float(np.max(np.abs(learned - true)) / true.max()),
            "data_range_C_nM": [float(c_data.min()), float(c_data.max())]}


def plot(term: dict, fvals: list[float], nll_truth: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(term["C_nM"], term["true"], "k-", label="true k_tx C^2/(K_C^2 + C^2)")
    a.plot(term["C_nM"], term["learned"], "C3--", label="learned network (best start)")
    a.set(xlabel="surface complex C [nM] (data range)", ylabel="transcription [au/h]",
          title=f"hidden term, RMSE/max = {term['rmse_over_max']:.3f}")
    a.legend(fontsize=8)
    b.plot(range(1, len(fvals) + 1), np.array(fvals) - nll_truth, "o-")
    b.set(yscale="symlog", xlabel="start (sorted)", ylabel="NLL - NLL(white box at truth)",
          title="waterfall")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def white_box_nll_at_truth() -> float:
    from make_problem import PARAMETERS

    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import load_problem

    obj = create_objective(load_problem(STIFF / "problem.yaml"))
    return obj.evaluate(np.log10([PARAMETERS[p][0] for p in obj.x_free_ids]),
                        gradient=False).fval


def main(argv: list[str] | None = None) -> None:
    from graybox import graybox_problem
    from make_problem import PARAMETERS

    from sbmlhybrid.hybrid import parameter_values
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.optimize import FitSettings, fit
    from sbmlhybrid.results.plots import best_x_free

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--smoke", action="store_true", help="2 starts x 5 iterations under /tmp")
    args = ap.parse_args(argv)
    starts, max_iter = (2, 5) if args.smoke else (args.starts, args.max_iter)
    out = Path("/tmp/stiff_graybox_smoke") if args.smoke else RESULTS
    store = out / "stiff_graybox" / "fit.hdf5"
    store.parent.mkdir(parents=True, exist_ok=True)
    load0 = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    hp = graybox_problem()
    obj = create_objective(hp)
    build_s = time.perf_counter() - t0
    sens = pick_sensitivity(obj)
    t0 = time.perf_counter()
    result = fit(obj, FitSettings(n_starts=starts, seed=0, max_iter=max_iter,
                                  checkpoint_every=1), output=store, progress=False)
    fit_s = time.perf_counter() - t0
    fvals = [float(r.fval) for r in result.optimize_result.list]
    values = parameter_values(obj, best_x_free(result, obj))
    term = hidden_term(hp, values)
    nll_truth = white_box_nll_at_truth()
    kinetic = {p: {"fitted": values[p], "true": PARAMETERS[p][0]} for p in obj.x_free_ids
               if p in PARAMETERS}
    doc = {"problem": "petab_problems/stiff_binding gray box (transcription -> 1-8-8-1 net)",
           "n_estimated": len(obj.x_free_ids), "dropped": hp.hybrid.dropped,
           "n_starts": starts, "max_iter": max_iter, "optimizer": "fides",
           "gradient_s": sens, "sensitivity_method": obj.sensitivity_method,
           "compile_or_cache_s": round(build_s, 1), "fit_s_this_run": round(fit_s, 1),
           "nll_per_start": fvals, "best_nll": fvals[0], "nll_white_box_at_truth": nll_truth,
           "kinetic_parameters": kinetic, "hidden_term": term,
           "loadavg_before": load0, "loadavg_after": [round(v, 2) for v in os.getloadavg()]}
    path = out / "stiff_graybox.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    plot(term, fvals, nll_truth, path.with_suffix(".png"))
    pd.DataFrame({"parameterId": list(values), "value": list(values.values())}).to_csv(
        store.parent / "best_parameters.tsv", sep="\t", index=False, float_format="%.17g")
    print(f"wrote {path}: best NLL {fvals[0]:.2f} (white box at truth {nll_truth:.2f}), "
          f"hidden-term RMSE/max {term['rmse_over_max']:.3f}")


if __name__ == "__main__":
    main()
