"""`sbmlhybrid.build._codegen`: the free-symbol Jacobian gives AMICI's entries and code;
`sbmlhybrid.build._chain`: rule derivatives chained at code generation give AMICI's results.

References: AMICI's own ``smart_jacobian`` (entry by entry, on random expressions) and the C++
sources AMICI generates without the patch (byte by byte, on a small rule-based model with a
network-like term and a non-symbol differentiation variable in the mix). For the totals: the
same model built with AMICI's run-time chain rule (values, forward and adjoint sensitivities
of observables and a log-likelihood agree to 1e-9 / 1e-7 relative) and central differences;
the totals build has recursion depth 0, the reference a positive one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import amici
import libsbml
import numpy as np
import pytest
import sympy as sp
from amici._symbolic.sympy_utils import smart_jacobian

from sbmlhybrid.build._cmake import swig_environment
from sbmlhybrid.build._codegen import fast_csc_matrix, fast_jacobian, faster_codegen


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
    # unrolled-network rows: sums of weight x input products, a repeated factor, a power,
    # a number times a product, the variable inside another factor, a bare variable
    a, w = syms[:6], syms[6:]
    rows += [sp.Add(*(wi * ai for wi, ai in zip(w, a))) + w[0],
             w[1] * a[1] * w[1] + 3 * w[2] * a[2], w[3] ** 2 * a[3] - 2 * w[4] * a[4],
             w[5] * sp.tanh(w[5] * a[5]) + a[0], w[0] * a[0]]
    eq = sp.Matrix(rows)
    var = sp.Matrix([*syms, sp.Function("f")(syms[1])])  # one non-symbol variable
    fast, amici = fast_jacobian(eq, var), smart_jacobian(eq, var)
    assert fast.shape == amici.shape == (20, 13)
    assert dict(fast.todok()) == dict(amici.todok())
    assert fast.nnz() > 20  # the random rows do depend on the variables


def test_nary_plus_equals_the_pairwise_sum() -> None:
    """One ``Add`` of n operands is the same expression as sbmlmath's one-at-a-time sum (its
    own result without the patch), for products, repeated terms, numbers and functions."""
    from sbmlhybrid.build._codegen import _nary_plus

    rng = random.Random(11)
    syms = sp.symbols("b0:8")
    pool = [*syms, sp.Integer(2), sp.Rational(-1, 3), sp.Float(0.25)]
    for _ in range(40):
        ops = [rng.choice(pool) * rng.choice(pool) if rng.random() < 0.5
               else sp.tanh(rng.choice(syms)) for _ in range(rng.randint(2, 70))]
        pairwise = ops[0]
        for op in ops[1:]:
            pairwise = pairwise + op
        fast = _nary_plus(*ops, evaluate=True)
        assert fast == pairwise and sp.srepr(fast) == sp.srepr(pairwise)
    unevaluated = _nary_plus(syms[0], syms[0], evaluate=False)
    assert unevaluated.args == (syms[0], syms[0])  # not collected to 2*b0
    assert _nary_plus(evaluate=True) == 0


def test_fast_csc_matrix_equals_amici() -> None:
    from amici.exporters.sundials.cxxcodeprinter import csc_matrix

    rng = random.Random(7)
    x = sp.symbols("x0:6")
    rows, cols = sp.symbols("r0:5"), sp.symbols("c0:6")
    entries = {(rng.randrange(5), rng.randrange(6)): rng.choice(x) ** rng.randint(1, 3)
               for _ in range(12)}
    entries[(0, 0)] = sp.Integer(0)  # a stored zero is skipped like a structural one
    for matrix in (sp.MutableSparseMatrix(5, 6, entries), sp.Matrix(5, 6, lambda i, j:
                                                                     entries.get((i, j), 0))):
        for kwargs in ({}, {"identifier": 3}, {"pattern_only": True}):
            ours = fast_csc_matrix(matrix, list(rows), list(cols), **kwargs)
            amici = csc_matrix(matrix, list(rows), list(cols), **kwargs)
            assert len(ours[1]) == len([v for v in entries.values() if v != 0])
            assert ours[:4] == amici[:4]
            assert ours[4] == amici[4]


def _rule_model() -> str:
    """Two species, one Michaelis-Menten reaction whose rate goes through a 3-unit layer of
    assignment rules (tanh of weighted inputs, as the "fused" unrolling writes them) and a
    2-unit layer in the default "split" unrolling (a sum rule ``z`` and a rule ``tanh(z)``
    per unit, sums of weight x input products), one of whose inputs depends on time; two
    static rules and a dynamic one reading them."""
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
    split = {"u0": "S", "u1": "P * exp(-0.1 * time)"}  # time: a dynamic, not-static rule
    for k in range(2):
        split |= {f"z{k}": f"Q{k} + R{k}0 * u0 + R{k}1 * u1 + 0.5 * R{k}0",
                  f"a{k}": f"tanh(z{k})"}
    for pid in [f"Q{k}" for k in range(2)] + [f"R{k}{j}" for k in range(2) for j in range(2)]:
        p = m.createParameter()
        p.setId(pid), p.setValue(0.2), p.setConstant(True)
    # static rules (parameters only, directly and through another rule) and a dynamic one
    # that reads them
    split |= {"s0": "2 * Q0", "s1": "s0 + R00", "d0": "s1 * S"}
    for var, formula in split.items():
        h = m.createParameter()
        h.setId(var), h.setConstant(False), h.setValue(0.0)
        rule = m.createAssignmentRule()
        rule.setVariable(var)
        rule.setMath(libsbml.parseL3Formula(formula))
    r = m.createReaction()
    r.setId("v"), r.setReversible(False)
    for ref in (r.createReactant(), r.createProduct()):
        ref.setStoichiometry(1.0), ref.setConstant(True)
    r.getReactant(0).setSpecies("S"), r.getProduct(0).setSpecies("P")
    r.createKineticLaw().setMath(libsbml.parseL3Formula(
        "c * S * exp(V0 * h0 + V1 * h1 + V2 * h2 + a0 - a1) / (1 + S + 0.1 * d0)"))
    return libsbml.writeSBMLToString(doc)


def _generated_sources(folder: str, patched: bool) -> dict[str, bytes]:
    from amici.importers.sbml import SbmlImporter

    importer = SbmlImporter(_rule_model(), from_file=False)
    if patched:  # AMICI's run-time chain rule: the same C++ as AMICI's
        with faster_codegen(total_w_derivatives=False):
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


def test_static_rules_equal_amici(tmp_path, monkeypatch) -> None:
    """The static rules ``w`` from sparse patterns are AMICI's (dense-matrix) ones."""
    import amici._symbolic.de_model as de_model
    from amici.importers.sbml import SbmlImporter

    import sbmlhybrid.build._codegen as codegen

    amici_static = de_model.DEModel.static_indices
    found = {}

    def both(model):
        found["ours"] = codegen_static(model)
        found["amici"] = amici_static(model, "w")
        return found["ours"]

    codegen_static = codegen._static_w_indices
    monkeypatch.setattr(codegen, "_static_w_indices", both)
    with faster_codegen(total_w_derivatives=False):
        SbmlImporter(_rule_model(), from_file=False).sbml2amici(
            "codegen_toy", str(tmp_path), compile=False, simplify=None)
    assert found["ours"] == found["amici"]
    assert len(found["ours"]) == 2  # s0 and s1


