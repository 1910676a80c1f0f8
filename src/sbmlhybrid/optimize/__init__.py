"""Parameter estimation: multi-start fits through pyPESTO with checkpoint/resume.

Entry point: `fit(objective, FitSettings(...), output=...)` -> `pypesto.Result`.
Mini-batch optimizers over conditions (SGD, momentum, RMSProp, Adam, Adadelta):
`MiniBatchOptimizer` (`sbmlhybrid.optimize.minibatch`), usable as `FitSettings.optimizer`.
"""

from sbmlhybrid.optimize.minibatch import (
    MiniBatchAdadelta,
    MiniBatchAdam,
    MiniBatchAdamClassic,
    MiniBatchMomentum,
    MiniBatchOptimizer,
    MiniBatchOptions,
    MiniBatchRMSProp,
    MiniBatchSGD,
    MiniBatchVanilla,
    minibatch_optimizer,
)
from sbmlhybrid.optimize.multistart import (
    ENGINES,
    OPTIMIZERS,
    FitSettings,
    fit,
    make_optimizer,
    start_points,
    summary_table,
)

__all__ = ["ENGINES", "OPTIMIZERS", "FitSettings", "fit", "make_optimizer", "start_points",
           "summary_table", "MiniBatchOptimizer", "MiniBatchOptions", "MiniBatchSGD",
           "MiniBatchVanilla", "MiniBatchMomentum", "MiniBatchRMSProp", "MiniBatchAdam",
           "MiniBatchAdamClassic", "MiniBatchAdadelta", "minibatch_optimizer"]
