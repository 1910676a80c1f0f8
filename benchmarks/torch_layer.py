"""Overhead of `SimulatorLayer` (forward + backward) over the bare AMICI calls it makes.

Model: petab_problems/binding_chain (5 states, 2 observables), 10 inputs (all kinetic
parameters), the 30 in vitro conditions as the batch, 8 output times, rtol 1e-8.

* bare, forward mode: `run_simulation` with forward sensitivities per condition on ExpData
  prepared outside the timer, reading `rdata.y` and `rdata.sy`;
* bare, adjoint mode: `run_simulation` without sensitivities (reading y), then per
  condition setting pseudo-data and running the adjoint (reading `rdata.sllh`);
* layer: `y = layer(theta); y.backward(g)` including ExpData set-up, tensor conversion,
  einsum / pseudo-data and the autograd machinery.

Timings are interleaved (layer, bare, layer, ...) and the medians compared; the field
`overhead_ratio` is the larger of the two modes. Also recorded: `run_simulations` with 2
OpenMP threads vs the one-thread loop (is batch parallelism worth it here?), and the
forward-vs-adjoint cost for n_in = 10 (the `auto` rule), and AMICI's own solver CPU time per
plain simulation (wall times on a shared machine include waiting for the CPU).
Run from the repository root:
``nice -n 10 .venv/bin/python benchmarks/torch_layer.py`` -> benchmarks/results/torch_layer.json.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import amici.sim.sundials as asd
import numpy as np
import torch
from _common import write_json

from sbmlhybrid.layers import layer_from_problem
from sbmlhybrid.problem import SolverSettings

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "torch_layer.json"
IDS = ["lk_on", "lk_off", "lk_f1", "lk_r1", "lk_f2", "lk_r2", "lk_cat", "a_seed", "a_mid",
       "a_dist"]
REPS = int(os.environ.get("BENCH_REPS", "15"))


def bare_forward(sim, edatas) -> None:
    for e in edatas:
        r = asd.run_simulation(sim.model, sim._fsa, e)
        _ = r.y, r.sy


def bare_adjoint(sim, edatas, g: np.ndarray) -> None:
    ys = []
    for e in edatas:
        ys.append(asd.run_simulation(sim.model, sim._plain, e).y)
    ones = np.ones(ys[0].size)
    for e, y, gi in zip(edatas, ys, g):
        e.set_measurements((y + gi).ravel())
        e.set_noise_scales(ones)
        _ = asd.run_simulation(sim.model, sim._asa, e).sllh
    for e in edatas:
        e.clear_observations()


def timeit(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> dict:
    torch.set_num_threads(1)
    solver = SolverSettings(rtol=1e-8, atol=1e-10, max_steps=10_000)
    yaml = REPO / "petab_problems" / "binding_chain" / "problem.yaml"
    times = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0]
    out: dict = {"model": "binding_chain", "n_inputs": len(IDS), "n_timepoints": len(times),
                 "rtol": solver.rtol, "reps": REPS, "machine": platform.node(),
                 "load_avg_start": os.getloadavg()[0]}
    ratios = {}
    for mode in ("forward", "adjoint"):
        layer = layer_from_problem(yaml, IDS, timepoints=times, sensitivity=mode, solver=solver)
        sim = layer.simulator
        theta0 = layer.default_inputs()
        batch = theta0.shape[0]
        g = torch.from_numpy(np.random.default_rng(0).normal(size=(batch, len(times), 2)))
        rows = np.arange(batch)

        def run_layer(layer=layer, theta0=theta0, g=g):
            theta = theta0.clone().requires_grad_(True)
            layer(theta).backward(g)

        edatas = [asd.ExpData(e) for e in sim.edatas(theta0.numpy(), rows, None, mode ==
                                                     "forward")]
        if mode == "forward":
            def run_bare(sim=sim, edatas=edatas):
                bare_forward(sim, edatas)
        else:
            g_np = g.numpy()

            def run_bare(sim=sim, edatas=edatas, g_np=g_np):
                bare_adjoint(sim, edatas, g_np)
        run_layer(), run_bare()  # warm-up
        t_layer, t_bare = [], []
        for _ in range(REPS):
            t_layer.append(timeit(run_layer))
            t_bare.append(timeit(run_bare))
        ratio = float(np.median(t_layer) / np.median(t_bare))
        ratios[mode] = ratio
        out[mode] = {"batch": batch, "layer_ms_median": 1e3 * float(np.median(t_layer)),
                     "bare_ms_median": 1e3 * float(np.median(t_bare)),
                     "layer_ms_min": 1e3 * float(np.min(t_layer)),
                     "bare_ms_min": 1e3 * float(np.min(t_bare)),
                     "ms_per_condition_layer": 1e3 * float(np.median(t_layer)) / batch,
                     "overhead_ratio": ratio,
                     "overhead_ratio_min": float(np.min(t_layer) / np.min(t_bare))}
        print(mode, out[mode])
        if mode == "forward":  # forward-only simulation cost and thread comparison
            e_plain = [asd.ExpData(e) for e in sim.edatas(theta0.numpy(), rows, None, False)]
            t_loop, t_thr = [], []
            for _ in range(REPS):
                t_loop.append(timeit(lambda sim=sim, e_plain=e_plain: [
                    asd.run_simulation(sim.model, sim._plain, e) for e in e_plain]))
                t_thr.append(timeit(lambda sim=sim, e_plain=e_plain: asd.run_simulations(
                    sim.model, sim._plain, e_plain, num_threads=2)))
            cpu = [asd.run_simulation(sim.model, sim._plain, e).cpu_time for e in e_plain]
            out["simulation_only"] = {
                "amici_cpu_ms_per_condition_median": float(np.median(cpu)),
                "ms_per_condition": 1e3 * float(np.median(t_loop)) / batch,
                "loop_ms_median": 1e3 * float(np.median(t_loop)),
                "run_simulations_2_threads_ms_median": 1e3 * float(np.median(t_thr)),
                "threads_speedup": float(np.median(t_loop) / np.median(t_thr))}
            print(out["simulation_only"])
    out["overhead_ratio"] = max(ratios.values())
    out["adjoint_over_forward_time"] = (out["adjoint"]["layer_ms_median"]
                                        / out["forward"]["layer_ms_median"])
    out["load_avg_end"] = os.getloadavg()[0]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_json(OUT.name, out)
    return out


if __name__ == "__main__":
    res = main()
    print(f"overhead_ratio = {res['overhead_ratio']:.3f}")
