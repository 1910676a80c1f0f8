"""No false rejections: every published problem in ../shared loads (validation only, no compile).

The validator must refuse broken inputs (tests/test_broken_inputs.py) without refusing valid
PEtab: the 17 benchmark problems load with their reference condition and parameter counts,
and every PEtab test-suite case loads or is refused only as unsupported. Bachmann_MSB2011
guards the noise check: its noise formula `noiseParameter1 + noiseParameter2` has the second
noise parameter set to 0, which is valid; only a resulting sigma <= 0 is an error.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from sbmlhybrid.errors import InputError, NotSupportedError
from sbmlhybrid.problem import load_problem
from tests.conftest import SHARED

BENCHMARKS = SHARED / "benchmark_models"
REFERENCE = BENCHMARKS / "reference_values.tsv"
ROWS = (pd.read_csv(REFERENCE, sep="\t").to_dict("records") if REFERENCE.exists() else [])
SUITE = SHARED / "petab_test_suite"
SUITE_YAMLS = sorted(y for y in SUITE.glob("v*/*/*/_*.yaml")
                     if not y.name.endswith("_solution.yaml")) if SUITE.exists() else []
ABSENT = f"reference data {SHARED} is absent (../shared not checked out beside the repo)"

BACHMANN = "Bachmann_MSB2011"
BACHMANN_MEASUREMENTS = "measurementData_Bachmann_MSB2011.tsv"
PSTAT5_LINE = 361  # 1-based file line (header = 1): first pSTAT5_au row, "sd_STAT5_au;0"
SD_STAT5_AU = 0.123518909217589  # nominal value of sd_STAT5_au in the parameter table


@pytest.mark.skipif(not ROWS, reason=ABSENT)
def test_all_seventeen_benchmarks_listed() -> None:
    assert len(ROWS) == 17


@pytest.mark.skipif(not ROWS, reason=ABSENT)
@pytest.mark.parametrize("row", ROWS, ids=[r["problem"] for r in ROWS])
def test_benchmark_loads(row: dict) -> None:
    problem = load_problem(BENCHMARKS / row["problem"] / row["problem_yaml"])
    tables = problem.unflattened or problem.petab_problem
    assert len(tables.condition_df) == row["n_condition_rows"]
    assert int(tables.parameter_df["estimate"].sum()) == row["n_estimated_parameters"]


@pytest.mark.skipif(not SUITE_YAMLS, reason=ABSENT)
@pytest.mark.parametrize("yaml_path", SUITE_YAMLS,
                         ids=["/".join(y.parts[-4:-1]) for y in SUITE_YAMLS])
def test_suite_case_loads_or_is_unsupported(yaml_path: Path) -> None:
    try:
        problem = load_problem(yaml_path)
    except NotSupportedError:
        return  # valid PEtab that AMICI/this loader cannot simulate: not a false rejection
    except InputError as err:
        pytest.fail(f"valid PEtab case refused as invalid input: {err}")
    assert len(problem.petab_problem.measurement_df) > 0


def _bachmann_with_noise_parameters(tmp_path: Path, cell: str) -> tuple[Path, Path]:
    """A copy of Bachmann_MSB2011 whose measurement line PSTAT5_LINE has noiseParameters
    `cell`; returns (problem YAML, measurement file)."""
    folder = tmp_path / BACHMANN
    shutil.copytree(BENCHMARKS / BACHMANN, folder)
    measurements = folder / BACHMANN_MEASUREMENTS
    lines = measurements.read_text().splitlines(keepends=True)
    assert lines[PSTAT5_LINE - 1].rstrip("\n").endswith("\tsd_STAT5_au;0")
    lines[PSTAT5_LINE - 1] = lines[PSTAT5_LINE - 1].replace("\tsd_STAT5_au;0", f"\t{cell}")
    measurements.write_text("".join(lines))
    return folder / f"{BACHMANN}.yaml", measurements


@pytest.mark.skipif(not ROWS, reason=ABSENT)
@pytest.mark.parametrize(("cell", "sigma"), [("0;0", "0"), ("sd_STAT5_au;-0.2", "-0.0764811")])
def test_bachmann_nonpositive_sigma_rejected(tmp_path: Path, cell: str, sigma: str) -> None:
    yaml_path, measurements = _bachmann_with_noise_parameters(tmp_path, cell)
    with pytest.raises(InputError) as info:
        load_problem(yaml_path)
    assert len(info.value.issues) == 1
    assert (f"{measurements}, row {PSTAT5_LINE}, column noiseParameters: sigma {sigma} of "
            "observable 'observable_pSTAT5_au' at nominal parameters must be finite and > 0"
            ) in str(info.value)


@pytest.mark.skipif(not ROWS, reason=ABSENT)
def test_bachmann_negative_noise_parameter_with_positive_sigma_accepted(tmp_path: Path) -> None:
    # sigma = 0.1235 - 0.1 > 0: a negative noise parameter is fine on its own.
    assert SD_STAT5_AU - 0.1 > 0
    yaml_path, _ = _bachmann_with_noise_parameters(tmp_path, "sd_STAT5_au;-0.1")
    problem = load_problem(yaml_path)
    cells = (problem.unflattened or problem.petab_problem).measurement_df["noiseParameters"]
    assert (cells == "sd_STAT5_au;-0.1").sum() == 1
