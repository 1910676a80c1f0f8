"""What feeds a network input of a PEtab SciML problem (hand-written).

PEtab SciML spec, hybridization and condition tables: an input element takes a number or a
math expression (PEtab math; a parameter id is the simplest one), or a whole forward argument
comes from an array file (``inputs/<inputId>/<conditions>``, the dataset name ``0`` for every
condition or a semicolon-separated list of condition ids).

* Before simulation (static networks) expressions may use parameter-table parameters; torch
  evaluates them (`InputExpression`: sympy's ``lambdify`` with its torch printer), so the
  gradient flows into the mechanistic parameters they use.
* During simulation (networks unrolled into the SBML) expressions may use model entities,
  parameters and ``time``; `sbmlhybrid.sciml.dynamic` writes them as assignment rules.

Reused: ``petab.v1.math.sympify_petab`` (the PEtab math grammar), sympy, torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import sympy
import torch
from petab.v1.math import sympify_petab

from sbmlhybrid.errors import InputError, Issue

__all__ = ["ArrayInput", "InputExpression", "array_for", "check_static_inputs",
           "network_arguments", "parse_expression"]


def parse_expression(text: Any, where: Issue) -> sympy.Expr:
    """A PEtab math expression (string, number or sympy expression) as sympy.

    Args:
        text: The table value.
        where: File, row, column and entity for the error (its message is replaced).

    Raises:
        InputError: the text is not PEtab math.
    """
    if isinstance(text, sympy.Basic):
        return text
    try:
        return sympify_petab(text)
    except Exception as err:  # petab's parser raises several types
        raise InputError(Issue(f"{text!r} is not a PEtab math expression: {err}", where.file,
                               where.row, where.column, where.entity)) from err


class InputExpression:
    """A static network input element computed from parameters, in torch.

    Args:
        expr: The expression (its free symbols are parameter ids).

    Attributes:
        symbols: The parameter ids it uses, sorted.
    """

    def __init__(self, expr: sympy.Expr):
        self.expr = expr
        self.symbols = sorted(str(s) for s in expr.free_symbols)
        self._fun: Any = None

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The value for parameter values (linear scale, 0-d float64 tensors)."""
        if self._fun is None:
            self._fun = sympy.lambdify([sympy.Symbol(s) for s in self.symbols], self.expr,
                                       modules="torch")
        out = self._fun(*[values[s] for s in self.symbols])
        return torch.as_tensor(out, dtype=torch.float64).reshape(())

    def __getstate__(self) -> dict[str, Any]:  # lambdified functions do not pickle
        return {"expr": self.expr, "symbols": self.symbols, "_fun": None}

    def __repr__(self) -> str:
        return f"InputExpression({self.expr})"


class ArrayInput:
    """A whole forward argument from an array file, with where it came from."""

    def __init__(self, value: np.ndarray, file: Path | str, input_id: str, key: str):
        self.value = np.asarray(value, dtype=float)
        self.file, self.input_id, self.key = str(file), input_id, key

    @property
    def where(self) -> str:
        return f"array input {self.input_id!r} (inputs/{self.input_id}/{self.key}, shape " \
               f"{tuple(self.value.shape)})"

    def issue(self, message: str) -> Issue:
        return Issue(f"{self.where}: {message}", self.file, entity=self.input_id)


def array_for(group: Mapping[str, tuple[np.ndarray, Path]], input_id: str,
              conditions: list[str]) -> ArrayInput | None:
    """The array of `input_id` for an experiment whose initial conditions are `conditions`:
    the dataset whose (semicolon-separated) name lists one of them, else the dataset ``0``,
    else None."""
    for key, (value, file) in group.items():
        if set(k.strip() for k in key.split(";")) & set(conditions):
            return ArrayInput(value, file, input_id, key)
    if "0" in group:
        value, file = group["0"]
        return ArrayInput(value, file, input_id, "0")
    return None


def network_arguments(args: list[list[Any]], values: Mapping[str, torch.Tensor]
                      ) -> tuple[torch.Tensor, ...]:
    """Forward arguments of a static network from its input sources (per argument: one
    `ArrayInput`, or numbers and `InputExpression`s) and parameter values (linear scale)."""
    out = []
    for arg in args:
        if len(arg) == 1 and isinstance(arg[0], ArrayInput):
            out.append(torch.as_tensor(arg[0].value, dtype=torch.float64))
            continue
        out.append(torch.stack([v(values) if isinstance(v, InputExpression)
                                else torch.tensor(float(v), dtype=torch.float64)
                                for v in arg]))
    return tuple(out)


def check_static_inputs(nn_id: str, net: torch.nn.Module, per_experiment: dict[str, Any],
                        values: Mapping[str, float]) -> int | None:
    """Evaluate a static network once per experiment at nominal parameter values.

    Returns:
        The fewest elements its first output has in any experiment (the output elements
        the mapping table may name); None without experiments.

    Raises:
        InputError: the network cannot take an experiment's inputs, naming the array
            inputs (file, dataset, shape) or else the network.
    """
    tensors = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}
    sizes = []
    for eid, args in per_experiment.items():
        try:
            with torch.no_grad():
                y = net(*network_arguments(args, tensors))
            sizes.append((y[0] if isinstance(y, tuple) else y).numel())
        except (RuntimeError, ValueError, IndexError, TypeError, InputError) as err:
            why = str(err).strip().splitlines()[0]
            arrays = [a[0] for a in args if len(a) == 1 and isinstance(a[0], ArrayInput)]
            issues = [a.issue(f"network {nn_id!r} cannot take it (experiment {eid!r}): {why}")
                      for a in arrays]
            raise InputError(issues or [Issue(f"network {nn_id!r} cannot be evaluated on the "
                                              f"inputs of experiment {eid!r}: {why}",
                                              entity=nn_id)],
                             header="Network inputs do not fit the network") from err
    return min(sizes) if sizes else None
