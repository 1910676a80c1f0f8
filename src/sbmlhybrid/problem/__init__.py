"""Loading and validation of PEtab v1 problems and bare SBML models.

Entry point: `load_problem(path, measurements=None)` -> `Problem`.
"""

from sbmlhybrid.problem._common import load_sbml, read_tsv, solver_settings
from sbmlhybrid.problem.load import Problem, SolverSettings, load_problem, problem_from_tables

__all__ = ["Problem", "SolverSettings", "load_problem", "load_sbml", "problem_from_tables",
           "read_tsv", "solver_settings"]
