"""CLI: validate / simulate / fit exit codes and outputs, bare SBML + measurement table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sbmlhybrid.cli.main import main
from tests.conftest import REPO

TINY = REPO / "tests" / "data" / "tiny"


def test_validate_ok(capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", str(TINY / "problem.yaml")]) == 0
    assert "2 conditions, 3 estimated parameters" in capsys.readouterr().out


def test_simulate_writes_table(tmp_path: Path) -> None:
    out = tmp_path / "sim.tsv"
    params = '{"k1": -0.09691001300805639, "k2": -0.5228787452803376, "scale": 0.3010299956639812}'
    assert main(["simulate", str(TINY / "problem.yaml"), "--parameters", params,
                 "-o", str(out)]) == 0
    table = pd.read_csv(out, sep="\t")
    data = pd.read_csv(TINY / "measurements.tsv", sep="\t")
    np.testing.assert_allclose(table["simulation"], data["measurement"], rtol=1e-6, atol=1e-8)
    assert main(["simulate", str(TINY / "problem.yaml"), "--parameters", '{"nope": 1}',
                 "-o", str(tmp_path / "x.tsv")]) == 2


def test_fit_writes_results_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "fit"
    code = main(["fit", str(TINY / "problem.yaml"), "--starts", "2", "--seed", "3",
                 "--output", str(out), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "rank" in text and "fval" in text
    for name in ("result.hdf5", "best_parameters.tsv", "waterfall.png", "parameters.png",
                 "fit.png"):
        assert (out / name).stat().st_size > 0, name
    best = pd.read_csv(out / "best_parameters.tsv", sep="\t").set_index("parameterId")
    np.testing.assert_allclose(best.loc[["k1", "k2", "scale"], "estimate_scaled"],
                               np.log10([0.8, 0.3, 2.0]), atol=1e-3)


def test_bare_sbml_with_measurements(tmp_path: Path) -> None:
    data = pd.read_csv(TINY / "measurements.tsv", sep="\t")
    b = data[data.observableId == "obs_b"].assign(observableId="obs_B",
                                                  measurement=lambda d: d.measurement / 2)
    b["noiseParameters"] = 0.05
    b.to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    out = tmp_path / "fit"
    assert main(["fit", str(TINY / "model.xml"), "--measurements", str(tmp_path / "m.tsv"),
                 "--starts", "3", "--output", str(out), "--no-progress"]) == 0
    best = pd.read_csv(out / "best_parameters.tsv", sep="\t").set_index("parameterId")
    np.testing.assert_allclose(10 ** best.loc[["k1", "k2"], "estimate_scaled"], [0.8, 0.3],
                               rtol=1e-3)


def test_unknown_optimizer_is_input_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["fit", str(TINY / "problem.yaml"), "--optimizer", "nelder"]) == 2
    assert "unknown --optimizer 'nelder'" in capsys.readouterr().err
