"""A non-editable install works on its own: every module and the shipped problem files are in
the installed package, and the command line validates and simulates the shipped CHO problem
from there (not from src/).

The package is installed with pip from a copy of the source tree (``--no-deps
--no-build-isolation --no-index``: no network, the venv's setuptools and dependencies) into a
temporary target folder. The commands run with that folder first on ``sys.path`` and the
editable install of the source tree (its path entry or import finder) removed; the test
asserts where each ``sbmlhybrid`` module was imported from.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
SHIPPED = REPO / "petab_problems" / "cho_fedbatch"
DATA_SUFFIXES = {".yaml", ".tsv", ".xml"}  # pyproject.toml: tool.setuptools.package-data

# Run in a fresh interpreter: the install folder first, the source tree's editable install
# removed; then either report the imported modules (--inspect) or run the CLI.
DRIVER = r"""
import json, runpy, sys
from pathlib import Path
site, src = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
sys.path[:] = [str(site)] + [p for p in sys.path if p and Path(p).resolve() != src]
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
import sbmlhybrid
if not Path(sbmlhybrid.__file__).resolve().is_relative_to(site):
    sys.exit(f"sbmlhybrid imported from {sbmlhybrid.__file__}, not from {site}")
if sys.argv[3] == "--inspect":
    import sbmlhybrid.cli.main, sbmlhybrid.media.cho_simulator as cho
    files = {m: getattr(mod, "__file__", None) for m, mod in sys.modules.items()
             if m == "sbmlhybrid" or m.startswith("sbmlhybrid.")}
    print(json.dumps({"modules": files, "cho_problem": str(cho.CHO_PROBLEM)}))
else:
    sys.argv = ["sbmlhybrid", *sys.argv[3:]]
    runpy.run_module("sbmlhybrid.cli.main", run_name="__main__", alter_sys=True)
"""


def _copy_tree(dest: Path) -> Path:
    """The files `pip install .` reads: pyproject, README, src/ (links kept) and the link's
    target, petab_problems/cho_fedbatch."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(SRC, dest / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    shutil.copytree(SHIPPED, dest / "petab_problems" / SHIPPED.name,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The install folder of a non-editable `pip install` of the source tree."""
    root = tmp_path_factory.mktemp("packaging")
    tree = _copy_tree(root / "tree")
    site = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--no-compile", "-q", "--target", str(site), str(tree)],
        capture_output=True, text=True, cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return site


def _run(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", DRIVER, str(site), str(SRC), *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_every_module_is_installed(installed: Path) -> None:
    ours = {p.relative_to(SRC) for p in (SRC / "sbmlhybrid").rglob("*.py")
            if "_problems" not in p.parts}
    theirs = {p.relative_to(installed) for p in (installed / "sbmlhybrid").rglob("*.py")}
    assert ours - theirs == set(), "modules missing from the installed package"
    assert theirs - ours == set(), "installed modules that are not in src/"


def test_every_shipped_problem_file_is_installed(installed: Path) -> None:
    folder = installed / "sbmlhybrid" / "_problems" / SHIPPED.name
    wanted = {p.name for p in SHIPPED.iterdir() if p.suffix in DATA_SUFFIXES}
    assert {"problem.yaml", "model.xml", "measurements_train.tsv"} <= wanted
    got = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    assert got == wanted  # nothing missing, and no code (make_problem.py) shipped as data
    for name in wanted:
        assert (folder / name).read_bytes() == (SHIPPED / name).read_bytes(), name


def test_imports_come_from_the_install(installed: Path, tmp_path: Path) -> None:
    proc = _run(installed, "--inspect", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    site = installed.resolve()
    outside = {m: f for m, f in report["modules"].items()
               if f is not None and not Path(f).resolve().is_relative_to(site)}
    assert not outside, outside
    cho = Path(report["cho_problem"])
    assert cho.is_file() and cho.resolve().is_relative_to(site), cho


def test_cli_validates_and_simulates_the_installed_problem(installed: Path,
                                                          tmp_path: Path) -> None:
    folder = installed / "sbmlhybrid" / "_problems" / SHIPPED.name
    for yaml_name in ("problem.yaml", "problem_test.yaml"):
        proc = _run(installed, "validate", str(folder / yaml_name), cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "simulation.tsv"
    proc = _run(installed, "simulate", str(folder / "problem.yaml"), "-o", str(out),
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = pd.read_csv(out, sep="\t")
    measurements = pd.read_csv(SHIPPED / "measurements_train.tsv", sep="\t")
    assert len(table) == len(measurements)
    assert table["simulation"].notna().all()
