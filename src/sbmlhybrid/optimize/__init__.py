"""Parameter estimation: multi-start fits through pyPESTO with checkpoint/resume.

Entry point: `fit(objective, FitSettings(...), output=...)` -> `pypesto.Result`.
"""

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
           "summary_table"]
