"""The 17 problems of ../shared/benchmark_models as a regression suite (issue 13, point 3).

Per problem, in a child process of its own (a crash or a hang fails that problem only):

* ``load_s``: `load_problem` (parse + validation); ``compile``: `compile_problem` wall time
  and whether the build came from the compile cache (``cache_hit``).
* ``llh`` at the nominal parameters (priors excluded), default solver settings (rtol 1e-8,
  atol 1e-16): passed when ``|llh - reference| <= abs_tolerance`` of reference_values.tsv.
* ``gradient`` at ``x = x_nominal + d`` (PEtab scale; ``d ~ N(0, PERTURBATION)`` from
  ``default_rng(SEED)``, times ``max(|x|, 1)`` on linear scale; clipped into the bounds less a
  margin): away from the optimum, so gradients stand above FD noise. Forward and adjoint
  gradients vs central finite differences, all with tight tolerances (`FD_SOLVER`: FD of an
  adaptive solver is only as smooth as its error control); step `FD_STEP` (times
  ``max(|x|, 1)`` on linear scale) for all components. A component failing with it gets the
  step ladder `FD_STEPS` (on linear scale without the steps whose ``x +- h`` leave the
  bounds; log-scale parameters take all: the point may sit at a bound), and the FD of
  the most consistent pair of consecutive steps (least ``|fd_a - fd_b|`` in units of the
  criterion below; the smaller step's value) is the second reference (``fd_ladder``: all
  values, the chosen step, its ``inconsistency``; > 1 means no two steps agree within the
  criterion, i.e. FD did not converge). Why: the FD error is ``~ noise(f) / h`` and
  ``noise(f) ~ rtol * |f|``, so a fixed small step fails where ``|f|`` is large compared with
  a gradient component (Beer_MolBioSystems2014: ``f ~ 1.3e5``, ``df/dlog10 kdim_typeIDT5 =
  0.0208``; FD 0.0148 at h = 1e-5, 0.0192 at 1e-4, 0.02082 at 1e-2 -- the sensitivities were
  right), and a large one where the objective is not smooth (a switch time crossing a
  measurement time). Criterion (AMICI's ``check_derivatives``), elementwise:
  ``|g - fd| <= CHECK_ATOL + CHECK_RTOL * |fd|`` with either reference; ``passed``: forward
  and adjoint both pass.
  Gradients with the default tolerances are compared with the same FD for information
  (``*_default_tolerances``).
* ``timing``: medians of `TIMING_REPEATS` evaluations at the nominal point, default settings:
  objective only (``simulation_s``), with forward / adjoint gradient; load average around each.

Records go to ``benchmarks/results/benchmark_collection/<problem>.json`` as each problem
finishes; a rerun skips problems with a record (``--force``: redo, ``--retry-failed``: redo
records with an error). ``benchmarks/results/benchmark_collection.json`` is rebuilt from the
records of all 17 problems at the end of every call (those without one: ``not_run``).

Run: ``flock /tmp/sbmlhybrid-cpu.lock .venv/bin/python benchmarks/benchmark_collection.py
[--problems Boehm_JProteomeRes2014 ...] [--force] [--retry-failed] [--timeout 3600]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SHARED, git_commit, load1, write_json  # noqa: E402

BENCHMARKS = SHARED / "benchmark_models"
REFERENCE = BENCHMARKS / "reference_values.tsv"
RECORDS = RESULTS / "benchmark_collection"
SEED = 0
PERTURBATION = 0.05
FD_STEP = 1e-5
FD_STEPS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)  # the ladder, largest first
CLIP_MARGIN = 3e-4  # times max(|x|, 1): the perturbed point's distance from the bounds
FD_SOLVER = {"rtol": 1e-12, "atol": 1e-16, "max_steps": 1_000_000}
CHECK_ATOL, CHECK_RTOL = 1e-3, 1e-2
TIMING_REPEATS = 3
DEFAULT_TIMEOUT_S = 3600.0


def reference_rows() -> list[dict[str, Any]]:
    """Rows of reference_values.tsv (problem, problem_yaml, llh_at_nominal, abs_tolerance...)."""
    return pd.read_csv(REFERENCE, sep="\t").to_dict("records")


def provenance() -> dict[str, Any]:
    """Commit, command line and time of this run."""
    return {"git_commit": git_commit(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def timed(fn: Callable[[], Any], repeats: int = TIMING_REPEATS) -> dict[str, Any]:
    """Median wall time of `repeats` calls of `fn`, with the load average around them."""
    before, seconds = load1(), []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return {"median_s": statistics.median(seconds), "all_s": seconds, "load1_before": before,
            "load1_after": load1()}


def unit(objective: Any, x: np.ndarray) -> np.ndarray:
    """Size of a unit step per free parameter: 1 on log scale, max(|x|, 1) on linear scale."""
    par = objective.problem.petab_problem.parameter_df
    lin = np.array([par.loc[i, "parameterScale"] == "lin" for i in objective.x_free_ids])
    return np.where(lin, np.maximum(np.abs(x), 1.0), 1.0)


def perturbed_point(objective: Any, seed: int = SEED) -> np.ndarray:
    """Nominal free parameters + seeded Gaussian perturbation, inside the bounds (PEtab scale)."""
    x0 = objective.x_nominal_free
    size = unit(objective, x0)
    x = x0 + np.random.default_rng(seed).normal(scale=PERTURBATION, size=len(x0)) * size
    lb, ub = bounds(objective)
    return np.clip(x, lb + CLIP_MARGIN * size, ub - CLIP_MARGIN * size)


def bounds(objective: Any) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the free parameters (PEtab scale)."""
    return (np.asarray(objective.pypesto_problem.lb, dtype=float),
            np.asarray(objective.pypesto_problem.ub, dtype=float))


