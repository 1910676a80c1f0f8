"""Exceptions shared by every sbmlhybrid subpackage.

`InputError` is the one the CLI maps to exit code 2: it carries a list of
`Issue` records (file, row, column, message) so that a single exception can
report every problem found in an input at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One problem in a user input.

    Attributes:
        message: What is wrong, in the field's words.
        file: Path of the offending file, if any.
        row: 1-based TSV line number (the header is row 1) or SBML line number, if
            known.
        column: Column name (tables) or SBML column number, if known.
        entity: The offending id (parameter, observable, condition, layer, ...).
    """

    message: str
    file: str | None = None
    row: int | None = None
    column: str | int | None = None
    entity: str | None = None

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class SbmlHybridError(Exception):
    """Base class of all sbmlhybrid errors."""


class InputError(SbmlHybridError, ValueError):
    """Invalid user input; lists every problem found (CLI exit code 2)."""

    def __init__(self, issues: list[Issue] | Issue | str, header: str = "Invalid input"):
        if isinstance(issues, str):
            issues = [Issue(issues)]
        elif isinstance(issues, Issue):
            issues = [issues]
        self.issues: list[Issue] = list(issues)
        self.header = header
        lines = [f"{header} ({len(self.issues)} problem(s)):"]
        lines += [f"  - {issue}" for issue in self.issues]
        super().__init__("\n".join(lines))


class NotSupportedError(InputError):
    """A valid input that uses a feature sbmlhybrid (or AMICI) cannot simulate."""


class SimulationError(SbmlHybridError, RuntimeError):
    """An integration failed; names the condition and the parameters."""
