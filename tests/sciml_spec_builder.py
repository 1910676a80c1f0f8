"""Tiny PEtab SciML problems written from the spec, and their independent references.

The spec (PEtab-dev/petab_sciml, ``doc/format.rst``): a problem YAML with
``extensions: petab_sciml: {neural_networks: {id: {location, format, static}},
hybridization_files, array_files}``; a mapping table from PEtab ids to ``net.inputs[i][j]``,
``net.inputs[i]`` (a whole argument, an array-file input), ``net.outputs[0][j]`` and
``net.parameters[layer].array[index]``; a hybridization table whose ``targetValue`` is a math
expression; parameter-table rows for network parameters (``nominalValue`` empty/``array`` =
the array file's values, ``estimate``, priors; more specific rows take precedence).

The model (one compartment, species A and B, constant parameters k1, k2, gamma)::

    dA/dt = -k1 A + gamma        dB/dt = k1 A - k2 B        A(0) = 1, B(0) = 0.5

observed directly (``obs_A = A``, ``obs_B = B``, normal noise with sigma `SIGMA`) at `TIMES`.
The references solve the same ODE with scipy's ``solve_ivp`` (Radau, rtol 1e-11), with the
networks evaluated by the torch modules the files were written from, and sum the normal
log-densities by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import libsbml
import numpy as np
import pandas as pd
import scipy.integrate
import scipy.stats
import torch
import yaml
from torch import nn

from sbmlhybrid.sciml import export_network, write_inputs

SIGMA = 0.1
TIMES = [0.5, 1.0, 2.0, 3.0, 4.0]
Y0 = (1.0, 0.5)
SBML_VALUES = {"k1": 0.6, "k2": 0.4, "gamma": 0.3}
_PARAM_COLUMNS = ["parameterId", "parameterScale", "lowerBound", "upperBound", "nominalValue",
                  "estimate", "priorDistribution", "priorParameters"]


def write_sbml(path: Path) -> None:
    doc = libsbml.SBMLDocument(3, 2)
    model = doc.createModel()
    model.setId("tiny_ab")
    comp = model.createCompartment()
    comp.setId("c")
    comp.setSize(1.0)
    comp.setConstant(True)
    for sid, value in zip(("A", "B"), Y0):
        s = model.createSpecies()
        s.setId(sid)
        s.setCompartment("c")
        s.setInitialAmount(value)
        s.setHasOnlySubstanceUnits(True)
        s.setBoundaryCondition(False)
        s.setConstant(False)
    for pid, value in SBML_VALUES.items():
        p = model.createParameter()
        p.setId(pid)
        p.setValue(value)
        p.setConstant(True)
    for var, formula in (("A", "-k1 * A + gamma"), ("B", "k1 * A - k2 * B")):
        rule = model.createRateRule()
        rule.setVariable(var)
        rule.setMath(libsbml.parseL3Formula(formula))
    libsbml.writeSBMLToFile(doc, str(path))


def measurements(experiments: Sequence[str], seed: int = 0) -> pd.DataFrame:
    """Arbitrary data (the references use the same table)."""
    rng = np.random.default_rng(seed)
    rows = [{"observableId": obs, "experimentId": e, "time": t,
             "measurement": float(rng.uniform(0.2, 1.5))}
            for e in experiments for obs in ("obs_A", "obs_B") for t in TIMES]
    return pd.DataFrame(rows)


def _tsv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, sep="\t", index=False)


def write_problem(folder: Path, nets: dict[str, tuple[nn.Module, bool, list[str]]],
                  mapping: list[tuple[str, str]], hybridization: list[tuple[str, str]],
                  parameters: list[dict[str, Any]],
                  experiments: dict[str, str | None] | None = None,
                  conditions: list[tuple[str, str, Any]] | None = None,
                  arrays: dict[str, dict[str, np.ndarray]] | None = None,
                  legacy_spelling: bool = False) -> Path:
    """Write a problem; returns its YAML.

    Args:
        nets: id -> (torch module, static, forward input ids); written with the project's
            exporter (network YAML + ``<id>_ps.hdf5``).
        mapping: (petabEntityId, modelEntityId) rows.
        hybridization: (targetId, targetValue) rows.
        parameters: parameter-table rows (missing columns empty).
        experiments: experiment id -> its condition id (None: none); default one ``e1``.
        conditions: (conditionId, targetId, targetValue) rows of the v2 condition table.
        arrays: input id -> {condition key: array}, written as ``inputs.hdf5``.
        legacy_spelling: ``extensions: sciml: neural_nets: {pre_initialization}`` instead of
            the spec's ``petab_sciml: neural_networks: {static}``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    write_sbml(folder / "model.xml")
    experiments = experiments or {"e1": None}
    _tsv(pd.DataFrame([{"experimentId": e, "time": 0.0, "conditionId": c or ""}
                       for e, c in experiments.items()]), folder / "experiments.tsv")
    _tsv(measurements(list(experiments)), folder / "measurements.tsv")
    _tsv(pd.DataFrame({"observableId": ["obs_A", "obs_B"], "observableFormula": ["A", "B"],
                       "noiseFormula": [SIGMA, SIGMA], "observableTransformation": "lin",
                       "noiseDistribution": "normal"}), folder / "observables.tsv")
    _tsv(pd.DataFrame(parameters).reindex(columns=_PARAM_COLUMNS), folder / "parameters.tsv")
    _tsv(pd.DataFrame(mapping, columns=["petabEntityId", "modelEntityId"]),
         folder / "mapping.tsv")
    _tsv(pd.DataFrame(hybridization, columns=["targetId", "targetValue"]),
         folder / "hybridization.tsv")
    files: dict[str, Any] = {}
    if conditions:
        _tsv(pd.DataFrame(conditions, columns=["conditionId", "targetId", "targetValue"]),
             folder / "conditions.tsv")
        files["condition_files"] = ["conditions.tsv"]
    array_files = []
    refs = {}
    for nn_id, (module, static, inputs) in nets.items():
        export_network(module, folder / f"{nn_id}.yaml", folder / f"{nn_id}_ps.hdf5",
                       nn_model_id=nn_id, input_ids=inputs)
        array_files.append(f"{nn_id}_ps.hdf5")
        refs[nn_id] = {"location": f"{nn_id}.yaml", "format": "yaml",
                       ("pre_initialization" if legacy_spelling else "static"): static}
    if arrays:
        write_inputs(folder / "inputs.hdf5", arrays)
        array_files.append("inputs.hdf5")
    section = {"array_files": array_files, "hybridization_files": ["hybridization.tsv"],
               ("neural_nets" if legacy_spelling else "neural_networks"): refs}
    config = {"format_version": 2, "model_files": {"tiny": {"location": "model.xml",
                                                            "language": "sbml"}},
              "measurement_files": ["measurements.tsv"], "observable_files": ["observables.tsv"],
              "experiment_files": ["experiments.tsv"], "parameter_files": ["parameters.tsv"],
              "mapping_files": ["mapping.tsv"], **files,
              "extensions": {"sciml" if legacy_spelling else "petab_sciml":
                             section if legacy_spelling else
                             {"version": "2.0.0", "required": True, **section}},
              "sbmlhybrid": {"solver": {"rtol": 1e-12, "atol": 1e-14, "max_steps": 1_000_000}}}
    (folder / "problem.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder / "problem.yaml"


def net_value(module: nn.Module, *args: Sequence[float]) -> float:
    """The module's (first) output for plain-number arguments, float64."""
    with torch.no_grad():
        out = module(*[torch.as_tensor(np.asarray(a, dtype=float)) for a in args])
    return float(out.reshape(-1)[0])


def simulate(k1: float, k2: float | Callable[[], float],
             gamma: Callable[[float, float, float], float]) -> np.ndarray:
    """A and B at `TIMES`, shape (len(TIMES), 2); ``gamma(t, A, B)``."""
    k2v = k2() if callable(k2) else k2

    def rhs(t: float, y: np.ndarray) -> list[float]:
        g = gamma(t, y[0], y[1])
        return [-k1 * y[0] + g, k1 * y[0] - k2v * y[1]]

    sol = scipy.integrate.solve_ivp(rhs, (0.0, TIMES[-1]), list(Y0), method="Radau",
                                    t_eval=TIMES, rtol=1e-11, atol=1e-13)
    assert sol.success, sol.message
    return sol.y.T


def log_likelihood(folder: Path, simulations: dict[str, np.ndarray]) -> float:
    """Sum of normal log-densities of the problem's data given per-experiment simulations."""
    mdf = pd.read_csv(folder / "measurements.tsv", sep="\t")
    total = 0.0
    for _, row in mdf.iterrows():
        sim = simulations[row.experimentId][TIMES.index(row.time),
                                            0 if row.observableId == "obs_A" else 1]
        total += scipy.stats.norm.logpdf(row.measurement, sim, SIGMA)
    return float(total)


def seeded_mlp(seed: int, sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear / activation / Linear ... in float64, seeded weights scaled to stay small."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if k < len(sizes) - 2:
            layers.append(activation())
    module = nn.Sequential(*layers).double()
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(0.5)
    return module
