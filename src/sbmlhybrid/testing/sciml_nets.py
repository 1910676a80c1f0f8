"""Checks against the PEtab SciML test suite (sebapersson/petab_sciml_testsuite).

``ml_model_import/NNN``: ``solutions.yaml`` lists the network file and, per repetition
i, input file(s) (``net_input`` or ``net_input_arg<k>`` per forward argument), a
parameter file (``net_ps``, absent for parameter-free networks) and the expected output
(``net_output``). The suite gives no tolerance for these cases; its own PyTorch
consistency check uses ``atol = 1e-3, rtol = 0``, which is used here (`DEFAULT_ATOL`): one
`Check` per repetition and output, error = largest absolute difference. Cases with
``dropout: N`` compare the mean of N stochastic forward passes (training mode). The
reference itself is such a Monte-Carlo mean, whose standard error (~3e-3 for the suite's
networks) exceeds 1e-3, so there the tolerance is elementwise ``atol + z * sqrt(2) * SE``,
SE estimated from our own samples (the reference's SE is taken equal: same distribution,
same N; fixed seed), and the check's error is the largest ratio ``|mean - ref| / tolerance``
against tolerance 1.

``initialization/NNN``: the networks of ``petab/problem.yaml`` are initialised from the
array files and parameter table (`sbmlhybrid.sciml.problem.initialize_networks`) and
compared with the reference parameter file of ``solutions.yaml``: one check per network
against the case's ``tol``.

Hand-written. Reused: PyYAML, torch, numpy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from sbmlhybrid.errors import InputError
from sbmlhybrid.sciml.hdf5 import (
    load_parameters,
    network_arrays,
    read_inputs,
    read_outputs,
    read_parameters,
)
from sbmlhybrid.sciml.nn import SciMLNet, build_network
from sbmlhybrid.sciml.problem import initialize_networks
from sbmlhybrid.testing.results import CaseResult, Check

DEFAULT_ATOL = 1e-3
DROPOUT_Z = 4.0


def _single_array(path: Path) -> np.ndarray:
    groups = read_inputs(path)
    arrays = [a for per in groups.values() for a in per.values()]
    if len(arrays) != 1:
        raise InputError(f"{path}: expected exactly one input array, found {len(arrays)}")
    return arrays[0]


def _outputs(path: Path) -> list[np.ndarray]:
    groups = read_outputs(path)

    def order(name: str) -> int:
        m = re.search(r"(\d+)$", name)
        return int(m.group(1)) if m else 0

    out = []
    for name in sorted(groups, key=order):
        per = groups[name]
        if len(per) != 1:
            raise InputError(f"{path}: output '{name}' must hold one array")
        out.append(next(iter(per.values())))
    return out


def _as_list(y: torch.Tensor | tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    ys = list(y) if isinstance(y, tuple) else [y]
    return [t.detach().cpu().numpy() for t in ys]


def _mc_mean(net: SciMLNet, xs: list[torch.Tensor], n: int, chunk: int = 10_000
             ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of `n` stochastic passes (training mode).

    Passes are batched by stacking copies of the inputs along a new leading axis when
    the network treats that axis as a batch axis (checked in eval mode); else looped.
    """
    with torch.no_grad():
        net.eval()
        single = net(*xs)
        if isinstance(single, tuple):
            raise InputError("dropout Monte Carlo supports single-output networks only")
        pair = None
        try:
            pair = net(*[x.unsqueeze(0).expand((2, *x.shape)) for x in xs])
        except (RuntimeError, ValueError, IndexError):
            pass
        batched = (isinstance(pair, torch.Tensor) and pair.shape == (2, *single.shape)
                   and torch.allclose(pair[0], single) and torch.allclose(pair[1], single))
        net.train()
        total = torch.zeros_like(single)
        total_sq = torch.zeros_like(single)
        done = 0
        while done < n:
            k = min(chunk, n - done) if batched else 1
            if batched:
                ys = net(*[x.unsqueeze(0).expand((k, *x.shape)) for x in xs])
                total += ys.sum(0)
                total_sq += (ys * ys).sum(0)
            else:
                y = net(*xs)
                total += y
                total_sq += y * y
            done += k
        net.eval()
    mean = (total / n).numpy()
    var = np.maximum((total_sq / n).numpy() - mean**2, 0.0) * n / max(n - 1, 1)
    return mean, np.sqrt(var / n)


def _case_inputs(sol: dict[str, Any], net: SciMLNet) -> list[list[str]]:
    """Per forward argument, the input file of each repetition."""
    n_args = len(net.input_ids)
    if "net_input" in sol:
        input_lists = [sol["net_input"]]
    else:
        input_lists = [sol[f"net_input_arg{k}"] for k in range(n_args)]
    if len(input_lists) != n_args:
        raise InputError(f"network takes {n_args} inputs, solutions give {len(input_lists)}")
    return input_lists


