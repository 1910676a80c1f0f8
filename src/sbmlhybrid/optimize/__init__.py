"""Parameter estimation: multi-start fits through pyPESTO with checkpoint/resume.

Entry point: `fit(objective, FitSettings(...), output=...)` -> `pypesto.Result`, for any
object of the objective protocol (`sbmlhybrid.objective.Objective`).
Mini-batch optimizers over conditions (SGD, momentum, RMSProp, Adam, Adadelta):
`MiniBatchOptimizer` (`sbmlhybrid.optimize.minibatch`), usable as `FitSettings.optimizer`.
Screened polish (`FitSettings.screen_margin`, `screened_polish`): a full-batch optimizer from
the best end points of a multi-start only (`sbmlhybrid.optimize.screen`).
"""

from sbmlhybrid.optimize.counted import CountedOptimizer
from sbmlhybrid.optimize.minibatch import (
    FULLBATCH_OPTIMIZERS,
    MiniBatchOptimizer,
    MiniBatchOptions,
    minibatch_optimizer,
)
from sbmlhybrid.optimize.minibatch_rules import METHODS, SCHEDULES
from sbmlhybrid.optimize.multistart import (
    ENGINES,
    OPTIMIZERS,
    FitSettings,
    fit,
    make_optimizer,
    start_points,
    start_points_and_redraws,
    summary_table,
)
from sbmlhybrid.optimize.screen import screen_starts, screened_polish

__all__ = ["ENGINES", "FULLBATCH_OPTIMIZERS", "METHODS", "OPTIMIZERS", "SCHEDULES",
           "CountedOptimizer", "FitSettings", "MiniBatchOptimizer", "MiniBatchOptions", "fit",
           "make_optimizer", "minibatch_optimizer", "screen_starts", "screened_polish",
           "start_points", "start_points_and_redraws", "summary_table"]
