"""Provenance of benchmark results (`benchmarks/_common.py`): the commit a run records is the
one it started from, "+dirty" only when code differed from it then, never because of the
records or other tracked outputs the run itself wrote."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _common(monkeypatch, root):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    module = importlib.import_module("_common")
    monkeypatch.setattr(module, "REPO", root)
    monkeypatch.setattr(module, "RESULTS", root / "benchmarks" / "results")
    monkeypatch.setattr(module, "_START_COMMIT", None)  # a run starting in `root`
    return module


def test_commit_is_dirty_for_code_changes_not_for_results(tmp_path, monkeypatch) -> None:
    root = tmp_path / "repo"
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "code.py").write_text("x = 1\n")
    (root / "benchmarks" / "results" / "old.json").write_text("{}\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=root, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    head = git("rev-parse", "HEAD").strip()
    common = _common(monkeypatch, root)
    assert common.checkout_commit() == head
    (root / "benchmarks" / "results" / "old.json").write_text('{"rewritten": 1}\n')
    assert common.checkout_commit() == head  # a run's own tracked output
    monkeypatch.setattr(sys, "argv", ["bench.py", "--fast"])
    path = common.write_json("new.json", {"value": 2.5})
    doc = json.loads(path.read_text())
    assert (doc["commit"], doc["command"], doc["value"]) == (head, "python bench.py --fast", 2.5)
    assert "load_avg_1_5_15" in doc["machine"]
    assert json.loads(common.write_json("new.json", {"commit": "given"}).read_text())[
        "commit"] == "given"  # a script's own commit field wins
    (root / "code.py").write_text("x = 2\n")  # e.g. a fit the run writes outside the results
    assert common.checkout_commit() == head + "+dirty"
    assert json.loads(common.write_json("new.json", {}).read_text())["commit"] == head
    monkeypatch.setattr(common, "_START_COMMIT", None)  # a run starting from changed code
    assert common.git_commit() == head + "+dirty"
