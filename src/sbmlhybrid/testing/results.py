"""What a suite runner reports for one case: measured errors next to the tolerances.

No verdict is stored here: whether a case passes (its runner finished, ``outcome == "ran"``,
and every `Check` has ``error <= tolerance``) is asserted by the tests (``tests/``) and
counted by ``benchmarks/petab_sciml_conformance.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: ``CaseResult.outcome`` values: the case ran and was compared; it could not be run
#: (message: the error); the problem uses a feature the toolkit refuses (NotSupportedError).
OUTCOMES = ("ran", "error", "not_supported")


@dataclass
class Check:
    """One compared quantity of a case.

    Attributes:
        name: What was compared (``llh``, ``simulations``, ``rep1.output0``, ...).
        error: Our deviation from the reference in the unit the tolerance is given in
            (``inf`` when the two cannot be compared, e.g. different shapes or rows).
        tolerance: The tolerance of the suite (or the stricter one stated by the runner).
    """

    name: str
    error: float
    tolerance: float


@dataclass
class CaseResult:
    """Outcome of one case of an official test suite.

    Attributes:
        suite: Suite name (``ml_model_import``, ``initialization``,
            ``sciml_problem_import``, ``petab_v2``).
        case: Case folder name.
        outcome: One of `OUTCOMES`.
        checks: The compared quantities (empty unless ``outcome == "ran"``).
        message: Why the case could not be run, or notes on how it was compared.
        values: Numbers worth recording (e.g. ``llh``, ``llh_ref``).
        seconds: Wall time of the case (compile or cache lookup included).
    """

    suite: str
    case: str
    outcome: str = "ran"
    checks: list[Check] = field(default_factory=list)
    message: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return asdict(self)
