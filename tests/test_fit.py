"""Multi-start fit: recovery of known parameters, checkpoint/resume, process and MPI engines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pypesto.store
import pytest

from sbmlhybrid.errors import InputError
from sbmlhybrid.objective import create_objective
from sbmlhybrid.optimize import FitSettings, fit, start_points, summary_table
from sbmlhybrid.problem import load_problem
from tests.conftest import REPO

TINY = REPO / "tests" / "data" / "tiny" / "problem.yaml"
TRUE = np.log10([0.8, 0.3, 2.0])


@pytest.fixture(scope="module")
def tiny():
    return create_objective(load_problem(TINY))


def _best_free(result, objective) -> np.ndarray:
    return np.asarray(result.optimize_result.list[0].x)[objective.pypesto_problem.x_free_indices]


@pytest.mark.parametrize("optimizer", ["fides", "lbfgsb"])
def test_fit_recovers_true_parameters(tiny, optimizer: str, tmp_path: Path) -> None:
    result = fit(tiny, FitSettings(n_starts=3, optimizer=optimizer, seed=2),
                 output=tmp_path / "r.hdf5", progress=False)
    np.testing.assert_allclose(_best_free(result, tiny), TRUE, atol=1e-3)
    stored = pypesto.store.read_result(str(tmp_path / "r.hdf5"), optimize=True)
    assert len(stored.optimize_result.list) == 3
    table = summary_table(result)
    assert list(table["rank"]) == [1, 2, 3]


def test_start_points_depend_only_on_seed_and_index(tiny) -> None:
    a, b = start_points(tiny, 3, 7), start_points(tiny, 5, 7)
    np.testing.assert_array_equal(a, b[:3])
    assert not np.allclose(start_points(tiny, 3, 8), a)
    lb, ub = tiny.pypesto_problem.lb, tiny.pypesto_problem.ub
    assert np.all((b >= lb) & (b <= ub))


def test_interrupted_fit_resumes_missing_starts(tiny, tmp_path: Path) -> None:
    out = tmp_path / "r.hdf5"
    settings = FitSettings(n_starts=4, seed=5, checkpoint_every=1)
    calls = []

    def interrupt(result) -> None:
        calls.append(len(result.optimize_result.list))
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(tiny, settings, output=out, progress=False, on_checkpoint=interrupt)
    partial = pypesto.store.read_result(str(out), optimize=True)
    done = {r.id: r.fval for r in partial.optimize_result.list}
    assert sorted(done) == ["0", "1"]
    resumed = []
    result = fit(tiny, settings, output=out, progress=False,
                 on_checkpoint=lambda r: resumed.append(len(r.optimize_result.list)))
    assert resumed == [3, 4]  # only starts 2 and 3 ran
    final = {r.id: r.fval for r in result.optimize_result.list}
    assert sorted(final) == ["0", "1", "2", "3"]
    assert all(final[k] == done[k] for k in done)
    with pytest.raises(InputError, match="seed"):
        fit(tiny, FitSettings(n_starts=4, seed=6), output=out, progress=False)


def test_process_engine(tiny, tmp_path: Path) -> None:
    result = fit(tiny, FitSettings(n_starts=2, engine="process", workers=2, seed=2),
                 output=tmp_path / "r.hdf5", progress=False)
    np.testing.assert_allclose(_best_free(result, tiny), TRUE, atol=1e-3)


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec not installed")
def test_mpi_engine(tiny, tmp_path: Path) -> None:
    script = tmp_path / "mpi_fit.py"
    script.write_text(textwrap.dedent(f"""
        import numpy as np
        from sbmlhybrid.objective import create_objective
        from sbmlhybrid.optimize import FitSettings, fit
        from sbmlhybrid.problem import load_problem
        obj = create_objective(load_problem({str(TINY)!r}))
        res = fit(obj, FitSettings(n_starts=2, engine="mpi", seed=2),
                  output={str(tmp_path / "mpi.hdf5")!r}, progress=False)
        print("BEST", res.optimize_result.list[0].fval)
    """))
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        ["mpiexec", "-n", "2", sys.executable, "-m", "mpi4py.futures", str(script)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BEST" in proc.stdout
    stored = pypesto.store.read_result(str(tmp_path / "mpi.hdf5"), optimize=True)
    x = np.asarray(stored.optimize_result.list[0].x)
    np.testing.assert_allclose(x, TRUE, atol=1e-3)
