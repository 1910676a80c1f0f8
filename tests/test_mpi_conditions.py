"""Conditions of an evaluation spread over MPI ranks equal the serial evaluation to 1e-12."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

BLOWUP = REPO / "tests" / "data" / "minibatch_blowup" / "problem.yaml"


@pytest.mark.mpi
@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec not installed")
def test_mpi_conditions_equal_serial(tmp_path) -> None:
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        ["mpiexec", "-n", "2", sys.executable, str(REPO / "tests" / "mpi" / "conditions_check.py"),
         str(BLOWUP)], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # values, gradients, FIM, subsets, batches (with rescue) and step-capped adjoint gradients
    # (repeated at the user's cap on every rank) all checked to 1e-12, work counts too
    assert "MPI-CONDITIONS OK 7 checks" in proc.stdout, proc.stdout[-2000:]
