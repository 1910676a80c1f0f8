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
the targeted values; finite ``lowerBound`` / ``upperBound`` bound them (default unbounded);
``priorDistribution`` / ``priorParameters`` give every targeted value that prior (a more
specific row without a prior leaves its values without one). Non-finite values in an
array file are refused, naming file, network, layer and array.

Every function here takes the parsed problem YAML as ``config``, so that one import
(`sbmlhybrid.sciml.importer`) reads it once.

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
from sbmlhybrid.sciml.hdf5 import (
    check_finite,
    load_parameters,
    network_arrays,
    read_parameters,
)
from sbmlhybrid.sciml.mapping import PARAM_REF, mapping_dict, read_mapping
from sbmlhybrid.sciml.nn import SciMLNet, build_network


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
        lower, upper: ``{"layer.array": bounds}`` (parameter shape; -inf/inf if not given).
        prior: ``{"layer.array": object array}`` (parameter shape) of ``(priorDistribution,
            priorParameters)`` pairs, None where no row gives a prior.
    """

    net: SciMLNet
    estimate: dict[str, np.ndarray] = field(default_factory=dict)
    lower: dict[str, np.ndarray] = field(default_factory=dict)
    upper: dict[str, np.ndarray] = field(default_factory=dict)
    prior: dict[str, np.ndarray] = field(default_factory=dict)


def read_problem_yaml(path: str | Path) -> dict[str, Any]:
    """The problem YAML as a mapping; InputError naming the file if it cannot be read."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InputError(Issue(f"cannot read problem YAML: {err}", file=str(path))) from err
    if not isinstance(doc, dict):
        raise InputError(Issue("problem YAML must be a mapping", file=str(path)))
    return doc


def _config(path: Path, config: dict[str, Any] | None) -> dict[str, Any]:
    return read_problem_yaml(path) if config is None else config


def find_sciml_section(config: dict[str, Any]) -> dict[str, Any] | None:
    """The SciML extension section (``extensions: petab_sciml`` or ``sciml``) of a parsed
    problem YAML, or None (a problem without networks)."""
    ext = config.get("extensions") if isinstance(config, dict) else None
    for key in ("petab_sciml", "sciml"):
        if isinstance(ext, dict) and isinstance(ext.get(key), dict):
            return ext[key]
    return None


