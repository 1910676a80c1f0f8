"""Networks of a PEtab SciML problem: locate, build, and initialise nominal parameters.

Problem YAMLs in the wild use two spellings of the extension section, both accepted::

    extensions: {petab_sciml: {neural_networks: {net1: {location, format: yaml, static}}}}
    extensions: {sciml: {neural_nets: {net1: {location, format: YAML,
                                              pre_initialization}}}}

Nominal network parameters (PEtab SciML parameter table rules): array files give the
values under ``parameters/<netId>``; parameter-table rows mapped (mapping table) to
``net.parameters``, ``net.parameters[layer]``, ``net.parameters[layer].array`` or
``...array[i, j]`` override them with a numeric ``nominalValue`` (``array``/empty = keep
the array-file values), more specific rows taking precedence; ``estimate = 0`` freezes
the targeted values.

Hand-written: all of the above. Reused: PyYAML, h5py (via `sbmlhybrid.sciml.hdf5`).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from sbmlhybrid.errors import InputError, Issue, NotSupportedError
from sbmlhybrid.sciml.hdf5 import load_parameters, network_arrays, read_parameters
from sbmlhybrid.sciml.nn import SciMLNet, build_network

_PARAM_REF = re.compile(
    r"^(?P<net>[A-Za-z_]\w*)\.parameters"
    r"(?:\[(?P<layer>[A-Za-z_]\w*)\](?:\.(?P<array>[A-Za-z_]\w*)(?:\[(?P<index>[\d,\s]+)\])?)?)?$"
)


@dataclass(frozen=True)
class NetworkRef:
    """A network declared in a problem YAML."""

    nn_id: str
    location: Path
    format: str
    static: bool | None


@dataclass
class InitializedNetwork:
    """A network with its nominal parameters loaded.

    Attributes:
        net: The module; parameters whose every value is frozen have
            ``requires_grad = False``.
        estimate: ``{"layer.array": bool mask}`` (parameter shape), True = estimated.
    """

    net: SciMLNet
    estimate: dict[str, np.ndarray] = field(default_factory=dict)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InputError(Issue(f"cannot read problem YAML: {err}", file=str(path))) from err
    if not isinstance(doc, dict):
        raise InputError(Issue("problem YAML must be a mapping", file=str(path)))
    return doc


def sciml_section(problem_yaml: str | Path) -> dict[str, Any]:
    """The SciML extension section (either spelling) of a problem YAML.

    Raises:
        InputError: no ``extensions.petab_sciml`` / ``extensions.sciml`` section.
    """
    path = Path(problem_yaml)
    ext = (_load_yaml(path).get("extensions") or {})
    for key in ("petab_sciml", "sciml"):
        if isinstance(ext.get(key), dict):
            return ext[key]
    raise InputError(Issue("no 'extensions: petab_sciml' (or 'sciml') section", file=str(path)))


def find_networks(problem_yaml: str | Path) -> dict[str, NetworkRef]:
    """Networks declared in a problem YAML, ``{nn_id: NetworkRef}`` (paths resolved)."""
    path = Path(problem_yaml)
    sec = sciml_section(path)
    nets = sec.get("neural_networks", sec.get("neural_nets"))
    if not isinstance(nets, dict) or not nets:
        raise InputError(Issue("SciML section lists no 'neural_networks' / 'neural_nets'",
                               file=str(path)))
    out: dict[str, NetworkRef] = {}
    issues: list[Issue] = []
    for nn_id, entry in nets.items():
        if not isinstance(entry, dict) or "location" not in entry:
            issues.append(Issue(f"network '{nn_id}' needs a 'location'", file=str(path),
                                entity=str(nn_id)))
            continue
        static = entry.get("static", entry.get("pre_initialization"))
        out[str(nn_id)] = NetworkRef(str(nn_id), path.parent / str(entry["location"]),
                                     str(entry.get("format", "yaml")).lower(),
                                     None if static is None else bool(static))
    if issues:
        raise InputError(issues)
    return out


def array_files(problem_yaml: str | Path) -> list[Path]:
    """Array (HDF5) files of the SciML section, paths resolved."""
    path = Path(problem_yaml)
    return [path.parent / str(f) for f in sciml_section(path).get("array_files") or []]


def build_problem_networks(problem_yaml: str | Path, dtype: torch.dtype = torch.float64
                           ) -> dict[str, SciMLNet]:
    """Build every network of a problem (YAML format only), default-initialised.

    Raises:
        NotSupportedError: a network in another format (equinox, lux.jl, pytorch).
    """
    out: dict[str, SciMLNet] = {}
    for nn_id, ref in find_networks(problem_yaml).items():
        if ref.format != "yaml":
            raise NotSupportedError(Issue(f"network '{nn_id}' has format '{ref.format}'; only "
                                          "the PEtab SciML YAML format is supported",
                                          file=str(problem_yaml), entity=nn_id))
        out[nn_id] = build_network(ref.location, dtype=dtype)
    return out


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k}
                for row in csv.DictReader(fh, delimiter="\t")]


def _table_files(problem_yaml: Path, key: str) -> list[Path]:
    doc = _load_yaml(problem_yaml)
    files = doc.get(key) or []
    if not files and isinstance(doc.get("problems"), list):  # PEtab v1-style nesting
        files = [f for p in doc["problems"] for f in p.get(key) or []]
    return [problem_yaml.parent / str(f) for f in files]


def _specificity(m: re.Match[str]) -> int:
    return sum(m.group(g) is not None for g in ("layer", "array", "index"))


def initialize_networks(problem_yaml: str | Path, dtype: torch.dtype = torch.float64
                        ) -> dict[str, InitializedNetwork]:
    """Build the problem's networks and set their nominal parameters.

    Returns:
        ``{nn_id: InitializedNetwork}``.

    Raises:
        InputError: missing values (a parameter with neither array-file values nor a
            numeric nominal value), bad references, or bad ``estimate`` entries.
    """
    path = Path(problem_yaml)
    nets = build_problem_networks(path, dtype)
    values: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    have: dict[str, set[str]] = {k: set() for k in nets}
    for af in array_files(path):
        for nn_id, layers in read_parameters(af).items():
            if nn_id in nets:
                values.setdefault(nn_id, {}).update(layers)
                have[nn_id] |= {f"{lay}.{arr}" for lay, arrs in layers.items() for arr in arrs}
    for nn_id, layers in values.items():
        load_parameters(nets[nn_id], layers, strict=False, source=str(path))
    mapping = {}
    for mf in _table_files(path, "mapping_files"):
        mapping |= {r["petabEntityId"]: r["modelEntityId"] for r in _read_tsv(mf)}
    rows: list[tuple[int, re.Match[str], dict[str, str]]] = []
    for pf in _table_files(path, "parameter_files"):
        for row in _read_tsv(pf):
            m = _PARAM_REF.match(mapping.get(row.get("parameterId", ""), ""))
            if m and m.group("net") in nets:
                rows.append((_specificity(m), m, row))
    rows.sort(key=lambda t: t[0])  # general first; specific rows overwrite
    estimate = {nn_id: {k: np.ones(tuple(p.shape), dtype=bool)
                        for k, p in net.named_parameters()} for nn_id, net in nets.items()}
    issues: list[Issue] = []
    for _, m, row in rows:
        nn_id = m.group("net")
        try:
            _apply_row(nets[nn_id], m, row, estimate[nn_id], have[nn_id])
        except InputError as err:
            issues += err.issues
    for nn_id, net in nets.items():
        missing = [k for k, _ in net.named_parameters() if k not in have[nn_id]]
        if missing:
            issues.append(Issue(f"network '{nn_id}': no nominal values for {missing}",
                                file=str(path), entity=nn_id))
        for key, p in net.named_parameters():
            p.requires_grad_(bool(estimate[nn_id][key].any()))
    if issues:
        raise InputError(issues, header="Cannot initialise network parameters")
    return {k: InitializedNetwork(nets[k], estimate[k]) for k in nets}


def _apply_row(net: SciMLNet, m: re.Match[str], row: Mapping[str, str],
               estimate: dict[str, np.ndarray], have: set[str]) -> None:
    pid = row.get("parameterId", "")
    params = dict(net.named_parameters())
    keys = [k for k in params
            if (m.group("layer") is None or k.split(".")[0] == m.group("layer"))
            and (m.group("array") is None or k.split(".", 1)[1] == m.group("array"))]
    if not keys:
        raise InputError(Issue(f"parameter '{pid}' maps to '{m.group(0)}', which names no "
                               "network parameter", entity=pid))
    index: tuple[int, ...] | None = None
    if m.group("index") is not None:
        index = tuple(int(i) for i in m.group("index").split(","))
    nominal = row.get("nominalValue", "")
    est = row.get("estimate", "1")
    if est not in ("0", "1", "true", "false", "True", "False"):
        raise InputError(Issue(f"parameter '{pid}': estimate must be 0 or 1, got '{est}'",
                               entity=pid))
    flag = est in ("1", "true", "True")
    with torch.no_grad():
        for key in keys:
            sel = index if index is not None else ...
            try:
                estimate[key][sel] = flag
                if nominal not in ("", "array"):
                    value = float(nominal)
                    if math.isnan(value):
                        raise ValueError("NaN")
                    params[key][sel] = value
                    if index is None:
                        have.add(key)
            except (IndexError, ValueError) as err:
                raise InputError(Issue(f"parameter '{pid}' ({m.group(0)}): {err}",
                                       entity=pid)) from err


def nominal_parameter_arrays(problem_yaml: str | Path
                             ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{nn_id: {layerId: {arrayId: array}}}`` nominal values of all problem networks."""
    return {k: network_arrays(v.net) for k, v in initialize_networks(problem_yaml).items()}
