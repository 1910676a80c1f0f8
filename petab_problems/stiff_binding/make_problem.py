"""Stiff receptor-ligand problem: fast binding beside slow trafficking and induced expression.

Model style: the receptor binding/trafficking model with ligand depletion of Wiley &
Cunningham (Cell 25:433, 1981) and Lauffenburger & Linderman (Receptors: Models for Binding,
Trafficking, and Signaling, Oxford UP 1993, ch. 2-3) — ligand L binds free surface receptor
R to complex C (mass action), complexes are internalized with the ligand (ke), receptors are
made at a constant rate and internalized constitutively (kt) — driving a two-stage induced
gene expression (mRNA M, protein P) through a Hill activation by occupied receptors, as in
standard signal-to-expression models. Binding is fast (kon = 1e7 1/(M s), koff = 0.1 1/s,
i.e. Kd = 10 nM; values within the usual ranges of growth-factor and cytokine receptors, not
fitted to one system), expression is slow (protein half-life 35 h): the eigenvalues of the
Jacobian along the true trajectories span >= 2e4 (computed below, `stiffness`).

Units: time h, concentrations nM (L, R, C per culture volume), M and P in arbitrary units.

    L + R <-> C         kon*(L*R - Kd*C)              (fast, koff = kon*Kd)
    C -> .              ke*C                           (internalization and degradation)
    . -> R, R -> .      kt*R0, kt*R                    (receptor turnover, steady state R0)
    . -> M              k_tx*C^2/(K_C^2 + C^2)         (induced transcription; the gray
                                                        box's hidden term)
    M -> ., . -> P      kdm*M, ktl*M                   (mRNA decay, translation)
    P -> .              kdp*P                          (protein decay)

Conditions (`CONDITIONS`): ligand dose L0 (0.3 to 30 nM) x receptor level R0 (1 or 3 nM).
Data: L (free ligand, ELISA), C (surface-bound ligand, radioligand assay), M (qPCR) and P
(reporter) at `TIMES`, additive normal noise with the sigmas of `OBSERVABLES`, drawn with
``numpy.random.default_rng(SEED)``; noise-free values in ``true_measurements.tsv``.
Estimated (log10): Kd, ke, kt, k_tx, K_C, kdm, ktl, kdp. ``kon`` is fixed (nominal = truth):
data sampled from 15 min on see binding only in quasi-equilibrium, so they determine Kd but
not kon (a separate kinetic binding assay would).

Reused: libsbml (SBML), petab tables, sbmlhybrid/AMICI (simulation of the truth), sympy
(Jacobian of the SBML rate laws), numpy (eigenvalues). Hand-written: the model, design and
stiffness measure. Deterministic. Run from the repository root:
``python petab_problems/stiff_binding/make_problem.py [OUT_DIR]`` (default: this folder);
writes the PEtab v1 problem, ``true_measurements.tsv``, ``stiffness.json`` and README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import libsbml
import numpy as np
import pandas as pd
import sympy as sp
import yaml

HERE = Path(__file__).resolve().parent
SEED = 20250415
TIMES = [0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0, 24.0]  # h
#: parameter id -> (true value, unit, lower bound, upper bound, estimated, description)
PARAMETERS: dict[str, tuple[float, str, float, float, int, str]] = {
    "kon": (36.0, "1/(nM h)", 1.0, 1e3, 0, "binding on-rate (1e7 1/(M s))"),
    "Kd": (10.0, "nM", 0.1, 1e3, 1, "dissociation constant (koff = kon*Kd = 0.1 1/s)"),
    "ke": (6.0, "1/h", 0.1, 100.0, 1, "complex internalization (0.1 1/min)"),
    "kt": (1.2, "1/h", 0.01, 100.0, 1, "constitutive receptor internalization (0.02 1/min)"),
    "k_tx": (2.0, "au/h", 0.01, 100.0, 1, "maximal induced transcription"),
    "K_C": (0.1, "nM", 1e-3, 10.0, 1, "complex level of half-maximal transcription"),
    "kdm": (0.7, "1/h", 0.01, 10.0, 1, "mRNA decay (half-life 1 h)"),
    "ktl": (1.0, "1/h", 0.01, 100.0, 1, "translation"),
    "kdp": (0.02, "1/h", 1e-3, 1.0, 1, "protein decay (half-life 35 h)"),
}
HILL = 2  # Hill exponent of the induced transcription (fixed in the SBML)
#: condition id -> (L0 nM, R0 nM)
CONDITIONS = {"L0p3": (0.3, 1.0), "L1": (1.0, 1.0), "L3": (3.0, 1.0), "L10": (10.0, 1.0),
              "L30": (30.0, 1.0), "L10_R3": (10.0, 3.0)}
#: observable id -> (state, sigma)
OBSERVABLES = {"obs_L": ("L", 0.05), "obs_C": ("C", 0.005), "obs_M": ("M", 0.02),
               "obs_P": ("P", 0.2)}
STATES = ("L", "R", "C", "M", "P")
# reaction id -> (reactants, products, modifiers, kinetic law)
REACTIONS = {
    "binding": (("L", "R"), ("C",), (), "kon*(L*R - Kd*C)"),
    "internalization": (("C",), (), (), "ke*C"),
    "receptor_synthesis": ((), ("R",), (), "kt*R0"),
    "receptor_internalization": (("R",), (), (), "kt*R"),
    "transcription": ((), ("M",), ("C",), f"k_tx*C^{HILL}/(K_C^{HILL} + C^{HILL})"),
    "mrna_decay": (("M",), (), (), "kdm*M"),
    "translation": ((), ("P",), ("M",), "ktl*M"),
    "protein_decay": (("P",), (), (), "kdp*P"),
}


def _check(code: int, what: str) -> None:
    if code != libsbml.LIBSBML_OPERATION_SUCCESS:
        reason = libsbml.OperationReturnValue_toString(code)
        raise RuntimeError(f"libsbml failed to {what}: {reason}")


def build_sbml() -> str:
    """The model as an SBML L3V2 string (one compartment of size 1, mass-action units nM)."""
    doc = libsbml.SBMLDocument(3, 2)
    model = doc.createModel()
    model.setId("stiff_binding")
    model.setName("receptor-ligand binding with trafficking and induced expression")
    comp = model.createCompartment()
    comp.setId("culture")
    comp.setSize(1.0)
    comp.setConstant(True)
    for pid, (value, _unit, *_r, desc) in PARAMETERS.items():
        p = model.createParameter()
        p.setId(pid)
        p.setValue(value)
        p.setConstant(True)
        p.setName(desc)
    for pid, value in (("L0", 1.0), ("R0", 1.0)):  # set per condition
        p = model.createParameter()
        p.setId(pid)
        p.setValue(value)
        p.setConstant(True)
    for sid in STATES:
        s = model.createSpecies()
        s.setId(sid)
        s.setCompartment("culture")
        s.setInitialConcentration(0.0)
        s.setHasOnlySubstanceUnits(False)
        s.setBoundaryCondition(False)
        s.setConstant(False)
    for sid, init in (("L", "L0"), ("R", "R0")):
        ia = model.createInitialAssignment()
        ia.setSymbol(sid)
        _check(ia.setMath(libsbml.parseL3Formula(init)), f"set initial value of {sid}")
    for rid, (reactants, products, modifiers, law) in REACTIONS.items():
        r = model.createReaction()
        r.setId(rid)
        r.setReversible(rid == "binding")
        for sid in reactants:
            ref = r.createReactant()
            ref.setSpecies(sid)
            ref.setStoichiometry(1.0)
            ref.setConstant(True)
        for sid in products:
            ref = r.createProduct()
            ref.setSpecies(sid)
            ref.setStoichiometry(1.0)
            ref.setConstant(True)
        for sid in modifiers:
            r.createModifier().setSpecies(sid)
        kl = r.createKineticLaw()
        _check(kl.setMath(libsbml.parseL3Formula(f"culture*({law})")), f"set law of {rid}")
    if doc.checkInternalConsistency():
        raise RuntimeError(doc.getErrorLog().toString())
    return libsbml.writeSBMLToString(doc)


def write_tables(out: Path) -> Path:
    """Write SBML and PEtab tables (placeholder data); returns the problem YAML."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.xml").write_text(build_sbml())
    pd.DataFrame([{"observableId": oid, "observableName": state, "observableFormula": state,
                   "observableTransformation": "lin", "noiseFormula": sigma,
                   "noiseDistribution": "normal"}
                  for oid, (state, sigma) in OBSERVABLES.items()]
                 ).to_csv(out / "observables.tsv", sep="\t", index=False)
    pd.DataFrame([{"conditionId": cid, "conditionName": f"L0 = {l0:g} nM, R0 = {r0:g} nM",
                   "L0": l0, "R0": r0} for cid, (l0, r0) in CONDITIONS.items()]
                 ).to_csv(out / "conditions.tsv", sep="\t", index=False)
    pd.DataFrame([{"parameterId": pid, "parameterName": desc, "parameterScale": "log10",
                   "lowerBound": lb, "upperBound": ub, "nominalValue": value, "estimate": est}
                  for pid, (value, _u, lb, ub, est, desc) in PARAMETERS.items()]
                 ).to_csv(out / "parameters.tsv", sep="\t", index=False)
    pd.DataFrame([{"observableId": oid, "simulationConditionId": cid, "time": t,
                   "measurement": 0.0} for cid in CONDITIONS for oid in OBSERVABLES
                  for t in TIMES]).to_csv(out / "measurements.tsv", sep="\t", index=False)
    spec = {"format_version": 1, "parameter_file": "parameters.tsv",
            "problems": [{"sbml_files": ["model.xml"], "condition_files": ["conditions.tsv"],
                          "measurement_files": ["measurements.tsv"],
                          "observable_files": ["observables.tsv"]}],
            "sbmlhybrid": {"solver": {"rtol": 1e-8, "atol": 1e-10,
                                      "sensitivity_method": "forward"}}}
    path = out / "problem.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sympy_jacobian() -> tuple[list[str], sp.Matrix]:
    """Symbolic Jacobian d(dx/dt)/dx of the SBML model (read back from `build_sbml`).

    Returns the state ids (rows/columns) and the matrix in the model's symbols.
    """
    model = libsbml.readSBMLFromString(build_sbml()).getModel()
    states = [s.getId() for s in model.getListOfSpecies()]
    syms = {i: sp.Symbol(i) for i in [*states, *PARAMETERS, "L0", "R0", "culture"]}
    rhs = {s: sp.Integer(0) for s in states}
    for r in model.getListOfReactions():
        law = sp.sympify(libsbml.formulaToL3String(r.getKineticLaw().getMath()).replace("^", "**"),
                         locals=syms)
        for ref in r.getListOfReactants():
            rhs[ref.getSpecies()] -= ref.getStoichiometry() * law
        for ref in r.getListOfProducts():
            rhs[ref.getSpecies()] += ref.getStoichiometry() * law
    f = sp.Matrix([rhs[s] for s in states]).subs(syms["culture"], 1)
    return states, f.jacobian([syms[s] for s in states])


