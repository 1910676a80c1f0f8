"""`benchmarks/_minibatch_report.summarize`: f*, converged starts, expected work W and the work
ratio from hand-made records, against values computed by hand."""

from __future__ import annotations

import importlib
import json
import math

from tests.conftest import REPO


def _report(monkeypatch, root):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    module = importlib.import_module("_minibatch_report")
    monkeypatch.setattr(module, "RECORDS", root)
    return module


def _write(root, method, fvals, work, forward=0):
    folder = root / "toy" / method
    folder.mkdir(parents=True)
    for i, (f, w) in enumerate(zip(fvals, work, strict=True)):
        rec = {"fval": f, "work_sensitivity": w, "work_forward": forward}
        (folder / f"start{i:02d}.json").write_text(json.dumps(rec))


def test_expected_work_and_ratio_by_hand(tmp_path, monkeypatch) -> None:
    _write(tmp_path, "fides", [10.0, 10.5, None], [100, 200, 50])  # None: failed at the start
    _write(tmp_path, "adam-b1", [10.2, 12.0, 10.9], [30, 30, 30], forward=10)
    _write(tmp_path, "lbfgsb", [10.0], [400])  # one of three starts done
    _write(tmp_path, "base-adam-b1", [50.0, 50.0, 50.0], [1, 1, 1])  # not a reported method
    block = _report(monkeypatch, tmp_path).summarize("toy", forward_cost=0.5, n_starts=3)
    assert block["f_star"] == 10.0 and block["methods"] == ["adam-b1", "fides"]
    assert block["incomplete_methods"] == {"lbfgsb": 1}
    # delta 1: fides converges at 10.0 and 10.5 (2 of 3), adam at 10.2 and 10.9 (2 of 3)
    assert block["converged_starts_by_method"]["1.0"] == {"fides": 2, "adam-b1": 2}
    w = block["expected_work_by_method"]["1.0"]
    assert w["fides"] == (100 + 200 + 50) / 2
    assert w["adam-b1"] == 3 * (30 + 0.5 * 10) / 2
    assert block["expected_work_by_method_forward_as_1"]["1.0"]["adam-b1"] == 3 * 40 / 2
    assert math.isclose(block["work_ratio"]["1.0"], 175 / 52.5)
    # delta 0.1: only fides' 10.0 converges, adam none: W inf (None), ratio 0
    assert block["converged_starts_by_method"]["0.1"] == {"fides": 1, "adam-b1": 0}
    assert block["expected_work_by_method"]["0.1"]["adam-b1"] is None
    assert block["work_ratio"]["0.1"] == 0.0
    assert block["best_fullbatch"]["1.0"] == "fides" and block["best_minibatch"]["1.0"] == "adam-b1"
