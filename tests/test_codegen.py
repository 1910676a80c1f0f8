"""`sbmlhybrid.build._codegen`: the free-symbol Jacobian gives AMICI's entries and code.

References: AMICI's own ``smart_jacobian`` (entry by entry, on random expressions) and the C++
sources AMICI generates without the patch (byte by byte, on a small rule-based model with a
network-like term and a non-symbol differentiation variable in the mix).
"""

from __future__ import annotations

import os
import random

import libsbml
import pytest
import sympy as sp
from amici._symbolic.sympy_utils import smart_jacobian

from sbmlhybrid.build._codegen import fast_jacobian, faster_codegen


def test_fast_jacobian_equals_amici_entry_by_entry() -> None:
    rng = random.Random(4)
    syms = sp.symbols("a0:12")
    funcs = (sp.tanh, sp.exp, sp.log, lambda z: z ** 2, lambda z: 1 / (1 + z))
    rows = []
    for _ in range(15):
        picks = rng.sample(syms, rng.randint(0, 5))
        expr = sp.Add(*(rng.choice(funcs)(s * rng.randint(1, 3)) for s in picks)) \
            * (syms[0] if rng.random() < 0.3 else 1)
        rows.append(expr)
    eq = sp.Matrix(rows)
    var = sp.Matrix([*syms, sp.Function("f")(syms[1])])  # one non-symbol variable
    fast, amici = fast_jacobian(eq, var), smart_jacobian(eq, var)
    assert fast.shape == amici.shape == (15, 13)
    assert dict(fast.todok()) == dict(amici.todok())
    assert fast.nnz() > 20  # the random rows do depend on the variables


def _rule_model() -> str:
    """Two species, one Michaelis-Menten reaction whose rate goes through a 3-unit layer of
    assignment rules (tanh of weighted inputs), as an unrolled network would."""
    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId("codegen_toy")
    c = m.createCompartment()
    c.setId("c"), c.setSize(1.0), c.setConstant(True)
    for sid, x0 in (("S", 2.0), ("P", 0.0)):
        s = m.createSpecies()
        s.setId(sid), s.setCompartment("c"), s.setInitialConcentration(x0)
        s.setHasOnlySubstanceUnits(False), s.setBoundaryCondition(False), s.setConstant(False)
    weights = {f"W{i}{j}": 0.1 * (i + 1) * (j - 1) for i in range(3) for j in range(2)}
    weights |= {f"b{i}": 0.05 * i for i in range(3)} | {f"V{i}": 0.3 for i in range(3)}
    for pid, value in weights.items():
        p = m.createParameter()
        p.setId(pid), p.setValue(value), p.setConstant(True)
    for i in range(3):
        h = m.createParameter()
        h.setId(f"h{i}"), h.setConstant(False), h.setValue(0.0)
        rule = m.createAssignmentRule()
        rule.setVariable(f"h{i}")
        rule.setMath(libsbml.parseL3Formula(f"tanh(W{i}0 * S + W{i}1 * P + b{i})"))
    r = m.createReaction()
    r.setId("v"), r.setReversible(False)
    for ref in (r.createReactant(), r.createProduct()):
        ref.setStoichiometry(1.0), ref.setConstant(True)
    r.getReactant(0).setSpecies("S"), r.getProduct(0).setSpecies("P")
    r.createKineticLaw().setMath(libsbml.parseL3Formula(
        "c * S * exp(V0 * h0 + V1 * h1 + V2 * h2) / (1 + S)"))
    return libsbml.writeSBMLToString(doc)


def _generated_sources(folder: str, patched: bool) -> dict[str, bytes]:
    from amici.importers.sbml import SbmlImporter

    importer = SbmlImporter(_rule_model(), from_file=False)
    if patched:
        with faster_codegen():
            importer.sbml2amici("codegen_toy", folder, compile=False, simplify=None)
    else:
        importer.sbml2amici("codegen_toy", folder, compile=False, simplify=None)
    out = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.endswith((".cpp", ".h")):
                path = os.path.join(root, name)
                out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


def test_generated_code_is_byte_identical(tmp_path) -> None:
    plain = _generated_sources(str(tmp_path / "plain"), patched=False)
    fast = _generated_sources(str(tmp_path / "fast"), patched=True)
    assert any("dwdp" in name for name in plain)  # the parameter Jacobian was generated
    assert plain.keys() == fast.keys()
    assert [n for n in plain if plain[n] != fast[n]] == []


def test_parallel_compile_set_only_inside_and_only_if_unset(monkeypatch) -> None:
    import amici._symbolic.de_model as de_model

    original = de_model.smart_jacobian
    monkeypatch.delenv("AMICI_PARALLEL_COMPILE", raising=False)
    with faster_codegen():
        assert os.environ["AMICI_PARALLEL_COMPILE"] == str(os.cpu_count())
        assert de_model.smart_jacobian is fast_jacobian
    assert "AMICI_PARALLEL_COMPILE" not in os.environ
    assert de_model.smart_jacobian is original
    monkeypatch.setenv("AMICI_PARALLEL_COMPILE", "1")
    with pytest.raises(RuntimeError), faster_codegen():
        assert os.environ["AMICI_PARALLEL_COMPILE"] == "1"
        raise RuntimeError("build failed")
    assert os.environ["AMICI_PARALLEL_COMPILE"] == "1"
    assert de_model.smart_jacobian is original
