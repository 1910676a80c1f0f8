"""Validation of PEtab v1 problems: petab's linter plus the checks it misses.

petab's `lint_problem` only *logs* what it finds (and returns a bool), without rows; it also
misses measurements that name unknown conditions, non-finite data, and non-positive data
under log-scale noise. This module runs the linter with a log capture, adds those checks with
file, row and column, and returns a list of `Issue` records. Row numbers are 1-based lines of
the TSV file (the header is row 1), so a user can jump to them in an editor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import libsbml
import numpy as np
import pandas as pd
import petab.v1 as petab

from sbmlhybrid.errors import Issue
from sbmlhybrid.problem.noise import check_noise_overrides, check_sigmas

_LOG_SCALES = {"log", "log10"}
_MEASUREMENT_COLUMNS = {petab.OBSERVABLE_ID, petab.SIMULATION_CONDITION_ID, petab.TIME,
                        petab.MEASUREMENT}
_PARAMETER_COLUMNS = {petab.PARAMETER_ID, petab.PARAMETER_SCALE, petab.LOWER_BOUND,
                      petab.UPPER_BOUND, petab.NOMINAL_VALUE, petab.ESTIMATE}
_OBSERVABLE_COLUMNS = {petab.OBSERVABLE_ID, petab.OBSERVABLE_FORMULA, petab.NOISE_FORMULA}
_SCALES = {"lin", "log", "log10"}


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _capture_lint_errors() -> Iterator[list[str]]:
    handler = _ListHandler()
    logger = logging.getLogger("petab")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def sbml_read_issues(path: Path | None, text: str | None = None) -> list[Issue]:
    """Read an SBML file with libsbml and return its errors with libsbml's line numbers."""
    reader = libsbml.SBMLReader()
    doc = reader.readSBMLFromString(text) if text is not None else reader.readSBML(str(path))
    issues = []
    for i in range(doc.getNumErrors()):
        err = doc.getError(i)
        if err.getSeverity() >= libsbml.LIBSBML_SEV_ERROR:
            issues.append(
                Issue(
                    f"SBML: {err.getMessage().strip()}",
                    file=str(path) if path else None,
                    row=err.getLine() or None,
                    column=err.getColumn() or None,
                )
            )
    if not issues and doc.getModel() is None:
        issues.append(Issue("SBML: the document has no <model>", file=str(path) if path else None))
    return issues


