"""`sbmlhybrid profile | sample`: uncertainty analysis of a stored fit (thin wrappers)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sbmlhybrid.cli.core import _add_problem_args, _objective
from sbmlhybrid.errors import InputError


def _fit_file(args: argparse.Namespace) -> Path:
    path = Path(args.fit) if args.fit else Path(args.output) / "result.hdf5"
    if not path.is_file():
        raise InputError(f"fit result {path} not found: run `sbmlhybrid fit` first "
                         "(or pass --fit)")
    return path


def cmd_profile(args: argparse.Namespace) -> int:
    from sbmlhybrid.analysis import ProfileSettings, profile, profile_intervals
    from sbmlhybrid.results import write_profile_plots

    settings = ProfileSettings(parameters=args.parameters, alpha=args.alpha,
                               optimizer=args.optimizer, max_iter=args.max_iter)
    fit_file = _fit_file(args)
    objective = _objective(args)
    out = Path(args.output)
    result = profile(objective, fit_file, settings, output=out / "profiles.hdf5",
                     progress=not args.no_progress)
    table = profile_intervals(result, args.alpha)
    table.to_csv(out / "profile_intervals.tsv", sep="\t", index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    paths = write_profile_plots(result, out, args.alpha)
    print(f"results in {out}: profiles.hdf5, profile_intervals.tsv, "
          + ", ".join(p.name for p in paths))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from sbmlhybrid.analysis import SampleSettings, posterior_summary, sample
    from sbmlhybrid.results import write_sample_plots

    settings = SampleSettings(n_samples=args.samples, chunk=args.chunk, seed=args.seed)
    fit_file = _fit_file(args)
    objective = _objective(args)
    out = Path(args.output)
    result = sample(objective, fit_file, settings, output=out / "samples.hdf5",
                    progress=not args.no_progress)
    table = posterior_summary(result)
    table.to_csv(out / "posterior_summary.tsv", sep="\t", index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    paths = write_sample_plots(result, out)
    print(f"results in {out}: samples.hdf5, posterior_summary.tsv, "
          + ", ".join(p.name for p in paths))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("profile", help="profile likelihoods of a stored fit")
    _add_problem_args(p)
    p.add_argument("--fit", help="fit result (default: OUTPUT/result.hdf5)")
    p.add_argument("--parameters", nargs="*", help="parameter ids (default all estimated)")
    p.add_argument("--alpha", type=float, default=0.95, help="confidence level (0.95)")
    p.add_argument("--optimizer", default="lbfgsb", help="lbfgsb | fides (re-optimization)")
    p.add_argument("--max-iter", type=int, default=200, help="iterations per profile point")
    p.add_argument("-o", "--output", default="results", help="output folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_profile)

    p = subparsers.add_parser("sample", help="MCMC sampling of the posterior from a stored fit")
    _add_problem_args(p)
    p.add_argument("--fit", help="fit result (default: OUTPUT/result.hdf5)")
    p.add_argument("--samples", type=int, default=10_000, help="chain length (10000)")
    p.add_argument("--chunk", type=int, default=2_000, help="samples per checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="results", help="output folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_sample)
