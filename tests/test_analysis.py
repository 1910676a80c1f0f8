"""Profiles and sampling against closed-form answers on a linear-Gaussian problem.

tests/data/linear: dA/dt = a, A(0) = b, y = A + N(0, 0.5^2): the negative log-likelihood is
exactly quadratic in (a, b), so the profile's 95 % interval of a is a_hat +- sqrt(chi2_0.95(1))
* sd(a) with sd from the regression covariance, and the posterior (flat prior within wide
bounds) is normal with that mean and covariance.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from sbmlhybrid.analysis import (
    ProfileSettings,
    SampleSettings,
    posterior_summary,
    profile,
    profile_intervals,
    sample,
)
from sbmlhybrid.cli.main import main
from sbmlhybrid.errors import InputError
from sbmlhybrid.objective import create_objective
from sbmlhybrid.optimize import FitSettings, fit
from sbmlhybrid.problem import load_problem
from tests.conftest import REPO

LINEAR = REPO / "tests" / "data" / "linear"
sys.path.insert(0, str(LINEAR))
from make_problem import analytic  # noqa: E402


@pytest.fixture(scope="module")
def linear():
    return create_objective(load_problem(LINEAR / "problem.yaml"))


@pytest.fixture(scope="module")
def fitted(linear, tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "result.hdf5"
    fit(linear, FitSettings(n_starts=3, seed=0), output=path, progress=False)
    return path


@pytest.fixture(scope="module")
def truth():
    y = pd.read_csv(LINEAR / "measurements.tsv", sep="\t")["measurement"].to_numpy()
    return analytic(y)


def test_profile_interval_matches_the_analytic_one(linear, fitted, truth, tmp_path) -> None:
    (a_hat, b_hat), cov = truth
    out = tmp_path / "profiles.hdf5"
    result = profile(linear, fitted, ProfileSettings(parameters=["a", "A0"]), output=out,
                     progress=False)
    table = profile_intervals(result).set_index("parameterId")
    half = np.sqrt(scipy.stats.chi2.ppf(0.95, 1)) * np.sqrt(np.diag(cov))
    for pid, est, h in (("a", a_hat, half[0]), ("A0", b_hat, half[1])):
        assert table.loc[pid, "estimate"] == pytest.approx(est, abs=1e-4)
        assert table.loc[pid, "lower"] == pytest.approx(est - h, abs=1e-2)
        assert table.loc[pid, "upper"] == pytest.approx(est + h, abs=1e-2)
        assert not table.loc[pid, "lower_at_bound"] and not table.loc[pid, "upper_at_bound"]
    # resume: a second call with the same output profiles nothing again
    again = profile(linear, fitted, ProfileSettings(parameters=["a", "A0"]), output=out,
                    progress=False)
    pd.testing.assert_frame_equal(profile_intervals(again), profile_intervals(result))


def test_posterior_mean_within_three_standard_errors(linear, fitted, truth, tmp_path) -> None:
    (a_hat, b_hat), cov = truth
    out = tmp_path / "samples.hdf5"
    result = sample(linear, fitted, SampleSettings(n_samples=6000, chunk=3000, seed=1),
                    output=out, progress=False)
    summary = posterior_summary(result).set_index("parameterId")
    assert summary["n_samples"].iloc[0] == 6000
    for pid, mean, var in (("a", a_hat, cov[0, 0]), ("A0", b_hat, cov[1, 1])):
        row = summary.loc[pid]
        assert abs(row["mean"] - mean) <= 3 * row["mc_se"], (pid, row.to_dict(), mean)
        assert row["sd"] == pytest.approx(np.sqrt(var), rel=0.15)
    # resumed to a longer chain: the first 6000 samples are kept, 2000 are added
    longer = sample(linear, fitted, SampleSettings(n_samples=8000, chunk=3000, seed=1),
                    output=out, progress=False)
    np.testing.assert_array_equal(longer.sample_result.trace_x[0][:6001],
                                  result.sample_result.trace_x[0])
    assert posterior_summary(longer)["n_samples"].iloc[0] == 8000


def test_cli_fit_profile_sample(tmp_path, truth, capsys) -> None:
    problem, out = str(LINEAR / "problem.yaml"), str(tmp_path / "r")
    assert main(["fit", problem, "--starts", "2", "--output", out, "--no-progress"]) == 0
    assert main(["profile", problem, "--output", out, "--no-progress"]) == 0
    table = pd.read_csv(tmp_path / "r" / "profile_intervals.tsv", sep="\t")
    (a_hat, _), cov = truth
    half = np.sqrt(scipy.stats.chi2.ppf(0.95, 1) * cov[0, 0])
    row = table.set_index("parameterId").loc["a"]
    assert row["lower"] == pytest.approx(a_hat - half, abs=1e-2)
    assert (tmp_path / "r" / "profiles.png").stat().st_size > 0
    assert main(["sample", problem, "--output", out, "--samples", "2000", "--no-progress"]) == 0
    for name in ("posterior_summary.tsv", "sample_traces.png", "sample_marginals.png"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    capsys.readouterr()
    assert main(["profile", problem, "--output", str(tmp_path / "none")]) == 2
    assert "run `sbmlhybrid fit` first" in capsys.readouterr().err


def test_bad_settings_and_foreign_fit_files(linear, tmp_path) -> None:
    with pytest.raises(InputError, match="alpha"):
        ProfileSettings(alpha=1.5)
    with pytest.raises(InputError, match="n_samples"):
        SampleSettings(n_samples=0)
    foreign = tmp_path / "foreign.hdf5"
    foreign.write_bytes(b"not an hdf5 file")
    with pytest.raises(InputError, match="cannot read fit result"):
        profile(linear, foreign, progress=False)
    with pytest.raises(InputError, match="unknown estimated parameter"):
        profile(linear, foreign, ProfileSettings(parameters=["nope"]), progress=False)
