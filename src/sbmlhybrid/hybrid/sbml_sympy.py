"""SBML rules and PEtab formulas as sympy expressions, for `TorchODE` (hand-written).

Reused: PEtab's sympy parser (`petab.v1.math.sympify_petab`) and libsbml's L3 formula
strings. Hand-written: the model's constants, and assignment rules substituted into each
other so that each is an expression of states, constants and time only.
"""

from __future__ import annotations

import libsbml
import sympy as sp
from petab.v1.math import sympify_petab

from sbmlhybrid.errors import InputError


def sympify_formula(formula: str, what: str) -> sp.Expr:
    """A PEtab/SBML infix formula as sympy, with plain (assumption-free) symbols."""
    try:
        expr = sympify_petab(formula)
    except Exception as err:  # petab raises several types for parse errors
        raise InputError(f"cannot parse the math of {what}: {formula!r} ({err})") from err
    # petab's symbols carry assumptions (real=True); plain symbols match by name everywhere
    return expr.xreplace({s: sp.Symbol(s.name) for s in expr.free_symbols})


def sympify_math(ast: libsbml.ASTNode, what: str) -> sp.Expr:
    """An SBML math element as sympy (via its L3 string)."""
    return sympify_formula(libsbml.formulaToL3String(ast), what)


def constant_values(model: libsbml.Model, rules: dict[str, sp.Expr],
                    state_ids: list[str]) -> dict[str, float]:
    """Id -> SBML value of every parameter, compartment and species that is neither a
    state nor an assignment-rule variable (the model's constants, in SBML order)."""
    values = {}
    for lst in (model.getListOfParameters(), model.getListOfCompartments(),
                model.getListOfSpecies()):
        for e in lst:
            if e.getId() not in rules and e.getId() not in state_ids:
                values[e.getId()] = e.getInitialConcentration() if isinstance(
                    e, libsbml.Species) else (e.getValue() if isinstance(
                        e, libsbml.Parameter) else e.getSize())
    return values


def resolve_rules(rules: dict[str, sp.Expr]) -> dict[str, sp.Expr]:
    """Every assignment-rule variable as an expression of states, constants and time only
    (rules substituted into each other); InputError for a cycle of rules."""
    kinetic: dict[str, sp.Expr] = {}

    def resolve(var: str, stack: tuple[str, ...] = ()) -> sp.Expr:
        if var not in kinetic:
            if var in stack:
                raise InputError(f"assignment rules form a cycle through {var!r}")
            expr = rules[var]
            sub = {s: resolve(str(s), (*stack, var)) for s in expr.free_symbols
                   if str(s) in rules}
            kinetic[var] = expr.xreplace(sub)
        return kinetic[var]

    for var in rules:
        resolve(var)
    return kinetic
