"""Speedup of one full evaluation when its conditions are spread over MPI ranks.

Runs under ``mpiexec -n K``: rank 0 times the full gradient evaluation of the Boehm-dose
N = 256 problem alone (the other ranks idle), then with every rank simulating a share of the
conditions (`sbmlhybrid.objective.mpi_conditions.run_distributed`), and checks that the two
agree to 1e-12. On a 2-core machine K = 2 is the most that means anything. Timings count only
at load average <= 2; the load is stored.

Run alone: ``mpiexec -n 2 .venv/bin/python benchmarks/mpi_conditions.py`` ->
benchmarks/results/mpi_conditions.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_commit, load1, write_json  # noqa: E402
from minibatch_scale import objective_of  # noqa: E402

from sbmlhybrid.objective.mpi_conditions import run_distributed  # noqa: E402

REPS = 5
comm = MPI.COMM_WORLD
objective = objective_of("n256")
x = objective.x_nominal_free


def timing(obj) -> dict:
    obj.evaluate(x)  # warm-up
    before, t0 = load1(), time.perf_counter()
    for _ in range(REPS):
        ev = obj.evaluate(x)
    return {"s": (time.perf_counter() - t0) / REPS, "load1_before": before,
            "load1_after": load1(), "fval": ev.fval, "grad": ev.grad}


serial = timing(objective) if comm.Get_rank() == 0 else None
comm.Barrier()
distributed = run_distributed(objective, timing, comm)
if comm.Get_rank() == 0:
    assert abs(serial["fval"] - distributed["fval"]) <= 1e-12 * abs(serial["fval"])
    np.testing.assert_allclose(distributed["grad"], serial["grad"], rtol=1e-12,
                               atol=1e-12 * np.abs(serial["grad"]).max())
    for t in (serial, distributed):
        t.pop("grad")
    write_json("mpi_conditions.json", {
        "command": f"mpiexec -n {comm.Get_size()} " + " ".join(sys.argv),
        "commit": git_commit(), "ranks": comm.Get_size(), "problem": "boehm_doses N=256",
        "serial": serial, "distributed": distributed,
        "speedup": serial["s"] / distributed["s"]})
