"""Analysis, timings and plots of `minibatch_scale.py` (reads only its records)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS, git_commit, load1, write_json

RECORDS = RESULTS / "minibatch_scale"
DELTAS = (0.1, 1.0, 10.0)
FULLBATCH = ("fides", "lbfgsb")
SIZES = {"n64": 64, "n256": 256, "n1024": 1024}


def load_records(key: str, prefix: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Method -> records (one per start) of a problem; tuning runs only with prefix 'tune-'."""
    out: dict[str, list[dict[str, Any]]] = {}
    root = RECORDS / key
    if not root.exists():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        is_tune = folder.name.startswith("tune-")
        if (prefix == "tune-") != is_tune or folder.name.startswith("base-"):
            continue  # base-: a mini-batch run that only a polished method reports
        recs = [json.loads(p.read_text()) for p in sorted(folder.glob("start*.json"))]
        if recs:
            out[folder.name] = recs
    return out


def units(rec: dict[str, Any], forward_cost: float) -> float:
    """Work of a record: sensitivity simulations + forward_cost x forward simulations."""
    return rec["work_sensitivity"] + forward_cost * rec["work_forward"]


def expected_work(recs: list[dict[str, Any]], f_star: float, delta: float,
                  forward_cost: float = 1.0) -> float:
    """Total work of all starts / converged starts (inf when none converged)."""
    n_conv = sum(r["fval"] is not None and r["fval"] <= f_star + delta for r in recs)
    total = sum(units(r, forward_cost) for r in recs)
    return total / n_conv if n_conv else math.inf


