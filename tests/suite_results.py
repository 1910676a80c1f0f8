"""Pass/fail of official test-suite cases, decided here (the runners in `sbmlhybrid.testing`
only report errors next to tolerances)."""

from __future__ import annotations

from sbmlhybrid.testing import CaseResult


def exceeded(result: CaseResult) -> list[str]:
    """Why `result` fails: not run, nothing compared, or checks above their tolerance."""
    if result.outcome != "ran":
        return [f"{result.outcome}: {result.message}"]
    if not result.checks:
        return ["no quantity was compared"]
    return [f"{c.name}: error {c.error:.3g} > tolerance {c.tolerance:.3g}"
            for c in result.checks if not c.error <= c.tolerance]


def assert_within_tolerance(result: CaseResult) -> None:
    """Fail unless the case ran and every check is within its tolerance."""
    fails = exceeded(result)
    assert not fails, f"{result.suite}/{result.case}: {'; '.join(fails)} ({result.message})"
