"""Each broken input gives the intended error, CLI exit code 2, and leaves no cache entry.

The corpus (tests/broken_inputs, written by its make_corpus.py) holds PEtab v1, PEtab v2
and PEtab SciML problems, each a valid base problem with one defect; they load through the
front door, `sbmlhybrid.load_problem`, as the CLI loads them.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from sbmlhybrid.api import load_problem
from sbmlhybrid.cli.main import main
from sbmlhybrid.errors import InputError
from tests.broken_inputs import make_corpus, make_v2_corpus

CORPUS = Path(__file__).resolve().parent / "broken_inputs"
CASES = pd.read_csv(CORPUS / "cases.tsv", sep="\t", keep_default_na=False)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


def test_cases_table_matches_the_generators() -> None:
    """cases.tsv and the case folders are what make_corpus.py writes (regenerate after
    editing a generator)."""
    generated = [(c[0], c[3], c[4], c[2]) for c in make_corpus.CASES + make_v2_corpus.CASES]
    assert list(CASES.itertuples(index=False, name=None)) == generated
    assert all((CORPUS / case / target).is_file() for case, target, _, _ in generated)


def _tiny(folder: Path) -> Path:
    return make_corpus.TINY / "problem.yaml"


@pytest.mark.parametrize("write", [_tiny, *make_v2_corpus.BASES.values()],
                         ids=["tiny_v1", *make_v2_corpus.BASES])
def test_base_problems_are_valid(write: Callable[[Path], Path], tmp_path: Path) -> None:
    """The problems the cases break load without error: each case has one defect."""
    problem = load_problem(write(tmp_path / "p"))
    assert len(problem.condition_ids) >= 1


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