def summarize(key: str, forward_cost: float, n_starts: int) -> dict[str, Any] | None:
    """Per-problem block: f*, converged starts, best values, W and work ratio per delta."""
    every = load_records(key)
    recs = {m: r for m, r in every.items() if len(r) >= n_starts}
    if not recs:
        return None
    finite = [r["fval"] for rs in recs.values() for r in rs if r["fval"] is not None]
    f_star = min(finite)
    block: dict[str, Any] = {
        "f_star": f_star, "n_starts": n_starts, "methods": sorted(recs),
        "best_fval_by_method": {m: min((r["fval"] for r in rs if r["fval"] is not None),
                                       default=None) for m, rs in recs.items()},
        "converged_starts_by_method": {}, "expected_work_by_method": {},
        "expected_work_by_method_forward_as_1": {}, "work_ratio": {}, "best_minibatch": {},
        "best_fullbatch": {}, "total_work_by_method": {
            m: sum(units(r, forward_cost) for r in rs) for m, rs in recs.items()},
        # methods still running (records so far): f* and the ratio do not include them yet
        "incomplete_methods": {m: len(rs) for m, rs in every.items() if len(rs) < n_starts},
    }
    for delta in DELTAS:
        d = str(delta)
        conv = {m: int(sum(r["fval"] is not None and r["fval"] <= f_star + delta for r in rs))
                for m, rs in recs.items()}
        w = {m: expected_work(rs, f_star, delta, forward_cost) for m, rs in recs.items()}
        w1 = {m: expected_work(rs, f_star, delta, 1.0) for m, rs in recs.items()}
        block["converged_starts_by_method"][d] = conv
        block["expected_work_by_method"][d] = {m: _finite(v) for m, v in w.items()}
        block["expected_work_by_method_forward_as_1"][d] = {m: _finite(v) for m, v in w1.items()}
        full = {m: v for m, v in w.items() if m in FULLBATCH}
        mini = {m: v for m, v in w.items() if m not in FULLBATCH}
        if full and mini:
            bf, bm = min(full, key=full.get), min(mini, key=mini.get)
            ratio = full[bf] / mini[bm] if math.isfinite(mini[bm]) else 0.0
            block["work_ratio"][d] = _finite(ratio)
            block["best_fullbatch"][d], block["best_minibatch"][d] = bf, bm
    return block


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def plot(blocks: dict[str, dict[str, Any]], forward_cost: float) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    keys = [k for k in blocks if blocks[k] is not None]
    if keys:
        fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
        for ax, key in zip(axes[0], keys):
            f_star = blocks[key]["f_star"]
            complete = {m: rs for m, rs in load_records(key).items()
                        if m in blocks[key]["methods"]}  # the methods the JSON reports
            for i, (m, rs) in enumerate(sorted(complete.items())):
                color = f"C{i % 10}"
                for j, r in enumerate(rs):
                    w = np.asarray(r["curve_work_sensitivity"]) + forward_cost * np.asarray(
                        r["curve_work_forward"])
                    f = np.array([np.nan if v is None else v for v in r["curve_best_fval"]])
                    if len(w):  # a plain mini-batch run has one full evaluation: a dot
                        ax.plot(np.maximum(w, 1), f - f_star + 1, color=color, lw=0.6,
                                alpha=0.6, marker="o" if len(w) == 1 else None, ms=3,
                                label=m if j == 0 else None)
            ax.axhline(2.0, color="k", ls=":", lw=0.8)
            ax.set(xscale="log", yscale="log", title=key, xlabel="work (conditions simulated)",
                   ylabel="best objective - f* + 1")
        axes[0][0].legend(fontsize=6, ncol=2)
        fig.tight_layout()
        paths.append(RESULTS / "minibatch_scale_traces.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    sized = [k for k in SIZES if blocks.get(k)]
    if sized:
        fig, ax = plt.subplots(figsize=(6, 4))
        names = sorted({m for k in sized for m in blocks[k]["expected_work_by_method"]["1.0"]})
        for i, m in enumerate(names):
            ys = [blocks[k]["expected_work_by_method"]["1.0"].get(m) for k in sized]
            ax.plot([SIZES[k] for k in sized], [np.nan if y is None else y for y in ys],
                    "o-" if m in FULLBATCH else "s--", color=f"C{i % 10}", label=m)
        ax.set(xscale="log", yscale="log", xlabel="conditions N",
               ylabel="expected work per converged start (delta = 1)")
        ax.legend(fontsize=6)
        fig.tight_layout()
        paths.append(RESULTS / "minibatch_scale_work.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def report(command: str) -> None:
    """Rebuild minibatch_scale.json and its PNGs from the records."""
    from minibatch_scale import N_STARTS

    # timings come from benchmarks/batch_cost.py (one run on an idle machine, loads stored)
    timing_path = RESULTS / "batch_cost.json"
    timings = json.loads(timing_path.read_text()) if timing_path.exists() else None
    ratios = {k: p["forward_cost_ratio"] for k, p in (timings or {}).get("problems", {}).items()}
    fwd_cost = {k: ratios.get("isensee" if k == "isensee" else "n256", 1.0) for k in N_STARTS}
    blocks = {k: summarize(k, fwd_cost[k], N_STARTS[k]) for k in N_STARTS}
    tuned_path = RECORDS / "tuned.json"
    data = {
        "command": command, "commit": git_commit(), "load1_at_report": load1(),
        "unit": "one condition simulated with sensitivities; forward-only simulations "
                "weighted by forward_cost_ratio (see *_forward_as_1 for weight 1)",
        "forward_cost_ratio_by_problem": fwd_cost, "delta": 1.0, "deltas": list(DELTAS),
        "tuning": json.loads(tuned_path.read_text()) if tuned_path.exists() else None,
        "timings_from": "benchmarks/results/batch_cost.json" if timings else None,
        "batch_cost_ratio": timings["batch_cost_ratio"] if timings else None,
        "batch_cost_loads_ok": timings["loads_ok"] if timings else None,
        "work_ratio_by_n": {str(SIZES[k]): (blocks[k] or {}).get("work_ratio", {}).get("1.0")
                            for k in SIZES},
        "n_starts_by_n": {str(SIZES[k]): N_STARTS[k] for k in SIZES},
        "converged_starts_by_method": {str(SIZES[k]): blocks[k]["converged_starts_by_method"]
                                       ["1.0"] for k in SIZES if blocks[k]},
        "best_fval_by_method": {str(SIZES[k]): blocks[k]["best_fval_by_method"]
                                for k in SIZES if blocks[k]},
        "problems": blocks,
        "isensee": blocks.get("isensee"),
        "missing": [k for k, b in blocks.items() if b is None],
    }
    write_json("minibatch_scale.json", data)
    for p in plot(blocks, fwd_cost["n64"]):
        print(f"wrote {p}")