def fd_gradient(objective: Any, x: np.ndarray, step: float,
                indices: list[int] | None = None) -> np.ndarray:
    """Central finite differences of the objective at `x` (components `indices`, default all;
    the others are nan); the step is scaled by max(|x|, 1) on linear scale."""
    steps = step * unit(objective, x)
    fd = np.full(len(x), np.nan)
    for i in range(len(x)) if indices is None else indices:
        e = np.zeros(len(x))
        e[i] = steps[i]
        up = objective.evaluate(x + e, gradient=False).fval
        down = objective.evaluate(x - e, gradient=False).fval
        fd[i] = (up - down) / (2 * steps[i])
    return fd


def inconsistency(a: float, b: float) -> float:
    """|a - b| in units of the check criterion at the larger of |a|, |b| (inf if not finite)."""
    if not (np.isfinite(a) and np.isfinite(b)):
        return float("inf")
    return float(abs(a - b) / (CHECK_ATOL + CHECK_RTOL * max(abs(a), abs(b))))


def most_consistent(values: dict[float, float]) -> tuple[float, float]:
    """The step whose FD agrees best with that of the next larger step of `values`
    ({step: fd}; non-finite values are left out), and that `inconsistency`; a single finite
    value: its step, inf; none: the smallest step, inf."""
    steps = sorted((h for h, v in values.items() if np.isfinite(v)), reverse=True)
    pairs = [(inconsistency(values[a], values[b]), b) for a, b in zip(steps, steps[1:])]
    if not pairs:
        return (steps[0] if steps else min(values)), float("inf")
    score, step = min(pairs, key=lambda p: p[0])  # ties: the larger steps (less noise)
    return step, score


def fd_ladder(objective: Any, x: np.ndarray, fd: np.ndarray,
              indices: list[int]) -> dict[int, dict[str, Any]]:
    """Central FD of components `indices` over the steps `FD_STEPS` that stay in the bounds
    (`fd`: the values at `FD_STEP`; a linear-scale parameter only where ``x +- h`` is in the
    bounds, a log-scale one stays positive anyway), and the most consistent step of each."""
    size, (lb, ub) = unit(objective, x), bounds(objective)
    par = objective.problem.petab_problem.parameter_df
    lin = [par.loc[i, "parameterScale"] == "lin" for i in objective.x_free_ids]
    out = {}
    for i in indices:
        values = {}
        for step in FD_STEPS:
            if step == FD_STEP:
                values[step] = float(fd[i])
            elif not lin[i] or lb[i] <= x[i] - step * size[i] <= x[i] + step * size[i] <= ub[i]:
                values[step] = float(fd_gradient(objective, x, step, [i])[i])
        chosen, score = most_consistent(values)
        out[i] = {"fd": {f"{h:g}": v for h, v in values.items()}, "step": chosen,
                  "value": values[chosen], "inconsistency": score}
    return out


