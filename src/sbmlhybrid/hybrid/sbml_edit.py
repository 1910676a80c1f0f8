"""Edits of an SBML model used by `hybridize` and the flux coupling (libsbml, hand-written).

Formulas are L3 infix strings (``libsbml.parseL3Formula``); `replace_target` puts a symbol
where a network replaces a model part (assignment or rate rule, kinetic law, constant
parameter, or one sub-expression of those).
"""

from __future__ import annotations

import libsbml

from sbmlhybrid.errors import InputError, Issue
from sbmlhybrid.hybrid.spec import NetworkTerm


def parse_formula(formula: str, what: str) -> libsbml.ASTNode:
    """The AST of an L3 infix formula; InputError naming `what` if it does not parse."""
    ast = libsbml.parseL3Formula(formula)
    if ast is None:
        raise InputError(f"cannot parse formula for {what}: {formula!r}: "
                         f"{libsbml.getLastParseL3Error()}")
    return ast


def math_symbols(model: libsbml.Model) -> set[str]:
    """Ids referenced by any math of the model (rules, kinetic laws, assignments, events)."""
    nodes = [r.getMath() for r in model.getListOfRules()]
    nodes += [ia.getMath() for ia in model.getListOfInitialAssignments()]
    nodes += [r.getKineticLaw().getMath() for r in model.getListOfReactions()
              if r.isSetKineticLaw()]
    for ev in model.getListOfEvents():
        nodes += [ev.getTrigger().getMath()] + [a.getMath() for a in ev.getListOfEventAssignments()]
    out: set[str] = set()
    stack = [n for n in nodes if n is not None]
    while stack:
        node = stack.pop()
        if node.isName():
            out.add(node.getName())
        stack.extend(node.getChild(i) for i in range(node.getNumChildren()))
    return out


def replace_subtree(node: libsbml.ASTNode, term: str, symbol: str) -> int:
    """Replace every subtree whose L3 string equals `term` by `symbol`; returns the count."""
    count = 0
    for i in range(node.getNumChildren()):
        child = node.getChild(i)
        if libsbml.formulaToL3String(child) == term:
            node.replaceChild(i, parse_formula(symbol, symbol), True)
            count += 1
        else:
            count += replace_subtree(child, term, symbol)
    return count


def set_assignment_rule(model: libsbml.Model, var: str, formula: str) -> None:
    """``var := formula`` (L3 infix): creates the parameter and the rule, or replaces the
    math of an existing rule."""
    if model.getElementBySId(var) is None:
        p = model.createParameter()
        p.setId(var)
        p.setConstant(False)
        p.setValue(0.0)
    rule = model.getRuleByVariable(var) or model.createAssignmentRule()
    rule.setVariable(var)
    rule.setMath(parse_formula(formula, var))


def replace_target(model: libsbml.Model, net: NetworkTerm, j: int, symbol: str,
                   removed_params: list[str]) -> None:
    """Put `symbol` in place of target `j` of `net` (kind "auto" is resolved from the model);
    constant parameters turned into rule variables are appended to `removed_params`."""
    target, kind, term = net.targets[j], net.kinds[j], net.terms[j]
    rule = model.getRuleByVariable(target)
    reaction = model.getReaction(target)
    param = model.getParameter(target)
    if kind == "auto":
        if rule is not None and rule.isAssignment():
            kind = "assignment"
        elif reaction is not None:
            kind = "reaction"
        elif param is not None and param.getConstant():
            kind = "parameter"
        elif model.getElementBySId(target) is None:
            raise InputError(Issue(f"{net.name}: target {target!r} is not in the model (no "
                                   "reaction, parameter, rule or species has this id)",
                                   entity=target))
        else:
            raise InputError(Issue(f"{net.name}: cannot tell what {target!r} is; give kind= "
                                   "('rate' for a state's rate of change)", entity=target))
    where = f"{net.name}: target {target!r} (kind {kind})"
    if kind == "assignment":
        if rule is None or not rule.isAssignment():
            raise InputError(Issue(f"{where}: not an assignment-rule variable", entity=target))
        rule.setMath(parse_formula(symbol, symbol))
    elif kind == "rate":
        if rule is None or not rule.isRate():
            species = model.getSpecies(target)
            hint = " (a species changed by reactions: replace the reactions instead)" \
                if species is not None else ""
            raise InputError(Issue(f"{where}: has no rate rule{hint}", entity=target))
        rule.setMath(parse_formula(symbol, symbol))
    elif kind == "reaction":
        if reaction is None:
            raise InputError(Issue(f"{where}: no such reaction", entity=target))
        law = reaction.getKineticLaw() or reaction.createKineticLaw()
        law.setMath(parse_formula(symbol, symbol))
    elif kind == "parameter":
        if param is None or not param.getConstant() or rule is not None:
            raise InputError(Issue(f"{where}: not a constant parameter", entity=target))
        param.setConstant(False)
        rule = model.createAssignmentRule()
        rule.setVariable(target)
        rule.setMath(parse_formula(symbol, symbol))
        removed_params.append(target)
    else:  # term
        holder = rule.getMath() if rule is not None else (
            reaction.getKineticLaw().getMath() if reaction is not None and
            reaction.isSetKineticLaw() else None)
        if holder is None:
            raise InputError(Issue(f"{where}: no rule or reaction with this id", entity=target))
        wanted = libsbml.formulaToL3String(parse_formula(term, where))
        math = holder.deepCopy()
        if libsbml.formulaToL3String(math) == wanted:
            math, n = parse_formula(symbol, symbol), 1
        else:
            n = replace_subtree(math, wanted, symbol)
        if n == 0:
            raise InputError(Issue(f"{where}: term {wanted!r} not found in "
                                   f"{libsbml.formulaToL3String(holder)!r} (terms must be whole "
                                   "sub-expressions)", entity=target))
        (rule if rule is not None else reaction.getKineticLaw()).setMath(math)