def sciml_section(problem_yaml: str | Path, config: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The SciML extension section (either spelling) of a problem YAML.

    Args:
        problem_yaml: The YAML (for paths and messages).
        config: Its parsed content (read from `problem_yaml` if omitted).

    Raises:
        InputError: no ``extensions.petab_sciml`` / ``extensions.sciml`` section.
    """
    path = Path(problem_yaml)
    section = find_sciml_section(_config(path, config))
    if section is None:
        raise InputError(Issue("no 'extensions: petab_sciml' (or 'sciml') section",
                               file=str(path)))
    return section


def find_networks(problem_yaml: str | Path, config: dict[str, Any] | None = None
                  ) -> dict[str, NetworkRef]:
    """Networks declared in a problem YAML, ``{nn_id: NetworkRef}`` (paths resolved)."""
    path = Path(problem_yaml)
    sec = sciml_section(path, config)
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


def array_files(problem_yaml: str | Path, config: dict[str, Any] | None = None) -> list[Path]:
    """Array (HDF5) files of the SciML section, paths resolved."""
    path = Path(problem_yaml)
    return [path.parent / str(f) for f in sciml_section(path, config).get("array_files") or []]


def build_problem_networks(problem_yaml: str | Path, dtype: torch.dtype = torch.float64,
                           config: dict[str, Any] | None = None) -> dict[str, SciMLNet]:
    """Build every network of a problem (YAML format only), default-initialised.

    Raises:
        NotSupportedError: a network in another format (equinox, lux.jl, pytorch).
    """
    out: dict[str, SciMLNet] = {}
    for nn_id, ref in find_networks(problem_yaml, config).items():
        if ref.format != "yaml":
            raise NotSupportedError(Issue(f"network '{nn_id}' has format '{ref.format}'; only "
                                          "the PEtab SciML YAML format is supported",
                                          file=str(problem_yaml), entity=nn_id))
        out[nn_id] = build_network(ref.location, dtype=dtype)
    return out


def _read_tsv(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(TSV line number, the header being line 1; row with values stripped) pairs."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        # line_num after reading a row is its line (skipped blank lines count)
        return [(reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items() if k})
                for row in reader]


def table_files(problem_yaml: str | Path, key: str, config: dict[str, Any] | None = None
                ) -> list[Path]:
    """Files listed under `key` (e.g. ``parameter_files``), v2 layout or v1 nesting, paths
    resolved against the YAML's folder."""
    problem_yaml = Path(problem_yaml)
    doc = _config(problem_yaml, config)
    files = doc.get(key) or []
    if not files and isinstance(doc.get("problems"), list):  # PEtab v1-style nesting
        files = [f for p in doc["problems"] for f in p.get(key) or []]
    return [problem_yaml.parent / str(f) for f in files]


def _specificity(m: re.Match[str]) -> int:
    return sum(m.group(g) is not None for g in ("layer", "array", "index"))


def _load_array_values(path: Path, config: dict[str, Any], nets: dict[str, SciMLNet]
                       ) -> dict[str, set[str]]:
    """Array-file parameter values into the networks; ``{nn_id: {"layer.array"}}`` given.

    Raises:
        InputError: non-finite values (file, network, layer, array named), shape mismatch.
    """
    have: dict[str, set[str]] = {k: set() for k in nets}
    issues: list[Issue] = []
    for af in array_files(path, config):
        for nn_id, layers in read_parameters(af).items():
            issues += check_finite(layers, str(af), nn_id)
            if nn_id in nets:
                load_parameters(nets[nn_id], layers, strict=False, source=str(af))
                have[nn_id] |= {f"{lay}.{arr}" for lay, arrs in layers.items() for arr in arrs}
    if issues:
        raise InputError(issues, header="Invalid network parameter values")
    return have


def _network_rows(path: Path, config: dict[str, Any], nets: dict[str, SciMLNet]
                  ) -> list[tuple[int, re.Match[str], dict[str, str], Path, int]]:
    """Parameter-table rows mapped to network parameters, general ones first."""
    mapping = mapping_dict(read_mapping(table_files(path, "mapping_files", config)))
    rows = []
    for pf in table_files(path, "parameter_files", config):
        for line, row in _read_tsv(pf):
            m = PARAM_REF.match(mapping.get(row.get("parameterId", ""), ""))
            if m and m.group("net") in nets:
                rows.append((_specificity(m), m, row, pf, line))
    rows.sort(key=lambda t: t[0])  # general first; specific rows overwrite
    return rows


def initialize_networks(problem_yaml: str | Path, dtype: torch.dtype = torch.float64,
                        config: dict[str, Any] | None = None) -> dict[str, InitializedNetwork]:
    """Build the problem's networks and set their nominal parameters.

    Args:
        problem_yaml: The problem YAML.
        dtype: Parameter dtype of the modules.
        config: The YAML's parsed content (read from `problem_yaml` if omitted).

    Returns:
        ``{nn_id: InitializedNetwork}``.

    Raises:
        InputError: missing values (a parameter with neither array-file values nor a
            numeric nominal value), non-finite array-file values, bad references, or bad
            ``estimate`` entries.
    """
    path = Path(problem_yaml)
    config = _config(path, config)
    nets = build_problem_networks(path, dtype, config)
    have = _load_array_values(path, config, nets)
    inits = {}
    for nn_id, net in nets.items():
        shapes = {k: tuple(p.shape) for k, p in net.named_parameters()}
        inits[nn_id] = InitializedNetwork(
            net, {k: np.ones(s, dtype=bool) for k, s in shapes.items()},
            {k: np.full(s, -np.inf) for k, s in shapes.items()},
            {k: np.full(s, np.inf) for k, s in shapes.items()},
            {k: np.full(s, None, dtype=object) for k, s in shapes.items()})
    issues: list[Issue] = []
    for _, m, row, pf, row_number in _network_rows(path, config, nets):
        nn_id = m.group("net")
        try:
            _apply_row(nets[nn_id], m, row, inits[nn_id], have[nn_id])
        except InputError as err:  # name the parameter table's file and row
            issues += [Issue(i.message, str(pf), row_number, i.column, i.entity)
                       for i in err.issues]
    for nn_id, net in nets.items():
        missing = [k for k, _ in net.named_parameters() if k not in have[nn_id]]
        if missing:
            issues.append(Issue(f"network '{nn_id}': no nominal values for {missing}",
                                file=str(path), entity=nn_id))
        for key, p in net.named_parameters():
            p.requires_grad_(bool(inits[nn_id].estimate[key].any()))
    if issues:
        raise InputError(issues, header="Cannot initialise network parameters")
    return inits


def _prior(row: Mapping[str, str], pid: str) -> tuple[str, str] | None:
    """(priorDistribution, priorParameters) of a row, or None (no prior)."""
    kind = row.get("priorDistribution", "")
    if kind in ("", "nan"):
        return None
    params = row.get("priorParameters", "")
    if params in ("", "nan"):
        raise InputError(Issue(f"parameter '{pid}': priorDistribution {kind!r} needs "
                               "priorParameters", column="priorParameters", entity=pid))
    return kind, params


def _bound(row: Mapping[str, str], column: str, pid: str) -> float | None:
    text = row.get(column, "")
    try:
        return None if text == "" else float(text)
    except ValueError as err:
        raise InputError(Issue(f"parameter '{pid}': {column} {text!r} is not a number",
                               column=column, entity=pid)) from err


def _apply_row(net: SciMLNet, m: re.Match[str], row: Mapping[str, str],
               init: InitializedNetwork, have: set[str]) -> None:
    """One parameter-table row onto the entries it maps to: nominal value, estimate flag,
    bounds and prior (into `init`'s arrays per ``layer.array``)."""
    pid = row.get("parameterId", "")
    lo, hi = _bound(row, "lowerBound", pid), _bound(row, "upperBound", pid)
    prior = _prior(row, pid)
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
                init.estimate[key][sel] = flag
                if lo is not None:
                    init.lower[key][sel] = lo
                if hi is not None:
                    init.upper[key][sel] = hi
                _set_prior(init.prior[key], sel, prior)
                if nominal not in ("", "array"):
                    value = float(nominal)
                    if not math.isfinite(value):
                        raise ValueError(f"nominalValue {nominal!r} is not finite")
                    params[key][sel] = value
                    if index is None:
                        have.add(key)
            except (IndexError, ValueError) as err:
                raise InputError(Issue(f"parameter '{pid}' ({m.group(0)}): {err}",
                                       entity=pid)) from err


def _set_prior(target: np.ndarray, sel: Any, prior: tuple[str, str] | None) -> None:
    """Set one (kind, parameters) pair (or None) on the selected entries of an object array."""
    view = target[sel] if sel is not Ellipsis else target
    if isinstance(view, np.ndarray):
        for i in np.ndindex(view.shape):
            view[i] = prior
    else:
        target[sel] = prior


def nominal_parameter_arrays(problem_yaml: str | Path
                             ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{nn_id: {layerId: {arrayId: array}}}`` nominal values of all problem networks."""
    return {k: network_arrays(v.net) for k, v in initialize_networks(problem_yaml).items()}
