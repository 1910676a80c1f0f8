"""Export a hybrid problem built with `sbmlhybrid.hybrid` as a PEtab SciML problem.

`export_sciml_problem(base, terms, out_dir)` writes the mechanistic SBML of `base`, its
tables in the PEtab v2 layout the SciML test suite uses (experiments, long condition table,
``experimentId`` in measurements; v1-style observable and parameter columns), one network
YAML + parameter HDF5 per `NetworkTerm`, and the mapping / hybridization tables that route
each network's inputs (model entities) and outputs (the parameters it replaces).
`load_sciml_problem` on the written YAML gives the same likelihood and gradients as
``create_objective(hybridize(base, terms))``.

Exported exactly: the networks (Linear + activations) with the input normalization folded
into the first Linear layer (``W' = W / s``, ``b' = b - W' c``; equal up to rounding).
Not representable in PEtab SciML and refused (`NotSupportedError`): output transforms other
than identity, output scales != 1, targets other than constant parameters (kind
``parameter``), pre-equilibration. Hand-written; reused: `export_network`, pandas, PyYAML.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import libsbml
import numpy as np
import pandas as pd
import petab.v1 as petab
import torch
import yaml
from torch import nn

from sbmlhybrid.errors import Issue, NotSupportedError
from sbmlhybrid.hybrid import NetworkTerm
from sbmlhybrid.problem import Problem, SolverSettings
from sbmlhybrid.sciml.export import export_network


def _folded(term: NetworkTerm, scales: list[tuple[float, float]]) -> nn.Sequential:
    """Copy of the term's module with input normalization folded into the first Linear."""
    module = copy.deepcopy(term.module).double()
    first = next(m for m in module if isinstance(m, nn.Linear))
    c = torch.tensor([s[0] for s in scales], dtype=torch.float64)
    s = torch.tensor([s[1] for s in scales], dtype=torch.float64)
    if first.bias is None and bool(torch.any(c != 0)):
        raise NotSupportedError(Issue(f"{term.name}: folding a non-zero input center needs "
                                      "a bias in the first Linear layer", entity=term.name))
    with torch.no_grad():
        first.weight /= s  # (n_out, n_in) / (n_in,)
        if first.bias is not None:
            first.bias -= first.weight @ c
    return module


def _write_mechanistic(pp: petab.Problem, out: Path) -> None:
    """The SBML model and the v2-layout tables of `pp` (all but parameters, mapping and
    hybridization); NotSupportedError for pre-equilibration."""
    mdf = pp.measurement_df
    if petab.PREEQUILIBRATION_CONDITION_ID in mdf and \
            mdf[petab.PREEQUILIBRATION_CONDITION_ID].notna().any():
        raise NotSupportedError("export of problems with pre-equilibration is not supported")
    libsbml.writeSBMLToFile(pp.sbml_document, str(out / "model.xml"))
    conds = list(dict.fromkeys(mdf[petab.SIMULATION_CONDITION_ID]))
    pd.DataFrame({"experimentId": conds, "time": 0.0, "conditionId": conds}).to_csv(
        out / "experiments.tsv", sep="\t", index=False)
    rows = []
    if pp.condition_df is not None:
        for cid in conds:
            for col in pp.condition_df.columns:
                if col == petab.CONDITION_NAME:
                    continue
                v = pp.condition_df.loc[cid, col]
                if not (isinstance(v, float) and np.isnan(v)):
                    rows.append({"conditionId": cid, "targetId": col, "targetValue": v})
    pd.DataFrame(rows, columns=["conditionId", "targetId", "targetValue"]).to_csv(
        out / "conditions.tsv", sep="\t", index=False)
    meas = mdf.rename(columns={petab.SIMULATION_CONDITION_ID: "experimentId"})
    keep = ["observableId", "experimentId", petab.TIME, petab.MEASUREMENT,
            petab.OBSERVABLE_PARAMETERS, petab.NOISE_PARAMETERS]
    meas[[c for c in keep if c in meas]].to_csv(out / "measurements.tsv", sep="\t", index=False)
    pp.observable_df.to_csv(out / "observables.tsv", sep="\t")


def _check_exportable(t: NetworkTerm, model: libsbml.Model) -> None:
    """NotSupportedError unless every output is identity-transformed, unscaled and
    replaces a constant parameter."""
    bad = [j for j, (tr, sc) in enumerate(zip(t.transforms, t.scales))
           if tr != "identity" or sc != 1.0]
    if bad:
        raise NotSupportedError(Issue(f"{t.name}: output transform/scale of outputs {bad} "
                                      "cannot be written in PEtab SciML", entity=t.name))
    for target, kind in zip(t.targets, t.kinds):
        p = model.getParameter(target)
        if kind not in ("parameter", "auto") or p is None or not p.getConstant():
            raise NotSupportedError(Issue(f"{t.name}: only constant-parameter targets "
                                          f"can be exported, not {target!r} ({kind})",
                                          entity=target))


