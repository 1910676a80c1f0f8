"""Each broken input gives the intended error, CLI exit code 2, and leaves no cache entry."""

from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd
import pytest

from sbmlhybrid.cli.main import main
from sbmlhybrid.errors import InputError
from sbmlhybrid.problem import load_problem

CORPUS = Path(__file__).resolve().parent / "broken_inputs"
CASES = pd.read_csv(CORPUS / "cases.tsv", sep="\t", keep_default_na=False)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES.to_dict("records"), ids=list(CASES["case"]))
def test_broken_input(case: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture) -> None:
    folder = CORPUS / case["case"]
    monkeypatch.setenv("SBMLHYBRID_CACHE_DIR", str(tmp_path / "cache"))
    args = shlex.split(case["args"])
    measurements = str(folder / args[1]) if args else None

    with pytest.raises(InputError) as info:
        load_problem(folder / case["input"], measurements)
    assert case["expected"] in str(info.value)

    cli_args = [str(folder / a) if a.endswith(".tsv") else a for a in args]
    for command in (["validate"], ["simulate", "-o", str(tmp_path / "sim.tsv")]):
        code = main([*command, str(folder / case["input"]), *cli_args])
        err = capsys.readouterr().err
        assert code == 2, err
        assert case["expected"] in err
    assert not (tmp_path / "sim.tsv").exists()
    cache = tmp_path / "cache"
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_dir()]
