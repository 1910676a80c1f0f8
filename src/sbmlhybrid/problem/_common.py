"""What the PEtab v1 and v2 loaders share: solver settings, reading the SBML model and TSV
tables, names.

Private to `sbmlhybrid.problem`: `load` (v1, bare SBML) and `v2` both import from here, so
neither imports the other at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libsbml
import pandas as pd

from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.problem.validate import sbml_read_issues

#: pandas < 3 parses floats with a fast, not always correctly rounded, routine unless told
#: ``round_trip``; pandas 3 parses them exactly by default and deprecates the argument.
_EXACT_FLOATS = {"float_precision": "round_trip"} \
    if int(pd.__version__.split(".")[0]) < 3 else {}


def read_tsv(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """A tab-separated table with every float parsed exactly (the nearest double), on every
    supported pandas; `kwargs` go to `pandas.read_csv`."""
    return pd.read_csv(path, sep="\t", **_EXACT_FLOATS, **kwargs)


@dataclass
class SolverSettings:
    """CVODES settings of a problem; `sbmlhybrid: {solver: {...}}` in the problem YAML.

    Attributes:
        rtol: Relative tolerance.
        atol: Absolute tolerance (state units).
        max_steps: Maximum number of integration steps per simulation.
        sensitivity_method: "forward", "adjoint" or "auto" (chosen by problem size).
        steady_state_rtol: Relative tolerance of pre-equilibration steady states.
        multistep: "bdf" (stiff problems; CVODES' and AMICI's default) or "adams"
            (Adams-Moulton, for non-stiff problems: fewer steps at tight tolerances).
        nonlinear_iteration: "newton" (default) or "fixedpoint" (functional iteration, the
            usual partner of "adams": no Jacobian solves).
        quadrature_rtol: Relative tolerance of the adjoint gradient quadratures; None keeps
            AMICI's default (1e-8), whatever `rtol` is.
        quadrature_atol: Absolute tolerance of the quadratures (units of the objective per
            parameter); None keeps AMICI's default (1e-12). With AMICI's defaults the backward
            pass of a loose-tolerance adjoint run costs as much as a tight one (CHO gray box
            at rtol 1e-3: 0.84 s per gradient, 0.35 s with the quadratures at rtol/atol).
    """

    rtol: float = 1e-8
    atol: float = 1e-16  # AMICI default; Fujita needs it to reproduce its reference
    max_steps: int = 10_000  # AMICI default; larger values slow adjoint runs (checkpoint memory)
    sensitivity_method: str = "auto"
    # AMICI's default (1e-6) stops pre-equilibration early when no sensitivities are computed,
    # so fval-only and fval+gradient calls disagree (Isensee llh off by 8e-3).
    steady_state_rtol: float | None = 1e-12
    multistep: str = "bdf"
    nonlinear_iteration: str = "newton"
    quadrature_rtol: float | None = None
    quadrature_atol: float | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("multistep", ("bdf", "adams")),
                              ("nonlinear_iteration", ("newton", "fixedpoint"))):
            if getattr(self, name) not in allowed:
                raise InputError(f"solver.{name} must be one of {', '.join(allowed)}, "
                                 f"not {getattr(self, name)!r}")
        for name in ("quadrature_rtol", "quadrature_atol"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InputError(f"solver.{name} must be positive, got {value!r}")
        if self.sensitivity_method not in ("auto", "forward", "adjoint"):
            raise InputError(
                f"solver.sensitivity_method must be auto, forward or adjoint, "
                f"not {self.sensitivity_method!r}"
            )
        if not (self.rtol > 0 and self.atol > 0 and self.max_steps > 0):
            raise InputError("solver tolerances and max_steps must be positive")


def solver_settings(config: dict[str, Any], defaults: dict[str, Any] | None = None
                    ) -> SolverSettings:
    """The YAML's ``sbmlhybrid: solver:`` entry; `defaults` (else `SolverSettings`' own)
    where absent. InputError names an unknown key or a non-mapping entry."""
    given = (config.get("sbmlhybrid") or {}).get("solver") or {}
    if not isinstance(given, dict):
        raise InputError("'sbmlhybrid: solver:' must be a mapping of solver settings")
    unknown = sorted(set(given) - set(SolverSettings.__dataclass_fields__))
    if unknown:
        raise InputError(f"unknown solver setting(s) {unknown} under sbmlhybrid: solver:; "
                         f"known: {sorted(SolverSettings.__dataclass_fields__)}")
    return SolverSettings(**{**(defaults or {}), **given})


def problem_name(path: Path) -> str:
    """Short name of a problem YAML: its stem, or folder + suffix for ``problem*.yaml``."""
    stem = path.stem
    name = path.parent.name + stem[len("problem"):] if stem.startswith("problem") else stem
    return name.strip("_") or "problem"


def load_sbml(path: Path) -> libsbml.SBMLDocument:
    """The SBML document; InputError with libsbml's line numbers if it cannot be read."""
    if not path.is_file():
        raise InputError(Issue("SBML file not found", file=str(path)))
    issues = sbml_read_issues(path)
    if issues:
        raise InputError(issues, header=f"Cannot read SBML model {path}")
    return libsbml.SBMLReader().readSBML(str(path))
