"""`SciMLProblem`: a PEtab SciML problem as imported (`sbmlhybrid.sciml.importer`).

What `sbmlhybrid.load_problem` returns for a PEtab SciML YAML: the v1 problem AMICI simulates
(a `HybridProblem` when networks are unrolled into the SBML), the networks with their nominal
parameters, what is estimated and the routing of pre-initialization networks. It has the
attributes of the one `sbmlhybrid.Problem` type (``name``, ``source``, ``solver``,
``condition_ids``); its objective is `sbmlhybrid.create_objective(problem)`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sbmlhybrid.problem import Problem, SolverSettings

__all__ = ["PreNetwork", "SciMLProblem"]


@dataclass
class PreNetwork:
    """A pre-initialization network and, per experiment, its input sources.

    Attributes:
        nn_id: Network id.
        io: Its slots (`sbmlhybrid.sciml.routing.NetworkIO`).
        inputs: experiment id -> per argument, per element: a number or an
            `sbmlhybrid.sciml.inputs.InputExpression` of parameters; a whole-argument array
            input is one `sbmlhybrid.sciml.inputs.ArrayInput`.
        out_params: experiment id -> output index -> v1 parameter id.
    """

    nn_id: str
    io: Any
    inputs: dict[str, list[list[Any]]]
    out_params: dict[str, dict[int, str]]


@dataclass
class SciMLProblem:
    """A PEtab SciML problem compiled for AMICI (`sbmlhybrid.load_problem` on its YAML).

    Attributes:
        source: The problem YAML.
        problem: The v1 problem AMICI simulates (a `HybridProblem` when networks were
            unrolled into the SBML).
        networks: Network id -> module with nominal parameters.
        estimate: Network id -> {"layer.array": bool mask}, True = estimated.
        mech: Mechanistic parameter table (sciml table rows not mapped to networks),
            indexed by parameterId.
        pre: Pre-initialization networks.
        unrolled: Network id -> (hybridize `NetworkTerm`, Sequential index -> layer id).
        experiments: v2 experiment id -> (pre-equilibration, simulation) v1 condition ids.
        net_bounds: Network id -> {"layer.array": (lower, upper) arrays} from the parameter
            table (-inf/inf where it gives none).
        net_priors: Network id -> {"layer.array": object array of (priorDistribution,
            priorParameters) or None} from the parameter table (most specific row).
    """

    source: Path
    problem: Problem
    networks: dict[str, torch.nn.Module]
    estimate: dict[str, dict[str, np.ndarray]]
    mech: pd.DataFrame
    pre: list[PreNetwork]
    unrolled: dict[str, tuple[Any, dict[int, str]]]
    experiments: dict[str, tuple[str | None, str]]
    net_bounds: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = \
        field(default_factory=dict)
    net_priors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    #: `SciMLObjective`, set by the importer for the deprecated `objective` method only.
    objective_class: Any = field(default=None, repr=False, compare=False)

    def objective(self, sensitivity_method: str | None = None) -> Any:
        """Deprecated (issue 14): use ``sbmlhybrid.create_objective(problem)``."""
        warnings.warn("SciMLProblem.objective() is deprecated: use "
                      "sbmlhybrid.create_objective(problem)", DeprecationWarning, stacklevel=2)
        return self.objective_class(self, sensitivity_method)

    @property
    def name(self) -> str:
        """Short identifier (output and build names): the compiled problem's."""
        return self.problem.name

    @property
    def solver(self) -> SolverSettings:
        """Solver settings (the compiled problem's: changing them changes its simulations)."""
        return self.problem.solver

    @property
    def files(self) -> dict[str, str | None]:
        return self.problem.files

    @property
    def condition_ids(self) -> list[str]:
        """Experiments with measurements, in measurement-table order ("" for measurements
        without an experiment)."""
        by_condition = {(pre or "", sim): e for e, (pre, sim) in self.experiments.items()}
        mdf = self.problem.petab_problem.measurement_df
        pre = mdf.get("preequilibrationConditionId", pd.Series([""] * len(mdf)))
        keys = zip(pre.fillna("").astype(str), mdf["simulationConditionId"].astype(str))
        return list(dict.fromkeys(by_condition.get(k, "") for k in keys))

    def __getattr__(self, name: str) -> Any:
        if name in ("llh", "gradient"):  # methods before issue 14
            raise AttributeError(f"SciMLProblem.{name}() was removed: use "
                                 "sbmlhybrid.create_objective(problem) (a SciMLObjective: "
                                 ".evaluate(), .llh(), .simulate(), .pypesto_problem)")
        raise AttributeError(name)

    @property
    def n_free(self) -> int:
        """Estimated mechanistic parameters plus estimated network entries."""
        mech = int((self.mech["estimate"].astype(int) == 1).sum())
        return mech + sum(int(m.sum()) for masks in self.estimate.values()
                          for m in masks.values())