def _numeric(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce")


def _check_parameters(df: pd.DataFrame, file: str | None) -> list[Issue]:
    issues = []
    frame = df.reset_index()
    for col in ("lowerBound", "upperBound", "nominalValue"):
        if col not in frame:
            continue
        values = _numeric(frame[col])
        for i, (raw, val) in enumerate(zip(frame[col], values)):
            if pd.isna(raw) and not isinstance(raw, str):
                continue  # empty cell; petab's linter decides whether it may be
            if pd.isna(val) or not np.isfinite(val):
                issues.append(
                    Issue(f"non-finite value {raw!r}", file, i + 2, col, frame.at[i, "parameterId"])
                )
    if {"lowerBound", "upperBound"} <= set(frame):
        lb, ub = _numeric(frame["lowerBound"]), _numeric(frame["upperBound"])
        for i in np.flatnonzero((lb > ub).to_numpy()):
            pid = frame.at[i, "parameterId"]
            issues.append(
                Issue(f"lowerBound {lb[i]} > upperBound {ub[i]}", file, i + 2, "lowerBound", pid)
            )
        if "nominalValue" in frame:
            nom = _numeric(frame["nominalValue"])
            outside = (nom < lb) | (nom > ub)
            outside &= (lb <= ub) & frame.get("estimate", 1).astype(bool)
            for i in np.flatnonzero(outside.to_numpy()):
                issues.append(
                    Issue(
                        f"nominalValue {nom[i]} outside [{lb[i]}, {ub[i]}]",
                        file, i + 2, "nominalValue", frame.at[i, "parameterId"],
                    )
                )
        if "parameterScale" in frame:
            for i, scale in enumerate(frame["parameterScale"]):
                pid = frame.at[i, "parameterId"]
                if scale not in _SCALES:
                    issues.append(Issue(f"unknown parameterScale {scale!r}", file, i + 2,
                                        "parameterScale", pid))
                elif scale in _LOG_SCALES and lb[i] <= 0 and frame.get("estimate", 1)[i]:
                    issues.append(Issue(f"lowerBound {lb[i]} must be > 0 for {scale} scale",
                                        file, i + 2, "lowerBound", pid))
    return issues


def _check_estimate(df: pd.DataFrame, file: str | None) -> list[Issue]:
    """`estimate` must be 0 or 1, and a fixed parameter (0) needs the nominalValue it is fixed
    to; petab's linter misses the latter and reports the former without a row."""
    frame = df.reset_index()
    if petab.ESTIMATE not in frame:
        return []
    issues = []
    nominal = frame.get(petab.NOMINAL_VALUE, pd.Series(np.nan, index=frame.index))
    for i, (raw, value) in enumerate(zip(frame[petab.ESTIMATE], _numeric(frame[petab.ESTIMATE]))):
        pid = frame.at[i, petab.PARAMETER_ID]
        if value not in (0, 1):
            issues.append(Issue(f"estimate must be 0 or 1, not {raw!r}", file, i + 2,
                                petab.ESTIMATE, pid))
        elif value == 0 and pd.isna(nominal[i]) and not isinstance(nominal[i], str):
            issues.append(Issue("nominalValue is required for a parameter that is not "
                                "estimated (estimate 0)", file, i + 2, petab.NOMINAL_VALUE, pid))
    return issues


def duplicate_ids(table: pd.DataFrame, column: str, file: str | None) -> list[Issue]:
    """Issues for repeated ids in `column` of a table as read from its TSV (before petab
    indexes it, so rows are the file's lines); petab names neither file nor row."""
    if column not in table:
        return []
    ids = table[column].reset_index(drop=True)
    first = {value: i for i, value in ids.drop_duplicates().items()}
    return [Issue(f"duplicate {column} {ids[i]!r} (first on row {first[ids[i]] + 2})", file,
                  i + 2, column, str(ids[i]))
            for i in np.flatnonzero(ids.duplicated().to_numpy()) if not pd.isna(ids[i])]


def _check_measurements(
    problem: petab.Problem, file: str | None, condition_ids: set[str]
) -> list[Issue]:
    df = problem.measurement_df
    issues: list[Issue] = []
    obs_df = problem.observable_df
    log_obs = set()
    if obs_df is not None and "observableTransformation" in obs_df:
        log_obs = set(obs_df.index[obs_df["observableTransformation"].isin(_LOG_SCALES)])
    for col in ("measurement", "time"):
        values = _numeric(df[col])
        for i, (raw, val) in enumerate(zip(df[col], values)):
            steady_state = col == "time" and val == np.inf  # PEtab: measured at steady state
            if pd.isna(val) and isinstance(raw, str) and raw.strip().lower() != "nan":
                issues.append(Issue(f"{col} {raw!r} is not a number", file, i + 2, col,
                                    df[petab.OBSERVABLE_ID].iloc[i]))
            elif pd.isna(val) or not (np.isfinite(val) or steady_state):
                issues.append(Issue(f"non-finite {col} {raw!r}", file, i + 2, col,
                                    df[petab.OBSERVABLE_ID].iloc[i]))
            elif col == "time" and val < 0:
                issues.append(Issue(f"negative time {val}", file, i + 2, col))
    meas = _numeric(df["measurement"])
    for i in np.flatnonzero((df[petab.OBSERVABLE_ID].isin(log_obs) & (meas <= 0)).to_numpy()):
        obs = df[petab.OBSERVABLE_ID].iloc[i]
        issues.append(Issue(f"measurement {meas.iloc[i]} <= 0 for observable {obs} with "
                            "log-scale noise", file, i + 2, "measurement", obs))
    for col in (petab.SIMULATION_CONDITION_ID, petab.PREEQUILIBRATION_CONDITION_ID):
        if col not in df:
            continue
        for i, cid in enumerate(df[col]):
            if isinstance(cid, str) and cid and cid not in condition_ids:
                issues.append(Issue(f"unknown condition {cid!r}", file, i + 2, col, cid))
    if obs_df is not None:
        for i, oid in enumerate(df[petab.OBSERVABLE_ID]):
            if oid not in obs_df.index:
                issues.append(Issue(f"unknown observable {oid!r}", file, i + 2,
                                    petab.OBSERVABLE_ID, oid))
    issues += check_noise_overrides(df, file)
    return issues


def _check_conditions(problem: petab.Problem, file: str | None) -> list[Issue]:
    df = problem.condition_df
    if df is None:
        return []
    issues = []
    frame = df.reset_index()
    for col in frame.columns:
        if col in (petab.CONDITION_ID, petab.CONDITION_NAME):
            continue
        for i, raw in enumerate(frame[col]):
            val = pd.to_numeric(raw, errors="coerce")
            if isinstance(raw, str) and pd.isna(val):
                continue  # a parameter id mapped per condition
            if isinstance(raw, float | int | np.floating) and np.isinf(val):
                issues.append(Issue(f"non-finite value {raw!r}", file, i + 2, col,
                                    frame.at[i, petab.CONDITION_ID]))
    return issues


def validate_problem(problem: petab.Problem, files: dict[str, str | None]) -> list[Issue]:
    """All problems of a loaded PEtab v1 problem.

    Args:
        problem: The loaded problem.
        files: Table kind ("parameter", "measurement", "condition", "observable", "sbml") ->
            file path, used to name the file in each issue.

    Returns:
        Every issue found; empty if the problem is valid.
    """
    issues: list[Issue] = []
    missing = {}
    for kind, df, required in (
        ("measurement", problem.measurement_df, _MEASUREMENT_COLUMNS),
        ("parameter", problem.parameter_df, _PARAMETER_COLUMNS),
        ("observable", problem.observable_df, _OBSERVABLE_COLUMNS),
    ):
        columns = set() if df is None else {*df.columns, df.index.name}
        missing[kind] = sorted(required - columns)
        if missing[kind]:
            issues.append(Issue(f"missing required column(s) {missing[kind]}",
                                files.get(kind), 1))
    if issues:
        return issues  # the other checks need these columns
    if problem.measurement_df.empty:
        # Nothing to fit or simulate; downstream code would fail without naming the cause.
        return [Issue("measurement table has no rows", files.get("measurement"))]
    condition_ids = set(problem.condition_df.index) if problem.condition_df is not None else set()
    issues += _check_parameters(problem.parameter_df, files.get("parameter"))
    issues += _check_estimate(problem.parameter_df, files.get("parameter"))
    issues += _check_measurements(problem, files.get("measurement"), condition_ids)
    issues += _check_conditions(problem, files.get("condition"))
    issues += check_sigmas(problem, files)
    with _capture_lint_errors() as messages:
        try:
            failed = petab.lint_problem(problem)
        except Exception as err:  # the linter itself chokes on some broken tables
            failed, messages[:] = True, [*messages, f"{type(err).__name__}: {err}"]
    if failed:
        known = " ".join(str(i) for i in issues)
        for message in messages:
            if message.strip() == "Not OK":
                continue
            # Skip linter messages that only restate an issue already reported with a row.
            if "lowerBound greater than upperBound" in message and "lowerBound" in known:
                continue
            issues.append(Issue(f"petab lint: {message}"))
        if not messages and not issues:
            issues.append(Issue("petab lint reported errors (see log)"))
    return issues
