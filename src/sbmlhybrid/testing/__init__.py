"""Runners of the official test suites: PEtab v2 (SBML cases) and the three PEtab SciML
suites (``ml_model_import``, ``initialization``, ``sciml_problem_import``).

Each runner loads a case through the toolkit's public path, compares with the case's
reference and returns a `CaseResult`: the measured errors next to the suite tolerances (or
the stricter ones a runner states). Pass/fail against those tolerances is asserted in the
tests (``tests/test_petab_v2.py``, ``tests/test_sciml_nets.py``,
``tests/test_sciml_problems.py``) and counted by ``benchmarks/petab_sciml_conformance.py``,
not decided here. Hand-written; nothing in the feature packages imports this package.
"""

from sbmlhybrid.testing.petab_v2 import ATOL, RTOL, check_v2_case, run_v2_suite
from sbmlhybrid.testing.results import OUTCOMES, CaseResult, Check
from sbmlhybrid.testing.sciml_nets import (
    DEFAULT_ATOL,
    DROPOUT_Z,
    check_initialization_case,
    check_ml_model_import_case,
    run_conformance,
)
from sbmlhybrid.testing.sciml_problems import (
    GRAD_RTOL,
    check_sciml_problem_case,
    compare_case,
    run_problem_suite,
)

__all__ = ["ATOL", "DEFAULT_ATOL", "DROPOUT_Z", "GRAD_RTOL", "OUTCOMES", "RTOL", "CaseResult",
           "Check", "check_initialization_case", "check_ml_model_import_case",
           "check_sciml_problem_case", "check_v2_case", "compare_case", "run_conformance",
           "run_problem_suite", "run_v2_suite"]