def compare(grad: np.ndarray, fds: list[np.ndarray], ids: list[str]) -> dict[str, Any]:
    """Elementwise check of `grad` against FD gradients: a component passes with any of them."""
    ok = np.zeros(len(grad), dtype=bool)
    for fd in fds:
        with np.errstate(invalid="ignore"):
            ok |= np.abs(grad - fd) <= CHECK_ATOL + CHECK_RTOL * np.abs(fd)
    err = np.abs(grad - fds[0])
    worst = int(np.argmax(np.nan_to_num(err / (CHECK_ATOL + CHECK_RTOL * np.abs(fds[0])),
                                        nan=np.inf)))
    return {"passed": bool(ok.all()), "n_failed": int((~ok).sum()),
            "failed_ids": [ids[i] for i in np.flatnonzero(~ok)],
            "max_abs_error": float(np.nanmax(err)), "worst_id": ids[worst],
            "worst": {"grad": float(grad[worst]), "fd": float(fds[0][worst])},
            "grad": grad.tolist()}


def set_solver(objective: Any, **settings: Any) -> dict[str, Any]:
    """Set solver settings of `objective` (re-applied to AMICI); returns the previous ones."""
    old = {k: getattr(objective.problem.solver, k) for k in settings}
    for key, value in settings.items():
        setattr(objective.problem.solver, key, value)
    objective.apply_solver_settings()
    return old


def set_method(objective: Any, method: str) -> None:
    """Switch the objective to forward or adjoint sensitivities."""
    objective.sensitivity_method = method
    objective.apply_solver_settings()


def gradients(objective: Any, x: np.ndarray, out: dict[str, Any]) -> dict[str, Any]:
    """Forward and adjoint gradient at `x` (current tolerances), or the error message of
    each; their wall times go into `out` (``<method>_s``)."""
    grads: dict[str, Any] = {}
    for method in ("forward", "adjoint"):
        set_method(objective, method)
        start = time.perf_counter()
        try:
            grads[method] = np.asarray(objective.evaluate(x, gradient=True).grad)
        except Exception as err:  # recorded in the comparison; the other method still runs
            grads[method] = f"{type(err).__name__}: {err}"[:2000]
        out[f"{method}_s"] = time.perf_counter() - start
    return grads


def _compare_all(grads: dict[str, Any], fds: list[np.ndarray], ids: list[str],
                 suffix: str = "") -> dict[str, Any]:
    """`compare` per method (a method whose gradient failed: its error, not passed)."""
    return {f"{m}{suffix}": {"passed": False, "error": g} if isinstance(g, str)
            else compare(g, fds, ids) for m, g in grads.items()}


def gradient_check(objective: Any) -> dict[str, Any]:
    """Forward and adjoint gradients vs central FD at the perturbed point (see module doc)."""
    x = perturbed_point(objective)
    ids = objective.x_free_ids
    out: dict[str, Any] = {"x": x.tolist(), "x_ids": ids}
    default_grads = gradients(objective, x, {})
    old = set_solver(objective, **FD_SOLVER)
    try:
        start = time.perf_counter()
        fd = fd_gradient(objective, x, FD_STEP)
        out["fd_s"] = time.perf_counter() - start
        out["fd"] = fd.tolist()
        grads = gradients(objective, x, out)
        failing = sorted({int(i) for g in grads.values() if not isinstance(g, str)
                          for i in np.flatnonzero(~(np.abs(g - fd) <= CHECK_ATOL
                                                    + CHECK_RTOL * np.abs(fd)))})
        fds = [fd]
        if failing:
            ladder = fd_ladder(objective, x, fd, failing)
            fds.append(fd.copy())
            fds[1][failing] = [ladder[i]["value"] for i in failing]
            out["fd_ladder"] = {ids[i]: ladder[i] for i in failing}
    finally:
        set_solver(objective, **old)
    out.update(_compare_all(grads, fds, ids))
    out.update(_compare_all(default_grads, fds, ids, "_default_tolerances"))
    out["passed"] = bool(out["forward"]["passed"] and out["adjoint"]["passed"])
    return out


def timings(objective: Any) -> dict[str, Any]:
    """Objective-only and objective+gradient timings at the nominal point (default settings)."""
    out: dict[str, Any] = {}
    for key, method in (("simulation_s", None), ("gradient_forward_s", "forward"),
                        ("gradient_adjoint_s", "adjoint")):
        if method:
            set_method(objective, method)
        try:
            out[key] = timed(lambda g=bool(method): objective.evaluate(None, gradient=g))
        except Exception as err:  # e.g. a failed integration: recorded, the others still run
            out[key] = {"error": f"{type(err).__name__}: {err}"[:2000]}
    return out


