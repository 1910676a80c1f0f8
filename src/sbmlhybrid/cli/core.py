"""`sbmlhybrid validate | simulate | fit | cache`: thin wrappers over the library API.

Every problem kind goes through the front door (`sbmlhybrid.api`): PEtab v1 and v2 YAMLs,
PEtab SciML YAMLs (networks in torch or unrolled into the SBML, e.g. a `hybridize()` problem
written by `sbmlhybrid.sciml.problem_export`), and bare SBML with ``--measurements``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from sbmlhybrid.errors import InputError


def _add_problem_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("problem", help="PEtab v1/v2 or PEtab SciML problem YAML, or an SBML file "
                   "with --measurements")
    p.add_argument("--measurements", help="measurement TSV for a bare SBML model")
    p.add_argument("--rtol", type=float, help="relative solver tolerance (overrides the problem)")
    p.add_argument("--atol", type=float, help="absolute solver tolerance (overrides the problem)")
    p.add_argument("--sensitivities", choices=["auto", "forward", "adjoint"],
                   help="sensitivity method (default: the problem's, else auto by size)")


def _load(args: argparse.Namespace):
    from sbmlhybrid.api import load_problem

    problem = load_problem(args.problem, args.measurements)
    if getattr(args, "rtol", None):
        problem.solver.rtol = args.rtol
    if getattr(args, "atol", None):
        problem.solver.atol = args.atol
    if getattr(args, "sensitivities", None):
        problem.solver.sensitivity_method = args.sensitivities
    return problem


def _objective(args: argparse.Namespace):
    from sbmlhybrid.api import create_objective

    objective = create_objective(_load(args))
    compiled = getattr(objective, "compiled", None)
    if compiled is not None:
        print(f"model {compiled.module_name}: {'cache hit' if compiled.hit else 'compiled'} "
              f"in {compiled.seconds:.1f} s", file=sys.stderr)
    return objective


def _parse_parameters(text: str | None, objective) -> np.ndarray | None:
    """`--parameters` as a TSV (parameterId, value on PEtab scale) or JSON {id: value}."""
    if not text:
        return None
    path = Path(text)
    if path.suffix == ".json" or not path.exists():
        values = json.loads(path.read_text() if path.exists() else text)
    else:
        df = pd.read_csv(path, sep="\t")
        values = dict(zip(df.iloc[:, 0], df.iloc[:, 1]))
    x = objective.x_nominal_free.copy()
    ids = objective.x_free_ids
    unknown = sorted(set(values) - set(ids))
    if unknown:
        raise InputError(f"unknown estimated parameter(s) {unknown} in --parameters; "
                         f"known: {ids}")
    for k, v in values.items():
        x[ids.index(k)] = float(v)
    return x


def cmd_validate(args: argparse.Namespace) -> int:
    from sbmlhybrid.api import describe

    problem = _load(args)
    d = describe(problem)
    nets = "".join(f", network {n} ({how})" for n, how in d["networks"].items())
    print(f"OK: {problem.source} ({d['kind']}) — {d['measurements']} measurements, "
          f"{d['conditions']} conditions, {d['estimated']} estimated parameters{nets}")
    if d["defaults"]:
        print("defaults applied:")
        for line in d["defaults"]:
            print(f"  - {line}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    objective = _objective(args)
    x = _parse_parameters(args.parameters, objective)
    table = objective.simulate(x, args.conditions)
    ev = objective.evaluate(x, args.conditions, gradient=False)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    table.to_csv(tmp, sep="\t", index=False)
    tmp.replace(out)
    print(f"wrote {out} ({len(table)} rows); negative log-likelihood {ev.fval:.6g}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from sbmlhybrid.objective.model_objective import DEFAULT_THREADS
    from sbmlhybrid.optimize import FitSettings, fit, summary_table
    from sbmlhybrid.results import write_fit_plots

    if args.threads is None:  # engines with several processes already use the cores
        args.threads = 1 if args.engine in ("process", "mpi") else DEFAULT_THREADS
    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    if args.threads > 1 and args.engine == "process":  # forked workers hang in libgomp
        raise InputError("--threads > 1 cannot be combined with --engine process: use "
                         "--engine single --threads N, or --engine process --workers N")
    optimizer = _minibatch_optimizer(args) or args.optimizer
    screen = _screen_options(args)
    settings = FitSettings(n_starts=args.starts, optimizer=optimizer, engine=args.engine,
                           workers=args.workers, seed=args.seed, max_iter=args.max_iter,
                           **screen)
    objective = _objective(args)
    if hasattr(objective, "n_threads"):
        objective.n_threads = args.threads
    out = Path(args.output)
    result = fit(objective, settings, output=out / "result.hdf5", overwrite=args.overwrite,
                 progress=not args.no_progress)
    table = summary_table(result)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    paths = write_fit_plots(result, objective, out)
    best = result.optimize_result.list[0]
    x_best = np.asarray(best.x)[objective.pypesto_problem.x_free_indices]
    pd.DataFrame({"parameterId": objective.x_free_ids, "estimate_scaled": x_best}).to_csv(
        out / "best_parameters.tsv", sep="\t", index=False)
    print(f"results in {out}: result.hdf5, best_parameters.tsv, "
          + ", ".join(p.name for p in paths))
    return 0 if np.isfinite(best.fval) else 1


def _screen_options(args: argparse.Namespace) -> dict:
    """FitSettings fields of ``--polish X --polish-screen REL`` (`_minibatch_optimizer` has
    checked X and left the polish out of the mini-batch runs)."""
    from sbmlhybrid.optimize import METHODS

    margin = getattr(args, "polish_screen", None)
    if margin is None:
        return {}
    if str(args.optimizer).lower() not in METHODS:
        raise InputError(f"--polish-screen only applies to mini-batch optimizers "
                         f"({', '.join(METHODS)}), not --optimizer {args.optimizer}")
    if args.polish is None:
        raise InputError("--polish-screen needs --polish (fides or lbfgsb): the optimizer "
                         "run from the screened end points")
    if not (np.isfinite(margin) and margin >= 0):
        raise InputError(f"--polish-screen must be >= 0, got {margin}")
    return {"screen_margin": float(margin), "screen_optimizer": args.polish}


def _minibatch_optimizer(args: argparse.Namespace):
    """A mini-batch optimizer from ``--optimizer NAME --batch-size --epochs ...``, or None.

    Options that only mini-batch optimizers take are refused with a full-batch optimizer,
    and every value is checked (InputError names the option: exit code 2).
    """
    from sbmlhybrid.optimize import METHODS, OPTIMIZERS, MiniBatchOptimizer

    name = str(args.optimizer).lower()
    given = {opt: getattr(args, dest) for opt, dest in _MINIBATCH_OPTIONS.items()
             if getattr(args, dest, None) is not None}
    if name in OPTIMIZERS:
        if given:
            raise InputError(f"{', '.join(given)} only apply to mini-batch optimizers "
                             f"({', '.join(METHODS)}), not --optimizer {name}")
        return None
    if name not in METHODS:
        raise InputError(f"unknown --optimizer {name!r}; choose from "
                         f"{', '.join(OPTIMIZERS + METHODS)}")
    for opt in ("--batch-size", "--epochs", "--max-steps"):
        if opt in given and given[opt] < 1:
            raise InputError(f"{opt} must be >= 1, got {given[opt]}")
    if "--learning-rate" in given and not given["--learning-rate"] > 0:
        raise InputError(f"--learning-rate must be > 0, got {given['--learning-rate']}")
    if "--polish" in given and given["--polish"] not in OPTIMIZERS:
        raise InputError(f"unknown --polish optimizer {given['--polish']!r}; choose from "
                         f"{', '.join(OPTIMIZERS)}")
    options = {dest: value for opt, value in given.items()
               for dest in [_MINIBATCH_OPTIONS[opt]]}
    if getattr(args, "polish_screen", None) is not None:
        options.pop("polish", None)  # the screened starts are polished after all starts
    return MiniBatchOptimizer(method=name, seed=args.seed, n_threads=args.threads,
                              polish_max_iter=args.max_iter if "--polish" in given else 50,
                              **options)


#: CLI option -> MiniBatchOptions field (all default to None: "not given").
_MINIBATCH_OPTIONS = {"--batch-size": "batch_size", "--epochs": "epochs",
                      "--max-steps": "max_steps", "--learning-rate": "learning_rate",
                      "--schedule": "schedule", "--polish": "polish"}


def cmd_cache(args: argparse.Namespace) -> int:
    from sbmlhybrid.build import cache_root, clear_cache

    if args.clear:
        print(f"removed {clear_cache()} cached model(s) from {cache_root()}")
    else:
        root = cache_root()
        entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")] \
            if root.exists() else []
        print(f"{root}: {len(entries)} model(s)")
        for p in sorted(entries):
            print(f"  {p.name}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from sbmlhybrid.objective.model_objective import DEFAULT_THREADS
    from sbmlhybrid.optimize import ENGINES

    p = subparsers.add_parser("validate", help="lint a PEtab problem (exit 2 if invalid)")
    _add_problem_args(p)
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser("simulate", help="simulate a problem; write a PEtab simulation table")
    _add_problem_args(p)
    p.add_argument("--parameters", help="TSV (id, value on PEtab scale) or JSON; default nominal")
    p.add_argument("--conditions", nargs="*", help="simulation condition ids (default all)")
    p.add_argument("-o", "--output", default="simulation.tsv")
    p.set_defaults(func=cmd_simulate)

    p = subparsers.add_parser("fit", help="multi-start parameter estimation")
    _add_problem_args(p)
    p.add_argument("--starts", type=int, default=10, help="number of starts (default 10)")
    p.add_argument("--optimizer", default="fides",
                   help="fides | lbfgsb | a mini-batch optimizer (sgd, adam, ...)")
    p.add_argument("--engine", choices=ENGINES, default="single")
    p.add_argument("--workers", type=int, help="processes/threads for the engine")
    p.add_argument("--seed", type=int, default=0, help="start-point seed")
    p.add_argument("--max-iter", type=int, default=1000, help="iterations per start")
    p.add_argument("-o", "--output", default="results", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier result")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int,
                   help="AMICI threads simulating the conditions of an evaluation (default "
                   f"{DEFAULT_THREADS}; not with --engine process)")
    g = p.add_argument_group("mini-batch optimizers (--optimizer sgd, adam, rmsprop, ...)")
    g.add_argument("--batch-size", type=int, help="conditions per batch (default 8)")
    g.add_argument("--epochs", type=int, help="maximum passes over the conditions (default 50)")
    g.add_argument("--max-steps", type=int, help="maximum batch updates (default: no limit)")
    g.add_argument("--learning-rate", type=float, help="start learning rate (default per method)")
    g.add_argument("--schedule", help="learning-rate schedule: constant, linear, "
                   "inverse-linear, logarithmic")
    g.add_argument("--polish", help="full-batch optimizer run after the mini-batch phase "
                   "(fides or lbfgsb; its iteration limit is --max-iter)")
    g.add_argument("--polish-screen", type=float, metavar="REL",
                   help="polish only the starts whose mini-batch end value is within REL x "
                   "|best| of the best, after all starts, to convergence (e.g. 1e-3)")
    p.set_defaults(func=cmd_fit)

    p = subparsers.add_parser("cache", help="list or clear the compiled-model cache")
    p.add_argument("--clear", action="store_true")
    p.set_defaults(func=cmd_cache)
