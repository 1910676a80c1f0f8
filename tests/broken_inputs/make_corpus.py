"""Generate the corpus of broken inputs from the tiny test problem (tests/data/tiny).

Each case is a folder with a full PEtab problem that has one defect; `cases.tsv` lists the
case, the file the CLI is given, the extra CLI arguments, and a fragment the error message
must contain (the offending file/entity/row). The PEtab v1 cases are below; the PEtab v2 and
PEtab SciML cases are in make_v2_corpus.py. Run: python tests/broken_inputs/make_corpus.py
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
TINY = HERE.parent / "data" / "tiny"


def _tsv(folder: Path, name: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = folder / name
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    edit(df).to_csv(path, sep="\t", index=False)


def set_cell(name: str, row: int, col: str, value: str) -> Callable[[Path], None]:
    """An edit of `folder`: table `name`, data row `row` (0-based), column `col` := value."""
    def apply(folder: Path) -> None:
        def edit(df: pd.DataFrame) -> pd.DataFrame:
            df.loc[row, col] = value
            return df
        _tsv(folder, name, edit)
    return apply


def _text(name: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / name
        text = path.read_text()
        assert old in text, (name, old)
        path.write_text(text.replace(old, new, 1))
    return apply


def _drop_col(name: str, col: str) -> Callable[[Path], None]:
    return lambda folder: _tsv(folder, name, lambda df: df.drop(columns=[col]))


def _add_col(name: str, col: str, value: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        def edit(df: pd.DataFrame) -> pd.DataFrame:
            df[col] = value
            return df
        _tsv(folder, name, edit)
    return apply


def _add_row(name: str, row: dict[str, str]) -> Callable[[Path], None]:
    return lambda folder: _tsv(folder, name, lambda df: pd.concat([df, pd.DataFrame([row])]))


def _duplicate_row(name: str, row: int) -> Callable[[Path], None]:
    """Append a copy of data row `row` (0-based) at the end of the table."""
    return lambda folder: _tsv(folder, name, lambda df: pd.concat([df, df.iloc[[row]]]))


def _no_rows(name: str) -> Callable[[Path], None]:
    """Keep the header, drop every data row."""
    return lambda folder: _tsv(folder, name, lambda df: df.iloc[0:0])


def _noise_parameters(formula: str, default: str, special: dict[int, str]
                      ) -> Callable[[Path], None]:
    """obs_a gets noise formula `formula`; its measurement rows get noiseParameters
    `default`, except 0-based table rows in `special` (row -> cell)."""
    def apply(folder: Path) -> None:
        _text("observables.tsv", "A\t0.05\tnormal\n", f"A\t{formula}\tnormal\n")(folder)
        _tsv(folder, "measurements.tsv", lambda df: df.assign(noiseParameters=[
            special.get(i, default) if o == "obs_a" else ""
            for i, o in enumerate(df["observableId"])]))
    return apply


def _truncate_sbml(folder: Path) -> None:
    path = folder / "model.xml"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[: len(lines) // 2]) + "\n")


# case id, mutation, expected fragment of the message, input file, extra args
CASES: list[tuple[str, Callable[[Path], None], str, str, str]] = [
    ("malformed_sbml", _truncate_sbml, "model.xml, row", "problem.yaml", ""),
    ("sbml_missing", lambda f: (f / "model.xml").unlink(), "SBML file not found",
     "problem.yaml", ""),
    ("measurements_missing", lambda f: (f / "measurements.tsv").unlink(),
     "measurements.tsv: measurement file not found", "problem.yaml", ""),
    ("yaml_syntax", _text("problem.yaml", "problems:", "problems: [\n"), "invalid YAML",
     "problem.yaml", ""),
    ("yaml_not_petab", _text("problem.yaml", "problems:", "problemz:"), "no 'problems' entry",
     "problem.yaml", ""),
    ("unknown_observable", set_cell("measurements.tsv", 3, "observableId", "obs_c"),
     "measurements.tsv, row 5, column observableId: unknown observable 'obs_c'",
     "problem.yaml", ""),
    ("unknown_condition", set_cell("measurements.tsv", 2, "simulationConditionId", "c9"),
     "row 4, column simulationConditionId: unknown condition 'c9'", "problem.yaml", ""),
    ("lb_gt_ub", set_cell("parameters.tsv", 1, "lowerBound", "20"),
     "parameters.tsv, row 3, column lowerBound: lowerBound 20.0 > upperBound", "problem.yaml",
     ""),
    ("nan_measurement", set_cell("measurements.tsv", 0, "measurement", "NaN"),
     "row 2, column measurement: non-finite measurement", "problem.yaml", ""),
    ("inf_measurement", set_cell("measurements.tsv", 7, "measurement", "inf"),
     "row 9, column measurement: non-finite measurement", "problem.yaml", ""),
    ("negative_time", set_cell("measurements.tsv", 1, "time", "-1"),
     "row 3, column time: negative time", "problem.yaml", ""),
    ("negative_under_log_noise", lambda f: (
        _add_col("observables.tsv", "observableTransformation", "log")(f),
        set_cell("measurements.tsv", 4, "measurement", "-0.2")(f)),
     "row 6, column measurement: measurement -0.2 <= 0 for observable obs_a with log-scale",
     "problem.yaml", ""),
    ("log_scale_nonpositive_bound", set_cell("parameters.tsv", 0, "lowerBound", "0"),
     "row 2, column lowerBound: lowerBound 0.0 must be > 0 for log10", "problem.yaml", ""),
    ("nominal_outside_bounds", set_cell("parameters.tsv", 2, "nominalValue", "50"),
     "row 4, column nominalValue: nominalValue 50.0 outside", "problem.yaml", ""),
    ("unknown_model_parameter", _text("observables.tsv", "scale * B", "scale * B * gain"),
     "gain", "problem.yaml", ""),
    ("parameter_not_in_model", lambda f: _tsv(f, "parameters.tsv", lambda df: pd.concat(
        [df, pd.DataFrame([{"parameterId": "ghost", "parameterScale": "lin",
                            "lowerBound": "0", "upperBound": "1", "nominalValue": "0.5",
                            "estimate": "1"}])])), "ghost", "problem.yaml", ""),
    ("unknown_condition_column", _add_col("conditions.tsv", "not_in_model", "1.0"),
     "not_in_model", "problem.yaml", ""),
    ("missing_time_column", _drop_col("measurements.tsv", "time"), "time", "problem.yaml", ""),
    ("compartment_in_conditions", _add_col("conditions.tsv", "cell", "2.0"),
     "initial size of compartment 'cell'", "problem.yaml", ""),
    ("bare_sbml_unknown_observable", set_cell("measurements.tsv", 0, "observableId", "obs_zz"),
     "observable 'obs_zz' matches no SBML entity", "model.xml", "--measurements measurements.tsv"),
    ("bad_noise_parameter", _noise_parameters("noiseParameter1_obs_a", "0.1", {0: "-3"}),
     "row 2, column noiseParameters: sigma -3 of observable 'obs_a' at nominal parameters "
     "must be finite and > 0", "problem.yaml", ""),
    ("sigma_zero_at_nominal", _noise_parameters(
        "noiseParameter1_obs_a + noiseParameter2_obs_a", "0.1;0", {3: "0;0"}),
     "measurements.tsv, row 5, column noiseParameters: sigma 0 of observable 'obs_a' at "
     "nominal parameters must be finite and > 0", "problem.yaml", ""),
    ("sigma_formula_negative", _text("observables.tsv", "A\t0.05", "A\t0.05 - 0.1"),
     "observables.tsv, row 2, column noiseFormula: sigma -0.05 of observable 'obs_a'",
     "problem.yaml", ""),
    ("sigma_parameter_nominal_zero", lambda f: (
        _text("observables.tsv", "scale * B\t0.05", "scale * B\tsigma_b")(f),
        _add_row("parameters.tsv", {"parameterId": "sigma_b", "parameterScale": "lin",
                                    "lowerBound": "0", "upperBound": "1", "nominalValue": "0",
                                    "estimate": "1"})(f)),
     "observables.tsv, row 3, column noiseFormula: sigma 0 of observable 'obs_b' at nominal",
     "problem.yaml", ""),
    ("infinite_noise_parameter", _noise_parameters("noiseParameter1_obs_a", "0.1", {0: "inf"}),
     "row 2, column noiseParameters: noise parameter inf must be finite", "problem.yaml", ""),
    ("duplicate_parameter_id", _duplicate_row("parameters.tsv", 1),
     "parameters.tsv, row 5, column parameterId: duplicate parameterId 'k2' (first on row 3)",
     "problem.yaml", ""),
    ("duplicate_observable_id", _duplicate_row("observables.tsv", 0),
     "observables.tsv, row 4, column observableId: duplicate observableId 'obs_a' (first on "
     "row 2)", "problem.yaml", ""),
    ("duplicate_condition_id", _duplicate_row("conditions.tsv", 1),
     "conditions.tsv, row 4, column conditionId: duplicate conditionId 'c1' (first on row 3)",
     "problem.yaml", ""),
    ("empty_measurement_table", _no_rows("measurements.tsv"),
     "measurements.tsv: measurement table has no rows", "problem.yaml", ""),
    ("bare_sbml_empty_measurements", _no_rows("measurements.tsv"),
     "measurements.tsv: measurement table has no rows", "model.xml",
     "--measurements measurements.tsv"),
    ("text_measurement", set_cell("measurements.tsv", 2, "measurement", "abc"),
     "measurements.tsv, row 4, column measurement: measurement 'abc' is not a number",
     "problem.yaml", ""),
    ("misspelled_measurement_column", lambda f: _tsv(f, "measurements.tsv", lambda df: df.rename(
        columns={"observableId": "observableID"})),
     "measurements.tsv, row 1: missing required column(s) ['observableId']", "problem.yaml", ""),
    ("unknown_preequilibration_condition", lambda f: (
        _add_col("measurements.tsv", "preequilibrationConditionId", "c0")(f),
        set_cell("measurements.tsv", 6, "preequilibrationConditionId", "c7")(f)),
     "row 8, column preequilibrationConditionId: unknown condition 'c7'", "problem.yaml", ""),
    ("unknown_parameter_scale", set_cell("parameters.tsv", 0, "parameterScale", "ln"),
     "parameters.tsv, row 2, column parameterScale: unknown parameterScale 'ln'",
     "problem.yaml", ""),
    ("estimate_not_binary", set_cell("parameters.tsv", 0, "estimate", "yes"),
     "parameters.tsv, row 2, column estimate: estimate must be 0 or 1, not 'yes'",
     "problem.yaml", ""),
    ("fixed_parameter_without_nominal", lambda f: (
        set_cell("parameters.tsv", 0, "estimate", "0")(f),
        set_cell("parameters.tsv", 0, "nominalValue", "")(f)),
     "parameters.tsv, row 2, column nominalValue: nominalValue is required for a parameter "
     "that is not estimated", "problem.yaml", ""),
    ("parameter_file_missing", lambda f: (f / "parameters.tsv").unlink(),
     "parameters.tsv: parameter file not found", "problem.yaml", ""),
    ("unknown_noise_distribution", set_cell("observables.tsv", 0, "noiseDistribution", "gaussian"),
     "Unrecognized noise distribution in observable table: gaussian", "problem.yaml", ""),
    ("observable_formula_syntax", _text("observables.tsv", "scale * B", "scale * (B"),
     "Error parsing 'scale * (B'", "problem.yaml", ""),
    ("noise_formula_syntax", _text("observables.tsv", "A\t0.05", "A\t0.05 *"),
     "Error parsing '0.05 *'", "problem.yaml", ""),
    ("unsupported_format_version", _text("problem.yaml", "format_version: 1",
                                         "format_version: 3"),
     "PEtab format_version 3 is not supported", "problem.yaml", ""),
]


def main() -> None:
    sys.path.insert(0, str(HERE.parents[1]))  # the repository: tests.sciml_spec_builder
    from tests.broken_inputs.make_v2_corpus import CASES as V2_CASES

    rows = []
    cases = [(c, True) for c in CASES] + [(c, False) for c in V2_CASES]
    for (case, mutate, fragment, target, args), from_tiny in cases:
        folder = HERE / case
        if folder.exists():
            shutil.rmtree(folder)
        if from_tiny:  # v1 mutations edit a copy; the v2 and SciML writers write it all
            shutil.copytree(TINY, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        mutate(folder)
        rows.append({"case": case, "input": target, "args": args, "expected": fragment})
    pd.DataFrame(rows).to_csv(HERE / "cases.tsv", sep="\t", index=False)


if __name__ == "__main__":
    main()