def _stage(rec: dict[str, Any], stage: str, fn: Callable[[], Any]) -> Any:
    """Run one stage; its exception goes into ``rec["errors"][stage]`` (returns None then)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    except Exception as err:  # recorded, not raised: one problem must not end the run
        rec["errors"][stage] = f"{type(err).__name__}: {err}"[:4000]
        rec.setdefault("tracebacks", {})[stage] = traceback.format_exc()[-4000:]
        return None


def _setup(row: dict[str, Any], rec: dict[str, Any]) -> Any:
    """Load, compile and wrap the problem (timed); returns the objective."""
    from sbmlhybrid.build import compile_problem
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import load_problem

    start = time.perf_counter()
    problem = load_problem(BENCHMARKS / row["problem"] / row["problem_yaml"])
    rec["load_s"] = time.perf_counter() - start
    before = load1()
    compiled = compile_problem(problem)
    rec["compile"] = {"seconds": compiled.seconds, "cache_hit": compiled.hit,
                      "module": compiled.module_name, "load1_before": before,
                      "load1_after": load1()}
    objective = create_objective(problem, compiled)
    rec.update(n_free=len(objective.x_free_ids), n_conditions=len(objective.conditions),
               default_sensitivity_method=objective.sensitivity_method)
    return objective


def _llh(row: dict[str, Any], objective: Any) -> dict[str, Any]:
    """llh at the nominal point vs the reference value of `row`."""
    start = time.perf_counter()
    llh = objective.llh()
    ref, tol = float(row["llh_at_nominal"]), float(row["abs_tolerance"])
    solver = objective.problem.solver
    return {"value": llh, "reference": ref, "abs_tolerance": tol, "abs_error": abs(llh - ref),
            "passed": bool(abs(llh - ref) <= tol), "seconds": time.perf_counter() - start,
            "solver": {"rtol": solver.rtol, "atol": solver.atol}}


def run_problem(row: dict[str, Any]) -> dict[str, Any]:
    """The record of one problem; a failing stage leaves its error in ``errors``."""
    start = time.perf_counter()
    rec: dict[str, Any] = {"problem": row["problem"], "errors": {},
                           "provenance": provenance()}
    objective = _stage(rec, "setup", lambda: _setup(row, rec))
    if objective is not None:
        rec["llh"] = _stage(rec, "llh", lambda: _llh(row, objective))
        method = objective.sensitivity_method
        rec["timing"] = _stage(rec, "timing", lambda: timings(objective))
        rec["errors"].update({f"timing {k}": v["error"] for k, v in (rec["timing"] or {}).items()
                              if "error" in v})
        rec["gradient"] = _stage(rec, "gradient", lambda: gradient_check(objective))
        set_method(objective, method)
    rec["wall_s"] = time.perf_counter() - start
    return rec


def record_path(name: str) -> Path:
    """Checkpoint file of one problem."""
    return RECORDS / f"{name}.json"


def run_in_child(row: dict[str, Any], timeout: float) -> dict[str, Any]:
    """`run_problem` in a fresh process (a segfault or hang fails this problem only)."""
    name = str(row["problem"])
    path = record_path(name)
    path.unlink(missing_ok=True)
    start = time.perf_counter()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
    with tempfile.TemporaryFile("w+") as log, subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True) as proc:
        try:
            detail = f"exit status {proc.wait(timeout)}"
        except subprocess.TimeoutExpired:  # the child and its compiler processes
            os.killpg(proc.pid, signal.SIGKILL)
            detail = f"timed out after {timeout:.0f} s (--timeout)"
        log.seek(0)
        detail += f"; stderr tail: {log.read()[-2000:]}"
    if path.exists():
        return json.loads(path.read_text())
    rec = {"problem": name, "errors": {"process": f"child process wrote no record: {detail}"},
           "provenance": provenance(), "wall_s": time.perf_counter() - start}
    write_record(rec)
    return rec


def write_record(rec: dict[str, Any]) -> None:
    """Write a problem's record atomically (the checkpoint a rerun skips)."""
    RECORDS.mkdir(parents=True, exist_ok=True)
    path = record_path(rec["problem"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1, default=float) + "\n")
    tmp.replace(path)


