"""Compile cache: content keys, hits, concurrent builds under a lock, no partial entries."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sbmlhybrid.build import BuildError, cache_key, compile_problem
from sbmlhybrid.build.cache import DEFAULT_CODEGEN
from sbmlhybrid.problem import load_problem
from tests.conftest import REPO

TINY = REPO / "tests" / "data" / "tiny" / "problem.yaml"
CHO = REPO / "petab_problems" / "cho_fedbatch"


def _entries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_dir() and p.parent.name.startswith("amici-")
            and not p.name.startswith(".")]


def test_key_tracks_what_changes_generated_code() -> None:
    problem = load_problem(TINY)
    base = cache_key(problem, DEFAULT_CODEGEN)
    assert cache_key(load_problem(TINY), DEFAULT_CODEGEN) == base
    assert cache_key(problem, {**DEFAULT_CODEGEN, "simplify": "x"}) != base
    other = copy.deepcopy(problem)
    other.petab_problem.observable_df.loc["obs_b", "observableFormula"] = "scale * B + 1"
    assert cache_key(other, DEFAULT_CODEGEN) != base
    other = copy.deepcopy(problem)
    other.petab_problem.sbml_model.getParameter("k2").setValue(0.7)
    assert cache_key(other, DEFAULT_CODEGEN) != base
    other = copy.deepcopy(problem)  # values the model reads at run time do not change the key
    other.petab_problem.measurement_df["measurement"] *= 2
    other.petab_problem.parameter_df["nominalValue"] *= 2
    other.petab_problem.condition_df["A0"] *= 3
    assert cache_key(other, DEFAULT_CODEGEN) == base
    other = copy.deepcopy(problem)  # a column of parameter ids is no constant any more
    other.petab_problem.condition_df["A0"] = ["k1", "k2"]
    assert cache_key(other, DEFAULT_CODEGEN) != base
    other = copy.deepcopy(problem)  # a non-estimated parameter becomes a constant
    other.petab_problem.parameter_df.loc["k2", "estimate"] = 0
    assert cache_key(other, DEFAULT_CODEGEN) != base
    other = copy.deepcopy(problem)  # pre-equilibration adds initial_A0_preeq and an indicator
    other.petab_problem.measurement_df["preequilibrationConditionId"] = "c0"
    assert cache_key(other, DEFAULT_CODEGEN) != base


def test_problem_files_over_one_model_share_one_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Train and test problems differ only in data: same key, folder and module, one compile."""
    monkeypatch.setenv("SBMLHYBRID_CACHE_DIR", str(tmp_path))
    train, test = load_problem(CHO / "problem.yaml"), load_problem(CHO / "problem_test.yaml")
    assert train.name != test.name  # the problem names still tell outputs apart
    assert cache_key(train, DEFAULT_CODEGEN) == cache_key(test, DEFAULT_CODEGEN)
    first = compile_problem(train)
    second = compile_problem(test)
    assert not first.hit and second.hit
    assert second.path == first.path and second.module_name == first.module_name
    assert first.module_name == f"cho_fedbatch_{first.key[:12]}"
    assert len(_entries(tmp_path)) == 1
    model = second.create_model()
    assert "obs_Xv" in model.get_observable_ids()


def test_failed_build_leaves_no_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBMLHYBRID_CACHE_DIR", str(tmp_path))
    with pytest.raises(BuildError, match="no_such_option"):
        compile_problem(load_problem(TINY), codegen={"no_such_option": 1})
    assert _entries(tmp_path) == []
    assert list(tmp_path.glob("*/.tmp/*")) == []


def test_concurrent_builds_compile_once_and_hits_are_fast(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = (
        "import sys, json; from sbmlhybrid.problem import load_problem;"
        "from sbmlhybrid.build import compile_problem;"
        f"c = compile_problem(load_problem({str(TINY)!r}));"
        "m = c.create_model();"
        "print(json.dumps([c.hit, c.module_name, len(m.get_free_parameter_ids())]))"
    )
    env = {**os.environ, "SBMLHYBRID_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert sorted(r[0] for r in results) == [False, True]  # one built, the other waited and hit
    assert results[0][1] == results[1][1] and results[0][2] == 3
    assert len(_entries(tmp_path)) == 1
    monkeypatch.setenv("SBMLHYBRID_CACHE_DIR", str(tmp_path))
    start = time.perf_counter()
    compiled = compile_problem(load_problem(TINY))
    compiled.create_model()
    assert compiled.hit and time.perf_counter() - start < 1.0


def test_v2_key_follows_amici_v2_import(tmp_path: Path) -> None:
    """PEtab v2: AMICI encodes the experiments as events, so condition values enter the key;
    data, bounds and nominal values do not (no compile here: the key needs AMICI's importer
    to convert the problem only)."""
    suite = REPO / ".." / "shared" / "petab_test_suite" / "v2.0.0" / "sbml" / "0002"
    if not suite.is_dir():
        pytest.skip(f"{suite} absent")
    folder = shutil.copytree(suite, tmp_path / "0002")
    yaml_file = folder / "_0002.yaml"
    base = cache_key(load_problem(yaml_file), DEFAULT_CODEGEN)
    data = folder / "_measurements.tsv"
    data.write_text(data.read_text().replace("0.01", "0.05"))
    pars = folder / "_parameters.tsv"
    pars.write_text(pars.read_text().replace("\t0.8\t", "\t0.7\t"))
    assert cache_key(load_problem(yaml_file), DEFAULT_CODEGEN) == base
    conditions = folder / "_conditions.tsv"
    conditions.write_text(conditions.read_text().replace("0.9", "0.95"))
    assert cache_key(load_problem(yaml_file), DEFAULT_CODEGEN) != base
