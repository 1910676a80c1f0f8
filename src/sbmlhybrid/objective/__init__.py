"""Likelihood, gradient and simulation tables of a compiled problem, on any condition subset.

Entry point: `create_objective(problem)` -> `ModelObjective` (PEtab v1, bare SBML, hybrid) or
`PetabV2Objective`; every kind of problem (SciML included) through `sbmlhybrid.create_objective`.
`Objective` is the protocol all of them implement (`sbmlhybrid.objective.protocol`).
"""

from sbmlhybrid.objective._common import apply_solver_settings, free_vector, lookup_indices
from sbmlhybrid.objective.model_objective import Evaluation, ModelObjective, create_objective
from sbmlhybrid.objective.protocol import EvaluateObjective, Objective, supports_subsets
from sbmlhybrid.objective.work import (
    WorkCount,
    WorkCounter,
    install_work_counter,
    work_counter_of,
)

__all__ = ["EvaluateObjective", "Evaluation", "ModelObjective", "Objective", "WorkCount",
           "WorkCounter", "apply_solver_settings", "create_objective", "free_vector",
           "install_work_counter", "lookup_indices", "supports_subsets", "work_counter_of"]