def stiffness_ratios(states: list[str], x: np.ndarray, values: dict[str, float],
                     rel_zero: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalue spread of the Jacobian (`sympy_jacobian`) at each state of a trajectory.

    Args:
        states: State ids, the columns of `x`.
        x: States along a trajectory, shape (n_time, n_states), nM / au.
        values: Parameter id -> value (linear scale, model units) incl. L0 and R0.
        rel_zero: Eigenvalues with |Re l| <= rel_zero * max|Re l| count as zero.

    Returns:
        (ratio, fastest), each shape (n_time,): max|Re l| / min|Re l| over the nonzero
        eigenvalues l, and max|Re l| [1/h].
    """
    ids, jac = sympy_jacobian()
    if ids != list(states):
        raise ValueError(f"state order {states} differs from the SBML's {ids}")
    f = sp.lambdify([sp.Symbol(i) for i in [*states, *values]], jac, "numpy")
    ratio, fastest = [], []
    for row in np.asarray(x, float):
        re = np.abs(np.linalg.eigvals(np.array(f(*row, *values.values()), float)).real)
        re = re[re > rel_zero * re.max()]
        ratio.append(re.max() / re.min())
        fastest.append(re.max())
    return np.array(ratio), np.array(fastest)


def true_trajectories(objective, n_time: int = 241) -> dict[str, np.ndarray]:
    """States at the true parameters on a dense grid 0..24 h: condition -> (n_time, n_states)."""
    import amici.sim.sundials as asd

    x_true = np.log10([PARAMETERS[p][0] for p in objective.x_free_ids])
    obj = objective.amici_objective
    objective.evaluate(x_true, gradient=False)  # fills the ExpData parameters
    solver = obj.amici_solver.clone()
    solver.set_sensitivity_order(asd.SensitivityOrder.none)
    solver.set_return_data_reporting_mode(asd.RDataReporting.full)
    out = {}
    for i, (_pre, cid) in enumerate(objective.conditions):
        edata = asd.ExpData(obj.edatas[i])
        edata.set_timepoints(np.linspace(0.0, TIMES[-1], n_time))
        rdata = asd.run_simulation(obj.amici_model, solver, edata)
        assert list(obj.amici_model.get_state_ids()) == list(STATES)
        out[cid] = np.asarray(rdata.x)
    return out


def stiffness(objective) -> dict:
    """Eigenvalue ratio along the true trajectory of every condition (see `stiffness_ratios`).

    Returns a JSON-ready record: per condition min/median/max of the ratio and the largest
    |Re l| [1/h] (an explicit solver's step is bounded by ~3/max|Re l|), and over all.
    """
    per = {}
    base = {p: v[0] for p, v in PARAMETERS.items()}
    for cid, x in true_trajectories(objective).items():
        l0, r0 = CONDITIONS[cid]
        ratio, fastest = stiffness_ratios(list(STATES), x, {**base, "L0": l0, "R0": r0})
        per[cid] = {"ratio_min": float(ratio.min()), "ratio_median": float(np.median(ratio)),
                    "ratio_max": float(ratio.max()),
                    "max_abs_re_lambda_per_h": float(fastest.max())}
    return {"definition": "max|Re l| / min|Re l| over nonzero eigenvalues (|Re l| > 1e-12 max) "
                          "of the Jacobian d(dx/dt)/dx (sympy, from the SBML rate laws) at 241 "
                          "points of the true trajectory, 0..24 h",
            "ratio_min_over_all": min(v["ratio_min"] for v in per.values()),
            "ratio_median_over_all": float(np.median([v["ratio_median"] for v in per.values()])),
            "max_abs_re_lambda_per_h": max(v["max_abs_re_lambda_per_h"] for v in per.values()),
            "per_condition": per}


def simulate_data(path: Path) -> tuple[pd.DataFrame, dict]:
    """Replace the placeholder data by noisy simulations at the truth; returns (data, stiffness)."""
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import load_problem

    problem = load_problem(path)
    problem.solver.rtol, problem.solver.atol = 1e-12, 1e-14
    objective = create_objective(problem)
    x_true = np.log10([PARAMETERS[p][0] for p in objective.x_free_ids])
    sim = objective.simulate(x_true)
    key = ["observableId", "simulationConditionId", "time"]
    truth = sim[key + ["simulation"]].rename(columns={"simulation": "measurement"})
    truth.to_csv(path.parent / "true_measurements.tsv", sep="\t", index=False)
    rng = np.random.default_rng(SEED)
    sigma = truth["observableId"].map(lambda o: OBSERVABLES[o][1]).to_numpy()
    data = truth.assign(measurement=truth["measurement"] + rng.normal(0.0, sigma))
    data.to_csv(path.parent / "measurements.tsv", sep="\t", index=False, float_format="%.10g")
    return data, stiffness(objective)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, nargs="?", default=HERE, help="output folder")
    args = ap.parse_args(argv)
    path = write_tables(args.out)
    data, stiff = simulate_data(path)
    (args.out / "stiffness.json").write_text(json.dumps(stiff, indent=1) + "\n")
    sys.path.insert(0, str(HERE))
    from _readme import write_readme  # noqa: E402

    write_readme(args.out, stiff, len(data))
    print(f"{path}: {len(data)} measurements; stiffness ratio min {stiff['ratio_min_over_all']:.3g}"
          f", median {stiff['ratio_median_over_all']:.3g}, max|Re l| "
          f"{stiff['max_abs_re_lambda_per_h']:.3g} 1/h")


if __name__ == "__main__":
    main()
