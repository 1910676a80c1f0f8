"""The front door: one `load_problem` for every kind of input, one `create_objective`.

    problem = load_problem(path)            # PEtab v1 / v2 / SciML YAML, or SBML + table
    problem = hybridize(problem, terms)     # optional: networks compiled into the model
    objective = create_objective(problem)   # the objective protocol (`Objective`)
    result = fit(objective, FitSettings(n_starts=10), output="fit.hdf5")
    profile(objective, "fit.hdf5"); sample(objective, "fit.hdf5")

`load_problem` reads the YAML once to see what it is: a YAML with a PEtab SciML extension
section (``extensions: {sciml | petab_sciml: {neural_networks | neural_nets: ...}}``) goes to
the SciML importer (`sbmlhybrid.sciml.importer`, torch-side networks and networks unrolled
into the SBML), everything else to `sbmlhybrid.problem.load_problem` (PEtab v1, PEtab v2,
bare SBML + measurement table). The result is a `Problem`; `create_objective` turns any of
them into an object of the `Objective` protocol: `ModelObjective` (PEtab v1, bare SBML,
hybrid problems, compiled with their own code-generation choice), `PetabV2Objective`,
`SciMLObjective`. This module sits above the problem layer because the SciML dispatch
needs torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml

from sbmlhybrid.analysis import ProfileSettings, SampleSettings, profile, sample
from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.hybrid import hybridize
from sbmlhybrid.hybrid.objective import objective_of
from sbmlhybrid.objective import Objective
from sbmlhybrid.optimize import FitSettings, fit
from sbmlhybrid.problem import SolverSettings
from sbmlhybrid.problem import load_problem as _load_petab
from sbmlhybrid.problem.v2 import ProblemV2
from sbmlhybrid.sciml.importer import load_sciml_problem
from sbmlhybrid.sciml.objective import SciMLObjective
from sbmlhybrid.sciml.problem import find_sciml_section
from sbmlhybrid.sciml.sciml_problem import SciMLProblem

__all__ = ["FitSettings", "Objective", "Problem", "ProfileSettings", "SampleSettings",
           "create_objective", "describe", "fit", "hybridize", "load_problem", "profile",
           "sample"]

_SBML_SUFFIXES = (".xml", ".sbml")


@runtime_checkable
class Problem(Protocol):
    """What `load_problem` returns, for every kind of input.

    Concrete types: `sbmlhybrid.problem.Problem` (PEtab v1, bare SBML; `HybridProblem` after
    `hybridize`), `sbmlhybrid.problem.v2.ProblemV2` (PEtab v2) and
    `sbmlhybrid.sciml.SciMLProblem` (PEtab SciML).

    Attributes:
        name: Short identifier (output and build names).
        source: The file it was loaded from.
        solver: Solver settings (`SolverSettings`); changing them changes the simulations.
        condition_ids: The units of simulation with data (conditions or experiments).
    """

    name: str
    source: Path | None
    solver: SolverSettings

    @property
    def condition_ids(self) -> list[str]: ...


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(Issue(f"invalid YAML: {err}", str(path),
                               mark.line + 1 if mark else None)) from err


def load_problem(path: str | Path, measurements: str | Path | None = None,
                 solver: SolverSettings | None = None) -> Problem:
    """Load and validate any problem: PEtab v1 or v2 YAML, PEtab SciML YAML, or a bare SBML
    model with a measurement table.

    Args:
        path: The problem YAML, or an SBML file (then `measurements` is required).
        measurements: Measurement TSV of a bare SBML model.
        solver: Solver settings; default: the YAML's ``sbmlhybrid: solver:`` entries over
            the defaults of the kind (SciML: `sbmlhybrid.sciml.importer.SCIML_SOLVER`).

    Raises:
        InputError: every problem found, with file, row, column or entity.
        NotSupportedError: a feature AMICI (or the SciML import) cannot handle, named.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(Issue("file not found", file=str(path)))
    if path.suffix.lower() in _SBML_SUFFIXES:
        return _load_petab(path, measurements, solver)
    config = _read_yaml(path)
    if isinstance(config, dict) and find_sciml_section(config) is not None:
        if measurements is not None:
            raise InputError(Issue("a measurement table (--measurements) is for bare SBML "
                                   "models; a SciML problem lists its own", str(path)))
        return load_sciml_problem(path, solver, config)
    return _load_petab(path, measurements, solver)


def create_objective(problem: Problem, compiled: Any = None,
                     sensitivity_method: str | None = None) -> Objective:
    """The objective of any problem from `load_problem` (or `hybridize`), compiled or taken
    from the cache; see the `Objective` protocol.

    Args:
        problem: The problem.
        compiled: Its compiled model (`sbmlhybrid.build.CompiledModel`), if at hand.
        sensitivity_method: "forward", "adjoint" or "auto" (default: the problem's setting).
    """
    if isinstance(problem, SciMLProblem):
        return SciMLObjective(problem, sensitivity_method, compiled)
    return objective_of(problem, compiled, sensitivity_method)


def describe(problem: Problem) -> dict[str, Any]:
    """What `sbmlhybrid validate` prints: kind, measurements, conditions (experiments),
    estimated parameters, networks (SciML and hybrid problems), and the defaults the loader
    applied (``defaults``: one line each; a bare SBML model's derived condition, observables,
    noise parameters and estimated parameters, `sbmlhybrid.problem.Problem.notes`)."""
    defaults = list(getattr(problem, "notes", None) or [])
    if isinstance(problem, SciMLProblem):
        inner = problem.problem.petab_problem
        return {"kind": "PEtab SciML", "measurements": len(inner.measurement_df),
                "conditions": len(problem.condition_ids), "estimated": problem.n_free,
                "networks": {n: "pre-initialization" if any(p.nn_id == n for p in problem.pre)
                             else "unrolled into the SBML" for n in problem.networks},
                "defaults": defaults}
    pp = problem.petab_problem
    hybrid = getattr(problem, "hybrid", None)
    kind = "PEtab v2" if isinstance(problem, ProblemV2) else \
        "hybrid PEtab v1" if hybrid is not None else "PEtab v1"
    return {"kind": kind, "measurements": len(pp.measurement_df),
            "conditions": len(problem.condition_ids), "estimated": len(pp.x_free_ids),
            "networks": {t.name: "unrolled into the SBML" for t in hybrid.terms}
            if hybrid is not None else {}, "defaults": defaults}
