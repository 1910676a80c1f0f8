"""Reading a stored fit and writing analysis results atomically (pyPESTO's HDF5 store)."""

from __future__ import annotations

import os
from pathlib import Path

import pypesto
import pypesto.store

from sbmlhybrid.errors import InputError, Issue


def read_fit(path: str | Path, problem: pypesto.Problem, profile: bool = False,
             sample: bool = False) -> pypesto.Result:
    """The result stored at `path`, attached to `problem` (the one it was computed on).

    Raises:
        InputError: missing or unreadable file, no optimization result in it, or a result
            made for other parameters.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(Issue("fit result not found: run `sbmlhybrid fit` first", str(path)))
    try:
        result = pypesto.store.read_result(str(path), problem=False, optimize=True,
                                           profile=profile, sample=sample)
    except Exception as err:  # h5py/pyPESTO raise many types for a foreign file
        raise InputError(Issue(f"cannot read fit result: {err}", str(path))) from err
    if not result.optimize_result.list:
        raise InputError(Issue("file holds no optimization result", str(path)))
    x = result.optimize_result.list[0].x
    if x is None or len(x) != problem.dim_full:
        raise InputError(Issue(f"fit result has {0 if x is None else len(x)} parameters, the "
                               f"problem {problem.dim_full}: made for another problem?",
                               str(path)))
    result.problem = problem
    result.optimize_result.sort()
    return result


def write_atomic(result: pypesto.Result, path: Path, profile: bool = False,
                 sample: bool = False) -> None:
    """Write fit (+ profiles / samples) to a temp file, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        pypesto.store.write_result(result, str(tmp), problem=True, optimize=True,
                                   profile=profile, sample=sample, overwrite=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