def _routing(t: NetworkTerm) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Mapping-table rows (PEtab id -> network port) and hybridization-table rows (target
    -> value) of one network: inputs from model entities, outputs into its targets."""
    mapping, hyb = [], []
    for k, iid in enumerate(t.inputs):
        mapping.append((f"{t.name}_input{k}", f"{t.name}.inputs[0][{k}]"))
        hyb.append((f"{t.name}_input{k}", iid))
    for j, target in enumerate(t.targets):
        mapping.append((f"{t.name}_output{j}", f"{t.name}.outputs[0][{j}]"))
        hyb.append((target, f"{t.name}_output{j}"))
    mapping.append((f"{t.name}_ps", f"{t.name}.parameters"))
    return mapping, hyb


def _problem_config(arrays: list[str], nets: dict[str, dict], solver: SolverSettings | None
                    ) -> dict:
    """The problem YAML's content (PEtab v2 with the ``petab_sciml`` extension, the spec's
    current spelling: ``neural_networks``, ``static``)."""
    config = {
        "format_version": 2,
        "model_files": {"model": {"location": "model.xml", "language": "sbml"}},
        "measurement_files": ["measurements.tsv"], "observable_files": ["observables.tsv"],
        "experiment_files": ["experiments.tsv"], "condition_files": ["conditions.tsv"],
        "parameter_files": ["parameters.tsv"], "mapping_files": ["mapping.tsv"],
        "extensions": {"petab_sciml": {"version": "2.0.0", "required": True,
                                       "array_files": arrays,
                                       "hybridization_files": ["hybridization.tsv"],
                                       "neural_networks": nets}},
    }
    if solver is not None:
        config["sbmlhybrid"] = {"solver": {"rtol": solver.rtol, "atol": solver.atol,
                                           "max_steps": solver.max_steps}}
    return config


def export_sciml_problem(base: Problem, terms: Sequence[NetworkTerm], out_dir: str | Path,
                         normalization: dict[str, list[tuple[float, float]]] | None = None
                         ) -> Path:
    """Write `base` + `terms` as a PEtab SciML problem; returns the problem YAML path.

    Args:
        base: The mechanistic problem (before `hybridize`).
        terms: Networks as passed to `hybridize` (their modules' current weights).
        out_dir: Destination folder (created).
        normalization: Per term, (center, scale) per input, e.g.
            ``hybridize(...).hybrid.normalization``; default: the terms' ``input_scales``.

    Raises:
        NotSupportedError: see module docstring.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pp = base.petab_problem
    _write_mechanistic(pp, out)
    pdf = pp.parameter_df[[petab.PARAMETER_SCALE, petab.LOWER_BOUND, petab.UPPER_BOUND,
                           petab.NOMINAL_VALUE, petab.ESTIMATE]].copy().astype(object)
    mapping, hyb, nets, arrays = [], [], {}, []
    for t in terms:
        _check_exportable(t, pp.sbml_model)
        scales = (normalization or {}).get(t.name) or \
            [tuple(t.input_scales.get(i, (0.0, 1.0))) for i in t.inputs]
        module = _folded(t, [(float(c), float(s)) for c, s in scales])
        export_network(module, out / f"{t.name}.yaml", out / f"{t.name}_ps.hdf5",
                       nn_model_id=t.name, input_ids=["input0"])
        arrays.append(f"{t.name}_ps.hdf5")
        nets[t.name] = {"location": f"{t.name}.yaml", "static": False, "format": "yaml"}
        term_mapping, term_hyb = _routing(t)
        mapping += term_mapping
        hyb += term_hyb
        pdf = pdf.drop(index=list(t.targets), errors="ignore")
        pdf.loc[f"{t.name}_ps"] = [petab.LIN, -np.inf, np.inf, "array", 0 if t.frozen else 1]
    pdf.to_csv(out / "parameters.tsv", sep="\t")
    pd.DataFrame(mapping, columns=["petabEntityId", "modelEntityId"]).to_csv(
        out / "mapping.tsv", sep="\t", index=False)
    pd.DataFrame(hyb, columns=["targetId", "targetValue"]).to_csv(
        out / "hybridization.tsv", sep="\t", index=False)
    path = out / "problem.yaml"
    path.write_text(yaml.safe_dump(_problem_config(arrays, nets, base.solver), sort_keys=False))
    return path