def test_parallel_compile_set_only_inside_and_only_if_unset(monkeypatch) -> None:
    import amici._symbolic.de_model as de_model
    import sbmlmath.mathml_parser as mathml

    from sbmlhybrid.build._codegen import _JacobianMemo, _nary_plus

    plus = f"{{{mathml.mathml_ns}}}plus"
    original = (de_model.smart_jacobian, de_model.csc_matrix,
                de_model.DEModel.static_indices, mathml.mathml_op_sympy.get(plus))
    monkeypatch.delenv("AMICI_PARALLEL_COMPILE", raising=False)
    with faster_codegen():
        assert os.environ["AMICI_PARALLEL_COMPILE"] == str(os.cpu_count())
        assert isinstance(de_model.smart_jacobian, _JacobianMemo)
        assert de_model.csc_matrix is fast_csc_matrix
        assert de_model.DEModel.static_indices is not original[2]
        assert mathml.mathml_op_sympy[plus] is _nary_plus
    assert "AMICI_PARALLEL_COMPILE" not in os.environ
    assert (de_model.smart_jacobian, de_model.csc_matrix,
            de_model.DEModel.static_indices, mathml.mathml_op_sympy.get(plus)) == original
    monkeypatch.setenv("AMICI_PARALLEL_COMPILE", "1")
    with pytest.raises(RuntimeError), faster_codegen():
        assert os.environ["AMICI_PARALLEL_COMPILE"] == "1"
        raise RuntimeError("build failed")
    assert os.environ["AMICI_PARALLEL_COMPILE"] == "1"
    assert (de_model.smart_jacobian, de_model.csc_matrix,
            de_model.DEModel.static_indices, mathml.mathml_op_sympy.get(plus)) == original


