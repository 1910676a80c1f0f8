"""Shared fixtures: paths to ../shared, the project's problems, and session-wide compiled models.

Compiled models go through the project's own compile cache (`SBMLHYBRID_CACHE_DIR`, set by
`make test` to a folder that persists between runs), so each test model is compiled at most
once per run and not at all on a warm cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
PROBLEMS = REPO / "petab_problems"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (../shared not checked out beside repo)")
    return path


def central_differences(fun, x: np.ndarray, eps: float) -> np.ndarray:
    """Central finite differences of the scalar function `fun` at `x`, shape x.shape."""
    grad = np.empty_like(x)
    for i in range(len(x)):
        step = np.zeros_like(x)
        step[i] = eps
        grad[i] = (fun(x + step) - fun(x - step)) / (2 * eps)
    return grad


def fd_gradient(objective, x: np.ndarray, eps: float) -> np.ndarray:
    """Central finite differences of `objective.evaluate(x).fval`, shape (n_free,)."""
    return central_differences(lambda v: objective.evaluate(v, gradient=False).fval, x, eps)


@pytest.fixture(scope="session")
def cho_objective():
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import load_problem

    return create_objective(load_problem(PROBLEMS / "cho_fedbatch" / "problem.yaml"))


@pytest.fixture(scope="session", autouse=True)
def _quiet_env():
    os.environ.setdefault("MPLBACKEND", "Agg")
    yield