def _repetition(case: Path, sol: dict[str, Any], net: SciMLNet, inputs: list[list[str]],
                i: int, dtype: torch.dtype, atol: float, z: float) -> list[Check]:
    """Checks of repetition `i` (0-based): its parameters loaded, one check per output."""
    if "net_ps" in sol:
        params = read_parameters(case / sol["net_ps"][i])
        if net.nn_model_id not in params:
            raise InputError(f"{sol['net_ps'][i]} has no parameters for '{net.nn_model_id}'")
        load_parameters(net, params[net.nn_model_id], source=sol["net_ps"][i])
    xs = [torch.as_tensor(_single_array(case / files[i]), dtype=dtype)
          for files in inputs]
    refs = _outputs(case / sol["net_output"][i])
    if "dropout" in sol:
        mean, se = _mc_mean(net, xs, int(sol["dropout"]))
        ys, tols = [mean], [atol + z * np.sqrt(2.0) * se]
    else:
        with torch.no_grad():
            ys = _as_list(net(*xs))
        tols = [None] * len(ys)
    if len(ys) != len(refs):
        raise InputError(f"network returns {len(ys)} output(s), reference has {len(refs)}")
    checks = []
    for k, (y, ref, tol) in enumerate(zip(ys, refs, tols)):
        name = f"rep{i + 1}.output{k}"
        if y.shape != ref.shape:
            checks.append(Check(name, float("inf"), atol if tol is None else 1.0))
        elif tol is None:
            checks.append(Check(name, float(np.abs(y - ref).max(initial=0.0)), atol))
        else:  # elementwise Monte-Carlo tolerance: largest error relative to it
            checks.append(Check(name, float((np.abs(y - ref) / tol).max(initial=0.0)), 1.0))
    return checks


def check_ml_model_import_case(case_dir: str | Path, atol: float = DEFAULT_ATOL,
                               dtype: torch.dtype = torch.float64, seed: int = 0,
                               z: float = DROPOUT_Z) -> CaseResult:
    """Run one ``ml_model_import`` case; never raises (errors become outcome "error")."""
    case = Path(case_dir)
    try:
        sol = yaml.safe_load((case / "solutions.yaml").read_text())
        net = build_network(case / sol["net_file"], dtype=dtype)
        inputs = _case_inputs(sol, net)
        torch.manual_seed(seed)
        checks = [c for i in range(len(sol["net_output"]))
                  for c in _repetition(case, sol, net, inputs, i, dtype, atol, z)]
    except Exception as err:  # report, never crash the runner
        return CaseResult("ml_model_import", case.name, "error",
                          message=f"{type(err).__name__}: {err}")
    note = (f"Monte Carlo mean of {sol['dropout']} passes; error relative to the elementwise "
            f"tolerance atol + {z}*sqrt(2)*SE") if "dropout" in sol else f"atol {atol:g}"
    return CaseResult("ml_model_import", case.name, "ran", checks, note)


def _network_error(ours: dict, ref: dict) -> float:
    """Largest absolute difference over all arrays (inf if the array sets differ)."""
    ref_keys = {f"{la}.{a}" for la, arrs in ref.items() for a in arrs}
    our_keys = {f"{la}.{a}" for la, arrs in ours.items() for a in arrs}
    if ref_keys != our_keys:
        return float("inf")
    return max([float(np.abs(ours[la][a] - val).max(initial=0.0))
                for la, arrs in ref.items() for a, val in arrs.items()] or [0.0])


def check_initialization_case(case_dir: str | Path, dtype: torch.dtype = torch.float64
                              ) -> CaseResult:
    """Run one ``initialization`` case; never raises (errors become outcome "error")."""
    case = Path(case_dir)
    try:
        sol = yaml.safe_load((case / "solutions.yaml").read_text())
        tol = float(sol.get("tol", DEFAULT_ATOL))
        inits = initialize_networks(case / "petab" / "problem.yaml", dtype=dtype)
        checks = []
        for nn_id, ref_file in sol["parameter_files"].items():
            ref = read_parameters(case / ref_file).get(nn_id)
            if ref is None:
                raise InputError(f"{ref_file} has no parameters for '{nn_id}'")
            checks.append(Check(nn_id, _network_error(network_arrays(inits[nn_id].net), ref),
                                tol))
    except Exception as err:  # report, never crash the runner
        return CaseResult("initialization", case.name, "error",
                          message=f"{type(err).__name__}: {err}")
    return CaseResult("initialization", case.name, "ran", checks)


def run_conformance(suite_dir: str | Path) -> list[CaseResult]:
    """Every ``ml_model_import`` case, then every ``initialization`` case, in name order."""
    suite = Path(suite_dir)
    net = [check_ml_model_import_case(d) for d in sorted((suite / "ml_model_import").iterdir())
           if (d / "solutions.yaml").is_file()]
    init = [check_initialization_case(d) for d in sorted((suite / "initialization").iterdir())
            if (d / "solutions.yaml").is_file()]
    return net + init