def _get(rec: Any, *keys: str) -> Any:
    """``rec[k1][k2]...``, or None where a level is missing."""
    for key in keys:
        rec = rec.get(key) if isinstance(rec, dict) else None
    return rec


def problem_summary(rec: dict[str, Any]) -> dict[str, Any]:
    """One entry per problem in the summary (full detail stays in its record)."""
    out = {f"grad_{m}_passed": bool(_get(rec, "gradient", m, "passed"))
           for m in ("forward", "adjoint")}
    out["llh_passed"] = bool(_get(rec, "llh", "passed"))
    fields = ("llh=llh.value llh_abs_error=llh.abs_error load_s=load_s compile_s=compile.seconds "
              "compile_cache_hit=compile.cache_hit simulation_s=timing.simulation_s.median_s "
              "gradient_forward_s=timing.gradient_forward_s.median_s "
              "gradient_adjoint_s=timing.gradient_adjoint_s.median_s fd_s=gradient.fd_s "
              "grad_forward_failed_ids=gradient.forward.failed_ids n_free=n_free "
              "grad_adjoint_failed_ids=gradient.adjoint.failed_ids n_conditions=n_conditions "
              "errors=errors git_commit=provenance.git_commit date=provenance.date wall_s=wall_s")
    pairs = (field.split("=") for field in fields.split())
    return {**out, **{key: _get(rec, *path.split(".")) for key, path in pairs}}


def summarize(rows: list[dict[str, Any]], load_before: float) -> dict[str, Any]:
    """The summary JSON over all reference problems, from their records."""
    problems, not_run = {}, []
    for row in rows:
        path = record_path(str(row["problem"]))
        if path.exists():
            problems[row["problem"]] = problem_summary(json.loads(path.read_text()))
        else:
            not_run.append(row["problem"])
    done = problems.values()
    return {
        "llh_passed": sum(p["llh_passed"] for p in done), "llh_total": len(rows),
        "grad_passed": sum(p["grad_forward_passed"] and p["grad_adjoint_passed"] for p in done),
        "grad_total": len(rows),
        "grad_forward_passed": sum(p["grad_forward_passed"] for p in done),
        "grad_adjoint_passed": sum(p["grad_adjoint_passed"] for p in done),
        "failed": sorted(k for k, p in problems.items() if not (
            p["llh_passed"] and p["grad_forward_passed"] and p["grad_adjoint_passed"])),
        "not_run": not_run, "with_errors": sorted(k for k, p in problems.items() if p["errors"]),
        "protocol": {"seed": SEED, "perturbation": PERTURBATION, "fd_step": FD_STEP,
                     "fd_steps": list(FD_STEPS), "clip_margin": CLIP_MARGIN, "fd_solver": FD_SOLVER,
                     "check_atol": CHECK_ATOL, "check_rtol": CHECK_RTOL,
                     "timing_repeats": TIMING_REPEATS, "records": str(RECORDS.name)},
        "provenance": provenance(), "load1_before": load_before, "load1_after": load1(),
        "problems": problems,
    }


def main(argv: list[str] | None = None) -> None:
    """Run the selected problems (each in a child process), then rebuild the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", help="problem names (default: all 17)")
    parser.add_argument("--force", action="store_true", help="redo problems with a record")
    parser.add_argument("--retry-failed", action="store_true", help="redo records with an error")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="s per problem")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rows = reference_rows()
    by_name = {str(r["problem"]): r for r in rows}
    if args.worker:
        write_record(run_problem(by_name[args.worker]))
        return
    unknown = sorted(set(args.problems or []) - set(by_name))
    if unknown:
        parser.error(f"unknown problems {unknown}; known: {sorted(by_name)}")
    load_before = load1()
    cost = {n: r["n_estimated_parameters"] * r["n_condition_rows"] for n, r in by_name.items()}
    for name in args.problems or sorted(by_name, key=cost.__getitem__):  # cheap ones first
        path = record_path(name)
        if path.exists() and not args.force:
            if not (args.retry_failed and json.loads(path.read_text()).get("errors")):
                print(f"{name}: record exists, skipped")
                continue
        rec = run_in_child(by_name[name], args.timeout)
        print(f"{name}: {json.dumps(problem_summary(rec), default=float)}", flush=True)
    write_json("benchmark_collection.json", summarize(rows, load_before))


if __name__ == "__main__":
    main()