def test_large_sources_get_the_lower_optimization_level(tmp_path, monkeypatch) -> None:
    """Only generated sources over the size threshold get `LARGE_SOURCE_FLAGS`, after
    CMake's -O3 in their compile command; the build still imports and simulates."""
    import amici
    import numpy as np
    from amici.importers.sbml import SbmlImporter

    import sbmlhybrid.build._codegen as codegen

    sizes = {}
    importer = SbmlImporter(_rule_model(), from_file=False)
    importer.sbml2amici("codegen_toy", str(tmp_path / "plain"), compile=False, simplify=None)
    for name in os.listdir(tmp_path / "plain"):
        if name.endswith(".cpp"):
            sizes[name] = os.path.getsize(tmp_path / "plain" / name)
    threshold = sorted(sizes.values())[-2]  # the two largest sources
    monkeypatch.setattr(codegen, "LARGE_SOURCE_BYTES", threshold)
    assert codegen.large_sources(tmp_path / "plain") == sorted(
        n for n, b in sizes.items() if b >= threshold)
    assert len(codegen.large_sources(tmp_path / "plain")) == 2

    out = tmp_path / "built"
    for name, value in swig_environment().items():  # the SWIG that built AMICI, as the cache
        monkeypatch.setenv(name, value)
    with faster_codegen():
        SbmlImporter(_rule_model(), from_file=False).sbml2amici(
            "codegen_toy_o1", str(out), simplify=None)
    cmake = (out / "CMakeLists.txt").read_text()
    large = codegen.large_sources(out)
    assert f"set_source_files_properties({' '.join(large)} PROPERTIES COMPILE_OPTIONS " \
           f"\"{codegen.LARGE_SOURCE_FLAGS}\")" in cmake
    ninja = next(out.rglob("build.ninja")).read_text()
    for block in ninja.split("\nbuild ")[1:]:
        target = block.split(":", 1)[0]
        if target.endswith(".cpp.o") and "CMakeFiles/codegen_toy_o1.dir/" in target:
            src = target.rsplit("/", 1)[1][:-2]
            flags = next(line for line in block.splitlines() if "FLAGS = " in line)
            lowered = flags.rstrip().endswith(codegen.LARGE_SOURCE_FLAGS)
            assert lowered == (src in large), (src, flags)
    model = amici.import_model_module("codegen_toy_o1", str(out)).get_model()
    model.set_timepoints(np.linspace(0, 2, 5))
    rdata = amici.sim.sundials.run_simulation(model, model.create_solver())
    assert rdata.status == 0 and np.all(np.isfinite(rdata.x))


def _build(folder: Path, name: str, totals: bool):
    from amici import MeasurementChannel
    from amici.importers.sbml import SbmlImporter

    # observables read rules of both layers (y has w in its C++ signature); one reads a rule
    # that depends on time only through another rule (static-rule detection)
    channels = [MeasurementChannel(id_="y_rate", formula="a0 * S + h1", sigma="1.0"),
                MeasurementChannel(id_="y_u", formula="z1 + P", sigma="1.0")]
    with faster_codegen(total_w_derivatives=totals):
        SbmlImporter(_rule_model(), from_file=False).sbml2amici(
            name, str(folder), observation_model=channels, simplify=None,
            compute_conservation_laws=False)
    return amici.import_model_module(name, str(folder)).get_model()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    if "SWIG" not in os.environ:  # the SWIG that built AMICI, as the cache does
        os.environ.update(swig_environment())
    root = tmp_path_factory.mktemp("chain")
    return {totals: _build(root / str(totals), f"chain_toy_{int(totals)}", totals)
            for totals in (False, True)}


