"""Run under ``mpiexec -n 2``: conditions spread over ranks give the serial values to 1e-12.

Checks full evaluations (value, gradient, forward-only value, FIM), a condition subset and
mini-batch batches (through their rescue path), and that rank 0's work counter sees every
condition simulated on any rank; then adjoint gradients at an adjoint step cap every condition
exceeds, so that every rank's share fails capped and is repeated at the user's cap: equal to the
serial gradient, and counted as the serial evaluation of each rank's share counts it. Prints
"MPI-CONDITIONS OK <n> checks" on rank 0.
Usage: mpiexec -n 2 python tests/mpi/conditions_check.py PROBLEM_YAML
"""

import sys

import numpy as np
from mpi4py import MPI

from sbmlhybrid.objective import _step_cap, create_objective
from sbmlhybrid.objective.mpi_conditions import run_distributed
from sbmlhybrid.optimize.minibatch_eval import BatchEvaluator
from sbmlhybrid.problem import load_problem

comm = MPI.COMM_WORLD
objective = create_objective(load_problem(sys.argv[1]))
x = objective.x_nominal_free + 0.05 * np.arange(len(objective.x_nominal_free))
n = len(objective.conditions)
problem = objective.pypesto_problem


def evaluations(obj):
    out = [obj.evaluate(x), obj.evaluate(x, gradient=False), obj.evaluate(x, [0, n - 1])]
    fim = problem.objective(x, sensi_orders=(0, 1, 2))
    with BatchEvaluator(problem) as ev:
        batches = [ev.batch(x, list(range(k, min(n, k + 3)))) for k in range(0, n, 3)]
    return ([(e.fval, e.grad) for e in out] + [(float(fim[0]), np.asarray(fim[2]))]
            + [(f, g) for f, g in batches])


serial = evaluations(objective) if comm.Get_rank() == 0 else None
work_serial = objective.work.snapshot()
objective.work.reset()
distributed = run_distributed(objective, evaluations, comm)
shares = comm.gather(objective.work.count.sensitivity + objective.work.count.forward, root=0)
if comm.Get_rank() == 0:
    assert all(s > 0 for s in shares[1:]), shares  # the workers did simulate
    checks = 0
    for (f1, g1), (f2, g2) in zip(serial, distributed):
        assert abs(f1 - f2) <= 1e-12 * abs(f1), (f1, f2)
        if g1 is not None:
            np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-12 * np.abs(g1).max())
        checks += 1
    # the counter on rank 0 sees every condition simulated on any rank
    assert objective.work.snapshot() == work_serial, (objective.work.snapshot(), work_serial)

# adjoint, capped at 2 steps: each share's capped attempt fails (fail-fast: one condition run)
# and the share is simulated again at the user's cap, on rank 0 as on the workers
_step_cap.ADJOINT_STEP_CAP = 2
adjoint = create_objective(load_problem(sys.argv[1]), sensitivity_method="adjoint")
size = comm.Get_size()
parts = [list(range(n))[r::size] for r in range(size)]
if comm.Get_rank() == 0:
    adjoint_serial = adjoint.evaluate(x)
    per_share = []
    for part in parts:
        adjoint.work.reset()
        adjoint.evaluate(x, part)
        per_share.append(adjoint.work.count.sensitivity)
        assert per_share[-1] == len(part) + 1, (per_share, part)  # capped: 1, repeat: all
    adjoint.work.reset()
adjoint_mpi = run_distributed(adjoint, lambda obj: obj.evaluate(x), comm)
if comm.Get_rank() == 0:
    assert abs(adjoint_mpi.fval - adjoint_serial.fval) <= 1e-12 * abs(adjoint_serial.fval)
    np.testing.assert_allclose(adjoint_mpi.grad, adjoint_serial.grad, rtol=1e-12,
                               atol=1e-12 * np.abs(adjoint_serial.grad).max())
    assert adjoint.work.count.sensitivity == sum(per_share), (adjoint.work.snapshot(),
                                                              per_share)
    checks += 1
    print(f"MPI-CONDITIONS OK {checks} checks, work {work_serial}")
