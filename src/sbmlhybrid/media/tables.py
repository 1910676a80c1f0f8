"""Reading and validating medium tables (CSV or Excel) for the CLI, the campaign and
the estimator's X/y inputs (``as_frame``, ``check_outcome``).

Hand-written on pandas (``read_csv``/``read_excel`` via openpyxl). Every problem
is reported as an ``Issue`` naming the file, the column and, where useful, the
row, and all problems of a table are raised together in one ``InputError``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sbmlhybrid.errors import InputError, Issue

_EXCEL = {".xlsx", ".xlsm", ".xls"}


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (``.csv``/``.tsv``/other text) or Excel (``.xlsx``) table.

    Raises FileNotFoundError for a missing file and InputError for an unreadable one.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        if path.suffix.lower() in _EXCEL:
            df = pd.read_excel(path)
        else:
            df = pd.read_csv(path, sep=None, engine="python")
    except Exception as err:  # pandas raises many types for malformed files
        raise InputError(Issue(f"cannot read table: {err}", file=str(path))) from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise InputError(Issue("table has no data rows", file=str(path)))
    return df


def training_table(
    df: pd.DataFrame, target: str, components: list[str] | None = None,
    exclude: list[str] | None = None, source: str | None = None, allow_constant: bool = False,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Validate a training table and split it into X (n, d) and y (n,).

    Args:
        df: The table. target: Outcome column.
        components: Component columns; None = every column but ``target`` and ``exclude``.
        exclude: Columns to ignore when components are inferred (ids, replicate raw values).
        source: File name for the messages.
        allow_constant: Accept zero-variance component columns (otherwise an error).

    Raises:
        InputError naming every missing column, NaN/non-numeric cell (first row per
        column) and constant component column.
    """
    issues: list[Issue] = []
    if target not in df.columns:
        issues.append(Issue(f"outcome column {target!r} is missing", file=source, column=target))
    if components is None:
        skip = {target, *(exclude or [])}
        components = [c for c in df.columns if c not in skip]
    else:
        issues += [Issue("component column is missing", file=source, column=c)
                   for c in components if c not in df.columns]
    if not components:
        issues.append(Issue("no component columns", file=source))
    if issues:
        raise InputError(issues, header="Invalid training table")
    for c in [*components, target]:
        vals = pd.to_numeric(df[c], errors="coerce")
        bad = vals.isna().to_numpy() | ~np.isfinite(vals.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            issues.append(Issue("missing (NaN) or non-numeric value", file=source,
                                row=int(np.flatnonzero(bad)[0]) + 1, column=c))
        elif c != target and not allow_constant and vals.nunique() == 1:
            issues.append(Issue("constant column: carries no information and cannot be "
                                "Min-Max scaled; drop it or pass --exclude", file=source,
                                column=c))
    if issues:
        raise InputError(issues, header="Invalid training table")
    x = df[components].apply(pd.to_numeric).astype(float)
    return x, pd.to_numeric(df[target]).to_numpy(float)


def as_frame(X, columns: list[str] | None, name: str) -> pd.DataFrame:
    """Validated float DataFrame (n, d) of X (DataFrame or 2-D array); arrays get
    ``columns`` (if widths match) or x0..x{d-1}. Raises InputError naming every
    missing or non-numeric cell (first row per column)."""
    if isinstance(X, pd.DataFrame):
        df = X
    else:
        arr = np.asarray(X, dtype=float)
        if arr.ndim != 2:
            raise InputError(Issue(f"{name} must be 2-D (n, d), got shape {arr.shape}"))
        cols = columns if columns is not None and len(columns) == arr.shape[1] else [
            f"x{i}" for i in range(arr.shape[1])]
        df = pd.DataFrame(arr, columns=cols)
    issues = []
    for c in df.columns:
        vals = pd.to_numeric(df[c], errors="coerce")
        if vals.isna().any():
            row = int(np.flatnonzero(vals.isna().to_numpy())[0]) + 1
            issues.append(Issue("missing or non-numeric value", row=row, column=str(c)))
    if issues:
        raise InputError(issues, header=f"Invalid {name}")
    return df.apply(pd.to_numeric).astype(float)


def check_outcome(y, n: int) -> np.ndarray:
    """Outcome vector (n,) as float; InputError on a length mismatch or non-finite value."""
    arr = np.asarray(y, dtype=float).reshape(-1)
    if arr.shape[0] != n:
        raise InputError(Issue(f"y has {arr.shape[0]} values but X has {n} rows"))
    if not np.all(np.isfinite(arr)):
        row = int(np.flatnonzero(~np.isfinite(arr))[0]) + 1
        raise InputError(Issue("missing or non-finite outcome", row=row, column="y"))
    return arr


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically (temp file + rename)."""
    from sbmlhybrid.media.container import atomic_write_bytes

    atomic_write_bytes(path, df.to_csv(index=False).encode())
