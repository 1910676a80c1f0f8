"""Speed-vs-accuracy curves of `ude_speed.py`: Pareto fronts, matched-error speedups, plot.

Hand-written (numpy, matplotlib). Each tool's runs are (gradient error, seconds per value +
gradient) points; its Pareto front keeps the points no other run beats in both. The time a
tool needs for error e is read off its front by log-log interpolation between the cheapest
front point with error <= e and the next cheaper one (error > e); a tool with no run at or
below e "never reaches" it (None, with a note).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

TARGETS = (1e-3, 1e-4, 1e-6)
TOOLS = ("sbmlhybrid", "torchdiffeq", "amici_jax")


def load_records(folder: Path) -> list[dict]:
    """Every setting record under `folder` (references excluded)."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*__t*.json"))]


def ok(rec: dict) -> bool:
    return "error" not in rec and math.isfinite(rec.get("rel_grad_err", math.inf))


def pareto(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Non-dominated (error, seconds, key) points, by increasing error (decreasing time)."""
    front, best_t = [], math.inf
    for err, sec, key in sorted(points):
        if sec < best_t:
            front.append((err, sec, key))
            best_t = sec
    return front


def time_at(front: list[tuple[float, float, str]], target: float) -> float | None:
    """Seconds at error `target` on a front (log-log interpolation); None if never reached."""
    reach = [p for p in front if p[0] <= target]
    if not reach:
        return None
    err_a, t_a, _ = reach[-1]  # cheapest point that reaches the target
    above = [p for p in front if p[0] > target]
    if not above or err_a == target:
        return t_a
    err_b, t_b, _ = above[0]
    w = (math.log(target) - math.log(err_a)) / (math.log(err_b) - math.log(err_a))
    return math.exp(math.log(t_a) + w * (math.log(t_b) - math.log(t_a)))


def fronts(records: list[dict], threads: int | None) -> dict:
    """problem -> tool -> Pareto front over the runs with `threads` (None: best of all)."""
    out: dict = {}
    for rec in records:
        if not ok(rec) or (threads is not None and rec["threads"] != threads):
            continue
        key = f"{rec['group']}|{rec['setting']['key']}|t{rec['threads']}"
        out.setdefault(rec["problem"], {}).setdefault(rec["tool"], []).append(
            (rec["rel_grad_err"], rec["seconds"], key))
    return {p: {t: pareto(pts) for t, pts in tools.items()} for p, tools in out.items()}


def speedups(fr: dict, other: str) -> tuple[dict, dict, dict]:
    """(speedup, seconds, notes): problem -> "1e-03" -> time(other) / time(sbmlhybrid)."""
    speed, secs, notes = {}, {}, {}
    for problem, tools in fr.items():
        speed[problem], secs[problem] = {}, {}
        for target in TARGETS:
            tag = f"{target:.0e}"
            ours = time_at(tools.get("sbmlhybrid", []), target)
            theirs = time_at(tools.get(other, []), target)
            secs[problem][tag] = {"sbmlhybrid": ours, other: theirs}
            speed[problem][tag] = theirs / ours if ours and theirs else None
            for tool, t in (("sbmlhybrid", ours), (other, theirs)):
                if t is None:
                    reached = [p[0] for p in tools.get(tool, [])]
                    best = f"{min(reached):.2g}" if reached else "no successful run"
                    notes.setdefault(problem, {})[f"{tool}@{tag}"] = (
                        f"{tool} never reaches gradient error {target:g} (best {best})")
    return speed, secs, notes


def summary(records: list[dict], refs: dict, loadavg: dict) -> dict:
    """The ude_speed.json document: speedups (1 thread, then best of 1 and 2 cores), runs."""
    one, best = fronts(records, 1), fronts(records, None)
    s_td, sec_td, n_td = speedups(one, "torchdiffeq")
    s_jx, sec_jx, n_jx = speedups(one, "amici_jax")
    s2_td, _, _ = speedups(best, "torchdiffeq")
    s2_jx, _, _ = speedups(best, "amici_jax")
    runs = [{k: v for k, v in r.items() if k != "grad"} for r in records]
    failures: dict = {}  # problem -> tool -> kind of failure -> number of settings
    for r in records:
        if r.get("error"):
            kind = r["error"].split(":")[0] if not r["error"].startswith("skipped") else \
                "skipped after a timeout"
            tally = failures.setdefault(r["problem"], {}).setdefault(r["tool"], {})
            tally[kind] = tally.get(kind, 0) + 1
    return {
        "speedup_vs_torchdiffeq": s_td, "speedup_vs_amici_jax": s_jx,
        "speedup_2core_vs_torchdiffeq": s2_td, "speedup_2core_vs_amici_jax": s2_jx,
        "seconds_at_error": {"vs_torchdiffeq": sec_td, "vs_amici_jax": sec_jx},
        "notes": {"torchdiffeq": n_td, "amici_jax": n_jx}, "failures": failures,
        "pareto_1thread": one, "pareto_best_2core": best,
        "references": {p: {k: v for k, v in r.items() if k != "grad"} for p, r in refs.items()},
        "loadavg": loadavg, "runs": runs,
        "definition": "seconds per value+gradient of the NLL over all conditions vs relative "
                      "L2 gradient error against the reference; speedup = other tool's time / "
                      "sbmlhybrid's time at the same error, both read off the tool's Pareto "
                      "front (log-log interpolation); headline with 1 thread per tool, "
                      "'2core' = best of 1 and 2 threads per setting",
    }


def plot(records: list[dict], path: Path) -> None:
    """Time vs gradient error per problem, one colour per tool, front as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = sorted({r["problem"] for r in records})
    fig, axes = plt.subplots(1, len(problems), figsize=(6 * len(problems), 4.5), squeeze=False)
    colours = dict(zip(TOOLS, ("C0", "C3", "C2")))
    for ax, problem in zip(axes[0], problems):
        for tool in TOOLS:
            for threads, marker in ((1, "o"), (2, "^")):
                pts = [(r["rel_grad_err"], r["seconds"]) for r in records
                       if r["problem"] == problem and r["tool"] == tool and ok(r)
                       and r["threads"] == threads]
                if pts:
                    e, s = np.array(pts).T
                    ax.scatter(e, s, c=colours[tool], marker=marker, s=14, alpha=0.6,
                               label=f"{tool} ({threads} thread{'s' * (threads > 1)})")
            front = fronts(records, 1).get(problem, {}).get(tool, [])
            if front:
                e, s, _ = zip(*front)
                ax.plot(e, s, c=colours[tool], lw=1)
        for target in TARGETS:
            ax.axvline(target, c="grey", lw=0.5, ls=":")
        ax.set(xscale="log", yscale="log", xlabel="relative gradient error",
               ylabel="s per value + gradient", title=problem)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
