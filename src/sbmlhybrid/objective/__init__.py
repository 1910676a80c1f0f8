"""Likelihood, gradient and simulation tables of a compiled problem, on any condition subset.

Entry point: `create_objective(problem)` -> `ModelObjective`.
"""

from sbmlhybrid.objective.model_objective import Evaluation, ModelObjective, create_objective
from sbmlhybrid.objective.work import (
    WorkCount,
    WorkCounter,
    install_work_counter,
    work_counter_of,
)

__all__ = ["Evaluation", "ModelObjective", "WorkCount", "WorkCounter", "create_objective",
           "install_work_counter", "work_counter_of"]
