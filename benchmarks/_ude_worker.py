"""One process of `ude_speed.py`: times one (problem, tool, group) over its tolerances.

Run by the driver as ``python benchmarks/_ude_worker.py SPEC.json``; SPEC names the problem,
tool, group, the settings (loose to tight), threads, output folder and per-call time cap. The
process pins itself to `threads` cores before torch, jax or AMICI start their thread pools,
and writes one JSON record per setting (skipped when present: resumable). Hand-written;
the tools are reached through `_ude_problems` (sbmlhybrid/AMICI), `_ude_torch` (torchdiffeq)
and `_ude_jax` (AMICI's JAX backend).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


class CallTimeout(Exception):
    """A single value+gradient call ran past the cap."""


def _alarm(_signum, _frame):
    raise CallTimeout


def record_path(out: Path, problem: str, tool: str, group: str, key: str, threads: int
                ) -> Path:
    """Where the record of one (problem, tool, group, setting, threads) lives."""
    return out / f"{problem}__{tool}__{group.replace(':', '-')}__{key}__t{threads}.json"


def timed_calls(call, cap_s: float, long_s: float = 20.0, budget_s: float = 30.0) -> dict:
    """Time ``call()`` (value + gradient): a warm-up, then repeats while cheap.

    Args:
        call: Returns (nll, grad (n_free,), extra dict).
        cap_s: Per-call cap in seconds (SIGALRM; raises `CallTimeout`).
        long_s: A warm-up longer than this is the timing itself (no repeat).
        budget_s: Repeat (up to 5 timed calls) while the timed calls stay under this.

    Returns:
        ``seconds`` (median of the timed calls), ``seconds_all``, ``nll``, ``grad`` and
        ``extra`` of the last call, ``loadavg_before`` / ``loadavg_after`` (1, 5, 15 min).
    """
    load0 = [round(v, 2) for v in os.getloadavg()]
    times, out = [], None
    signal.signal(signal.SIGALRM, _alarm)
    for i in range(6):
        signal.alarm(int(np.ceil(cap_s)))
        t0 = time.perf_counter()
        try:
            out = call()
        finally:
            signal.alarm(0)
        dt = time.perf_counter() - t0
        if i == 0 and dt > long_s:
            times = [dt]
            break
        if i > 0:
            times.append(dt)
            if sum(times) > budget_s or len(times) >= 5 or (len(times) >= 3 and dt > 1.0):
                break
    nll, grad, extra = out
    return {"seconds": float(np.median(times)), "seconds_all": [round(t, 4) for t in times],
            "nll": float(nll), "grad": np.asarray(grad, float).tolist(), "extra": extra,
            "loadavg_before": load0, "loadavg_after": [round(v, 2) for v in os.getloadavg()]}


def _amici_calls(up, spec):
    import _ude_problems as P

    def make(setting):
        obj = P.amici_objective(up, setting["rtol"], spec["group"], spec["threads"])

        def call():
            ev = obj.evaluate(up.x)
            return ev.fval, ev.grad, {}
        return call
    return make


def _torch_calls(up, spec):
    import _ude_problems as P
    import _ude_torch as T
    import torch

    torch.set_num_threads(spec["threads"])
    obj = P.amici_objective(up, 1e-6)
    conds = P.condition_ids(obj)
    data, model = P.data_arrays(up, conds), T.build(up, conds)
    mode, method = spec["group"].split(":")

    def make(setting):
        def call():
            r = T.nll_and_grad(model, data, up.x, mode, method, setting["rtol"],
                               setting["rtol"] * up.atol_factor, setting.get("step_size"))
            return r["nll"], r["grad"], {k: r[k] for k in ("nfe_forward", "nfe_backward")}
        return call
    return make


def _jax_calls(up, spec, info: dict):
    import _ude_jax as J

    t0 = time.perf_counter()
    jp = J.build(up, Path(spec["jax_dir"]) / up.name)
    info["export_s"] = round(time.perf_counter() - t0, 2)
    fn, compile_s = J.value_and_grad_fn(jp, up, spec["group"])
    info["jit_compile_s"] = round(compile_s, 2)

    def make(setting):
        def call():
            nll, grad, steps = fn(up.x, setting["rtol"], setting["rtol"] * up.atol_factor)
            return nll, grad, {"num_steps": steps}
        return call
    return make


def run(spec: dict) -> None:
    """Measure every setting of `spec` not yet recorded (see the module docstring)."""
    out = Path(spec["out"])
    todo = [s for s in spec["settings"] if not record_path(
        out, spec["problem"], spec["tool"], spec["group"], s["key"], spec["threads"]).exists()]
    if not todo:
        return
    os.sched_setaffinity(0, set(range(spec["threads"])))
    if spec["tool"] == "amici_jax":
        import _ude_jax as J

        J.configure(spec["threads"])
    import _ude_problems as P

    up = P.load(spec["problem"])
    ref = json.loads((out / f"{spec['problem']}__reference.json").read_text())
    if ref["x_hash"] != up.x_hash:
        raise SystemExit(f"reference of {spec['problem']} was taken at another parameter point")
    g_ref = np.asarray(ref["grad"])
    info: dict = {}
    make = {"sbmlhybrid": lambda: _amici_calls(up, spec),
            "torchdiffeq": lambda: _torch_calls(up, spec),
            "amici_jax": lambda: _jax_calls(up, spec, info)}[spec["tool"]]()
    failed_before = None
    for setting in todo:
        rec = {"problem": spec["problem"], "tool": spec["tool"], "group": spec["group"],
               "setting": setting, "threads": spec["threads"], "x_hash": up.x_hash, **info}
        if failed_before:  # tighter settings of a group that already failed are not tried
            rec["error"] = f"skipped: {failed_before}"
        else:
            try:
                rec.update(timed_calls(make(setting), spec["cap_s"]))
                rec["rel_grad_err"] = P.rel_error(rec["grad"], g_ref)
                rec["nll_diff"] = rec["nll"] - ref["nll"]
                if not np.isfinite(rec["rel_grad_err"]):
                    rec["error"] = "non-finite gradient"
            except CallTimeout:
                rec["error"] = f"timeout: one call > {spec['cap_s']:.0f} s"
                failed_before = rec["error"]
            except Exception as err:  # integration failures of every tool are results
                rec["error"] = f"{type(err).__name__}: {err}"[:300]
        path = record_path(out, spec["problem"], spec["tool"], spec["group"], setting["key"],
                           spec["threads"])
        path.write_text(json.dumps(rec) + "\n")
        print(json.dumps({k: v for k, v in rec.items() if k != "grad"}), flush=True)


def reference(problem: str, out: Path, rtol: float = 1e-12) -> dict:
    """AMICI forward sensitivities at rtol 1e-12 (atol = rtol * atol_factor): the yardstick."""
    import _ude_problems as P

    path = out / f"{problem}__reference.json"
    up = P.load(problem)
    if path.exists():
        rec = json.loads(path.read_text())
        if rec["x_hash"] == up.x_hash:
            return rec
    obj = P.amici_objective(up, rtol, "forward")
    ev = obj.evaluate(up.x)
    rec = {"problem": problem, "x_hash": up.x_hash, "nll": ev.fval, "grad": ev.grad.tolist(),
           "setting": f"AMICI forward sensitivities rtol={rtol:g} atol={rtol * up.atol_factor:g}",
           "n_parameters": len(up.x), "n_conditions": len(obj.conditions),
           "description": up.description}
    path.write_text(json.dumps(rec) + "\n")
    return rec


if __name__ == "__main__":
    if sys.argv[1] == "--reference":
        reference(sys.argv[2], Path(sys.argv[3]))
    else:
        run(json.loads(Path(sys.argv[1]).read_text()))
