"""The benchmark collection as a regression suite: llh at nominal vs reference, gradients vs FD.

Runs `benchmarks/benchmark_collection.py`'s per-problem protocol (`run_problem`) in-process:
llh at the nominal parameters within the reference tolerance of
../shared/benchmark_models/reference_values.tsv, and forward and adjoint gradients at a
perturbed point against central finite differences (AMICI's criterion atol 1e-3, rtol 1e-2
elementwise; a component failing with the fixed FD step is compared with the FD of the most
consistent step of a ladder). Three small, quickly compiling problems run by default; all
17 under `slow`.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, SHARED

REFERENCE = SHARED / "benchmark_models" / "reference_values.tsv"
ROWS = ({r["problem"]: r for r in pd.read_csv(REFERENCE, sep="\t").to_dict("records")}
        if REFERENCE.exists() else {})
ABSENT = f"reference data {SHARED} is absent (../shared not checked out beside the repo)"
#: Compile in ~25 s each and check in < 1 s (benchmarks/results/benchmark_collection.json).
FAST = ("Boehm_JProteomeRes2014", "Perelson_Science1996", "Rahman_MBS2016")
#: Known failures (benchmarks/results/benchmark_collection/<problem>.json has the numbers).
#: Beer_MolBioSystems2014 was one (kdim_typeIDT5: FD at steps 1e-5/1e-4 drowned in integration
#: noise, |f| ~ 1.3e5 vs df = 0.0208); the FD step ladder confirms its sensitivities.
KNOWN: dict[str, str] = {}


def _marks(name: str) -> list[pytest.MarkDecorator]:
    """`slow` unless in FAST; non-strict xfail with the reason for a known failure."""
    # The FAST three pass in 111 s with a cold compile cache and 13 s warm. A stall seen once
    # while the AMICI thread default was 2 is bounded by the suite's pytest timeout.
    marks = [] if name in FAST else [pytest.mark.slow]
    if name in KNOWN:
        marks.append(pytest.mark.xfail(reason=KNOWN[name], strict=False))
    return marks


PARAMS = ([pytest.param(n, marks=_marks(n)) for n in ROWS]
          or [pytest.param("absent", marks=pytest.mark.skip(reason=ABSENT))])


def _collection() -> ModuleType:
    """benchmarks/benchmark_collection.py as a module (benchmarks/ is not a package)."""
    folder = str(REPO / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("benchmark_collection")


def _short(rec: dict[str, Any]) -> str:
    return json.dumps({k: rec.get(k) for k in ("errors", "llh")}, default=float)[:3000]


@pytest.mark.parametrize("name", PARAMS)
def test_benchmark_problem(name: str) -> None:
    rec = _collection().run_problem(ROWS[name])
    # timing errors (a method failing at the nominal point) are reported, not checked here
    assert not {"setup", "llh", "gradient"} & set(rec["errors"]), _short(rec)
    assert rec["llh"]["passed"], _short(rec)
    for method in ("forward", "adjoint"):
        check = rec["gradient"][method]
        assert check["passed"], (method, {k: v for k, v in check.items() if k != "grad"})


def test_gradient_criterion_is_elementwise_and_takes_either_step() -> None:
    bc = _collection()
    fd = np.array([100.0, 0.0, -5.0])
    ok = bc.compare(fd + [0.9, 0.9e-3, 0.0], [fd], ["a", "b", "c"])
    assert ok["passed"] and ok["n_failed"] == 0
    bad = bc.compare(fd + [1.1, 0.0, 0.0], [fd], ["a", "b", "c"])
    assert not bad["passed"] and bad["failed_ids"] == ["a"] and bad["worst_id"] == "a"
    retried = bc.compare(fd + [1.1, 0.0, 0.0], [fd, fd + [1.0, 0.0, 0.0]], ["a", "b", "c"])
    assert retried["passed"]


def test_fd_step_is_the_most_consistent_of_the_ladder() -> None:
    bc = _collection()
    # Beer_MolBioSystems2014, d/dlog10 kdim_typeIDT5 at the perturbed point (rtol 1e-12):
    # truncation error above 1e-2, integration noise / h below 1e-3
    beer = {1e-1: 0.020681, 1e-2: 0.020822, 1e-3: 0.021238, 1e-4: 0.019191, 1e-5: 0.014763,
            1e-6: -0.022454}
    step, score = bc.most_consistent(beer)
    assert step == 1e-2 and score < 1
    step, score = bc.most_consistent({1e-3: 1.0, 1e-4: np.nan, 1e-5: 5.0})
    assert step == 1e-5 and score == pytest.approx(4.0 / (1e-3 + 5e-2))  # nan left out
    assert bc.most_consistent({1e-4: np.nan, 1e-5: 2.0}) == (1e-5, np.inf)
    assert bc.most_consistent({1e-4: np.nan, 1e-5: np.nan}) == (1e-5, np.inf)
    assert bc.inconsistency(100.0, 101.0) == pytest.approx(1.0 / (1e-3 + 1e-2 * 101.0))


def test_summary_counts_records_and_lists_missing(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bc = _collection()
    monkeypatch.setattr(bc, "RECORDS", tmp_path)
    prov = {"git_commit": "x", "date": "d", "command": "c"}
    good = {"problem": "A", "errors": {}, "provenance": prov, "llh": {"passed": True},
            "gradient": {"forward": {"passed": True}, "adjoint": {"passed": True}}}
    bad = {"problem": "B", "errors": {"setup": "BuildError: boom"}, "provenance": prov}
    for rec in (good, bad):
        bc.write_record(rec)
    summary = bc.summarize([{"problem": p} for p in "ABC"], 0.0)
    assert (summary["llh_passed"], summary["llh_total"]) == (1, 3)
    assert (summary["grad_passed"], summary["grad_total"]) == (1, 3)
    assert summary["failed"] == ["B"] and summary["not_run"] == ["C"]
    assert summary["problems"]["B"]["errors"] == {"setup": "BuildError: boom"}
