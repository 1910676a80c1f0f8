"""Likelihood, gradient and simulation tables of a compiled problem, on any condition subset.

Entry point: `create_objective(problem)` -> `ModelObjective`.
"""

from sbmlhybrid.objective.model_objective import Evaluation, ModelObjective, create_objective

__all__ = ["Evaluation", "ModelObjective", "create_objective"]
