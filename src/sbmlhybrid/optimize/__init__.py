"""Parameter estimation: multi-start fits through pyPESTO with checkpoint/resume.

Entry point: `fit(objective, FitSettings(...), output=...)` -> `pypesto.Result`, for any
object of the objective protocol (`sbmlhybrid.objective.Objective`).
Mini-batch optimizers over conditions (SGD, momentum, RMSProp, Adam, Adadelta):
`MiniBatchOptimizer` (`sbmlhybrid.optimize.minibatch`), usable as `FitSettings.optimizer`.
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

__all__ = ["ENGINES", "FULLBATCH_OPTIMIZERS", "METHODS", "OPTIMIZERS", "SCHEDULES",
           "CountedOptimizer", "FitSettings", "MiniBatchOptimizer", "MiniBatchOptions", "fit",
           "make_optimizer", "minibatch_optimizer", "start_points",
           "start_points_and_redraws", "summary_table"]
