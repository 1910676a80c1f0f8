"""Generate the corpus of broken inputs from the tiny test problem (tests/data/tiny).

Each case is a folder with a full PEtab problem that has one defect; `cases.tsv` lists the
case, the file the CLI is given, the extra CLI arguments, and a fragment the error message
must contain (the offending file/entity/row). Run: python tests/broken_inputs/make_corpus.py
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
TINY = HERE.parent / "data" / "tiny"


def _tsv(folder: Path, name: str, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = folder / name
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    edit(df).to_csv(path, sep="\t", index=False)


def _set(name: str, row: int, col: str, value: str) -> Callable[[Path], None]:
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
    ("unknown_observable", _set("measurements.tsv", 3, "observableId", "obs_c"),
     "measurements.tsv, row 5, column observableId: unknown observable 'obs_c'",
     "problem.yaml", ""),
    ("unknown_condition", _set("measurements.tsv", 2, "simulationConditionId", "c9"),
     "row 4, column simulationConditionId: unknown condition 'c9'", "problem.yaml", ""),
    ("lb_gt_ub", _set("parameters.tsv", 1, "lowerBound", "20"),
     "parameters.tsv, row 3, column lowerBound: lowerBound 20.0 > upperBound", "problem.yaml",
     ""),
    ("nan_measurement", _set("measurements.tsv", 0, "measurement", "NaN"),
     "row 2, column measurement: non-finite measurement", "problem.yaml", ""),
    ("inf_measurement", _set("measurements.tsv", 7, "measurement", "inf"),
     "row 9, column measurement: non-finite measurement", "problem.yaml", ""),
    ("negative_time", _set("measurements.tsv", 1, "time", "-1"),
     "row 3, column time: negative time", "problem.yaml", ""),
    ("negative_under_log_noise", lambda f: (
        _add_col("observables.tsv", "observableTransformation", "log")(f),
        _set("measurements.tsv", 4, "measurement", "-0.2")(f)),
     "row 6, column measurement: measurement -0.2 <= 0 for observable obs_a with log-scale",
     "problem.yaml", ""),
    ("log_scale_nonpositive_bound", _set("parameters.tsv", 0, "lowerBound", "0"),
     "row 2, column lowerBound: lowerBound 0.0 must be > 0 for log10", "problem.yaml", ""),
    ("nominal_outside_bounds", _set("parameters.tsv", 2, "nominalValue", "50"),
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
    ("bare_sbml_unknown_observable", _set("measurements.tsv", 0, "observableId", "obs_zz"),
     "observable 'obs_zz' matches no SBML entity", "model.xml", "--measurements measurements.tsv"),
    ("bad_noise_parameter", lambda f: (
        _text("observables.tsv", "0.05\tnormal\n", "noiseParameter1_obs_a\tnormal\n")(f),
        _tsv(f, "measurements.tsv", lambda df: df.assign(noiseParameters=[
            ("-3" if i == 0 else "0.1") if o == "obs_a" else ""
            for i, o in enumerate(df["observableId"])]))),
     "row 2, column noiseParameters: noise parameter -3.0 must be finite and > 0",
     "problem.yaml", ""),
]


def main() -> None:
    rows = []
    for case, mutate, fragment, target, args in CASES:
        folder = HERE / case
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(TINY, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        mutate(folder)
        rows.append({"case": case, "input": target, "args": args, "expected": fragment})
    pd.DataFrame(rows).to_csv(HERE / "cases.tsv", sep="\t", index=False)


if __name__ == "__main__":
    main()
