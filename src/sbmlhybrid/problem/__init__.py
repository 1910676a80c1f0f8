"""Loading and validation of PEtab v1 problems and bare SBML models.

Entry point: `load_problem(path, measurements=None)` -> `Problem`.
"""

from sbmlhybrid.problem.load import Problem, SolverSettings, load_problem

__all__ = ["Problem", "SolverSettings", "load_problem"]
