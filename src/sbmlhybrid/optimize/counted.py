"""Per-start work of any pyPESTO optimizer.

`CountedOptimizer` wraps an optimizer and stores, in each start's result, the conditions its
objective simulated during that start (``work_sensitivity``, ``work_forward``; see
`sbmlhybrid.objective.work`). It runs inside the engine's worker (thread, process, MPI rank),
on that worker's copy of the problem, so the counts are right for every engine.
"""

from __future__ import annotations

import numpy as np
import pypesto
from pypesto.result import OptimizerResult

from sbmlhybrid.objective.work import work_counter_of
from sbmlhybrid.optimize._delegating import DelegatingOptimizer

__all__ = ["CountedOptimizer"]


class CountedOptimizer(DelegatingOptimizer):
    """An optimizer whose results carry the work of their start.

    Args:
        inner: Any pyPESTO optimizer (fides, scipy, a mini-batch optimizer, ...).
    """

    def minimize(self, problem: pypesto.Problem, x0: np.ndarray | None = None,
                 id: str | None = None, history_options=None,
                 optimize_options=None) -> OptimizerResult:
        """The inner optimizer's `minimize`, with ``work_sensitivity``/``work_forward`` set."""
        counter = work_counter_of(problem.objective)
        before = counter.snapshot() if counter is not None else None
        result = self.inner.minimize(problem=problem, x0=x0, id=id,
                                     history_options=history_options,
                                     optimize_options=optimize_options)
        if counter is not None and before is not None:
            done = counter.snapshot() - before
            result["work_sensitivity"] = int(done.sensitivity)
            result["work_forward"] = int(done.forward)
        return result