def _simulate(model, method: str):
    import amici.sim.sundials as asd

    model.set_timepoints(np.linspace(0.0, 5.0, 11))
    solver = model.create_solver()
    solver.set_relative_tolerance(1e-12)
    solver.set_absolute_tolerance(1e-14)
    solver.set_sensitivity_order(asd.SensitivityOrder.first)
    solver.set_sensitivity_method(getattr(asd.SensitivityMethod, method))
    edata = asd.ExpData(model)
    edata.set_measurements(np.linspace(0.1, 2.0, 2 * 11))
    edata.set_noise_scales(np.ones(2 * 11))
    rdata = asd.run_simulation(model, solver, edata)
    assert rdata.status == 0
    return rdata


def test_totals_remove_the_run_time_recursion(models) -> None:
    assert models[False].w_recursion_depth > 0
    assert models[True].w_recursion_depth == 0


@pytest.mark.parametrize("method", ["forward", "adjoint"])
def test_totals_give_the_same_values_and_sensitivities(models, method) -> None:
    ref, tot = (_simulate(models[t], method) for t in (False, True))
    np.testing.assert_allclose(tot.y, ref.y, rtol=1e-9, atol=1e-12)
    assert abs(tot.llh - ref.llh) <= 1e-9 * abs(ref.llh)
    np.testing.assert_allclose(tot.sllh, ref.sllh, rtol=1e-7, atol=1e-9)
    assert np.linalg.norm(ref.sllh) > 1e-3  # the likelihood does depend on the weights
    if method == "forward":
        np.testing.assert_allclose(tot.sy, ref.sy, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(tot.sx, ref.sx, rtol=1e-7, atol=1e-10)


def test_totals_gradient_matches_finite_differences(models) -> None:
    """Independent of AMICI's chain rule: central differences of the log-likelihood."""
    model = models[True]
    grad = _simulate(model, "forward").sllh
    p0 = np.asarray(model.get_free_parameters())
    for i in range(0, len(p0), 3):
        step = 1e-5 * max(1.0, abs(p0[i]))
        values = []
        for sign in (1, -1):
            p = p0.copy()
            p[i] += sign * step
            model.set_free_parameters(p)
            values.append(_simulate(model, "forward").llh)
        model.set_free_parameters(p0)
        assert abs((values[0] - values[1]) / (2 * step) - grad[i]) <= 1e-5 * max(1, abs(grad[i]))


def test_totals_over_the_operation_budget_keep_amici_chain_rule(tmp_path, monkeypatch) -> None:
    """A model whose chained derivatives exceed `MAX_OPERATIONS` gets AMICI's partial
    derivatives (a non-empty dwdw); under the budget, dwdw is empty."""
    from amici.importers.sbml import SbmlImporter

    import sbmlhybrid.build._chain as chain

    def dwdw_lines(folder: Path) -> int:
        with faster_codegen():
            SbmlImporter(_rule_model(), from_file=False).sbml2amici(
                "codegen_toy", str(folder), compile=False, simplify=None,
                compute_conservation_laws=False)
        path = folder / "dwdw.cpp"
        return path.read_text().count("dwdw[") if path.exists() else 0

    import sbmlhybrid.build._codegen as codegen

    assert dwdw_lines(tmp_path / "chained") == 0
    monkeypatch.setattr(chain, "MAX_OPERATIONS", 10)
    computed: list[tuple] = []
    original = codegen.fast_jacobian

    def counted(eq, var):
        computed.append((tuple(eq), tuple(var)))
        return original(eq, var)

    monkeypatch.setattr(codegen, "fast_jacobian", counted)
    assert dwdw_lines(tmp_path / "partial") > 5
    # the rules' Jacobians that the operation count needed are not differentiated again
    assert len(computed) == len(set(computed))
