"""Generate the binding-chain example: SBML model, in vitro PEtab problem, in vivo outcomes.

Run from the repository root: ``python petab_problems/binding_chain/make_problem.py``.

Mechanism (fractions of one target site; time in min, enzyme concentration E in nM)::

    U --kon*E--> B --kf1--> I --kf2--> R --kcat--> P
    U <--koff--  B <--kr1-- I <--kr2-- R

U unbound, B bound (seed), I intermediate, R fully engaged, P product (cleaved/edited).
Sequence-like features: a target carries a 12-position mismatch pattern; mismatches in the
seed (positions 1-4), middle (5-8) and distal (9-12) regions raise koff, kr1 and kr2::

    koff = exp(lk_off + a_seed*m_seed),  kr1 = exp(lk_r1 + a_mid*m_mid),
    kr2  = exp(lk_r2 + a_dist*m_dist),   other k = exp(lk_*)

(m_* = number of mismatches in the region, condition-specific fixed parameters with E).

In vitro data (the PEtab problem, ``problem.yaml``): 10 sequences x 3 enzyme concentrations,
bound fraction B+I+R and product P at 8 times, normal noise sigma 0.02, seed `SEED`.
In vivo data (``invivo.tsv``): per sample a random mismatch pattern and three context
covariates (accessibility in [0,1], log enzyme expression ~ N(0, 0.5^2), competition in
[0,1]); outcome = P(60 min) + N(0, 0.03^2) at E = `E_IN_VIVO`, with the context effects on
log-rates in `context_shift` (the ground truth, unknown to the models). Samples 0..`N_TEST`-1
are the held-out test split; the rest form the training pool.
"""

from __future__ import annotations

import sys
from pathlib import Path

import libsbml
import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
SEED = 20240513
SIGMA_IN_VITRO = 0.02
SIGMA_IN_VIVO = 0.03
E_IN_VIVO = 3.0  # nM, nominal effective enzyme concentration in vivo
T_IN_VIVO = 25.0  # min, time of the in vivo readout
N_TEST, N_POOL = 200, 300
TIMES = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0]
CONCENTRATIONS = [1.0, 5.0, 25.0]

#: True kinetic parameters (natural-log rates in 1/min, kon in 1/(nM min); a_* in ln units
#: per mismatch). These generate the in vitro data.
TRUE = {"lk_on": -3.0, "lk_off": -3.9, "lk_f1": 0.0, "lk_r1": -2.3, "lk_f2": -0.7,
        "lk_r2": -3.0, "lk_cat": -1.6, "a_seed": 2.0, "a_mid": 1.5, "a_dist": 1.0}
RATE_IDS = ["lk_on", "lk_off", "lk_f1", "lk_r1", "lk_f2", "lk_r2", "lk_cat"]
FIXED = ["E", "m_seed", "m_mid", "m_dist"]
STATES = ["U", "B", "I", "R", "P"]
#: in vitro sequences as mismatch counts (seed, middle, distal)
SEQUENCES = [(0, 0, 0), (1, 0, 0), (2, 0, 0), (0, 1, 0), (0, 2, 0), (0, 0, 1), (0, 0, 2),
             (1, 1, 0), (0, 1, 1), (1, 0, 2)]


def context_shift(access: np.ndarray, expr: np.ndarray, comp: np.ndarray) -> np.ndarray:
    """Ground-truth in vivo shift of the 7 log-rates (order `RATE_IDS`), shape (n, 7).

    Accessible chromatin and enzyme expression speed up binding (non-linearly in access),
    crowding slows R-loop propagation, competing repair/binding factors slow the product step
    and speed up dissociation.
    """
    n = len(access)
    d = np.zeros((n, 7))
    d[:, 0] = 1.2 * np.tanh(2.0 * (access - 0.5)) + 0.8 * expr        # lk_on
    d[:, 1] = 0.6 * comp                                                # lk_off
    d[:, 2] = -0.5 + 0.4 * access                                       # lk_f1
    d[:, 6] = -0.9 * comp                                               # lk_cat
    return d


def build_sbml() -> str:
    doc = libsbml.SBMLDocument(3, 1)
    m = doc.createModel()
    m.setId("binding_chain")
    for unit_attr in ("setTimeUnits", "setSubstanceUnits", "setExtentUnits"):
        getattr(m, unit_attr)("dimensionless")
    c = m.createCompartment()
    c.setId("cell"), c.setSize(1.0), c.setConstant(True), c.setSpatialDimensions(3)
    for s in STATES:
        sp = m.createSpecies()
        sp.setId(s), sp.setCompartment("cell"), sp.setInitialConcentration(1.0 if s == "U" else 0.0)
        sp.setHasOnlySubstanceUnits(False), sp.setBoundaryCondition(False), sp.setConstant(False)
    for pid in [*TRUE, *FIXED]:
        p = m.createParameter()
        p.setId(pid), p.setConstant(True)
        p.setValue(TRUE.get(pid, 1.0 if pid == "E" else 0.0))
    reactions = [("bind", "U", "B", "exp(lk_on) * E * U"),
                 ("unbind", "B", "U", "exp(lk_off + a_seed * m_seed) * B"),
                 ("fwd1", "B", "I", "exp(lk_f1) * B"),
                 ("rev1", "I", "B", "exp(lk_r1 + a_mid * m_mid) * I"),
                 ("fwd2", "I", "R", "exp(lk_f2) * I"),
                 ("rev2", "R", "I", "exp(lk_r2 + a_dist * m_dist) * R"),
                 ("cat", "R", "P", "exp(lk_cat) * R")]
    for rid, src, dst, law in reactions:
        r = m.createReaction()
        r.setId(rid), r.setReversible(False), r.setFast(False)
        for species, creator in ((src, r.createReactant), (dst, r.createProduct)):
            ref = creator()
            ref.setSpecies(species), ref.setStoichiometry(1.0), ref.setConstant(True)
        r.createKineticLaw().setMath(libsbml.parseL3Formula(f"cell * {law}"))
    return libsbml.writeSBMLToString(doc)


def write_tables() -> pd.DataFrame:
    """Write model and tables; the measurement column holds NaN until `simulate_data`."""
    (HERE / "model.xml").write_text(build_sbml())
    pd.DataFrame([
        {"observableId": "obs_bound", "observableName": "bound fraction",
         "observableFormula": "B + I + R", "observableTransformation": "lin",
         "noiseFormula": SIGMA_IN_VITRO, "noiseDistribution": "normal"},
        {"observableId": "obs_product", "observableName": "product fraction",
         "observableFormula": "P", "observableTransformation": "lin",
         "noiseFormula": SIGMA_IN_VITRO, "noiseDistribution": "normal"},
    ]).to_csv(HERE / "observables.tsv", sep="\t", index=False)
    conds = []
    for i, (ms, mm, md) in enumerate(SEQUENCES):
        for e in CONCENTRATIONS:
            conds.append({"conditionId": f"seq{i}_E{e:g}", "E": e, "m_seed": ms, "m_mid": mm,
                          "m_dist": md})
    pd.DataFrame(conds).to_csv(HERE / "conditions.tsv", sep="\t", index=False)
    pd.DataFrame([
        {"parameterId": pid, "parameterScale": "lin",
         "lowerBound": -8.0 if pid.startswith("lk") else -1.0,
         "upperBound": 4.0 if pid.startswith("lk") else 5.0,
         "nominalValue": TRUE[pid], "estimate": 1} for pid in TRUE
    ]).to_csv(HERE / "parameters.tsv", sep="\t", index=False)
    rows = [{"observableId": o, "simulationConditionId": c["conditionId"], "time": t,
             "measurement": np.nan} for c in conds for t in TIMES
            for o in ("obs_bound", "obs_product")]
    meas = pd.DataFrame(rows)
    (HERE / "problem.yaml").write_text(yaml.safe_dump({
        "format_version": 1, "parameter_file": "parameters.tsv",
        "problems": [{"sbml_files": ["model.xml"], "condition_files": ["conditions.tsv"],
                      "measurement_files": ["measurements.tsv"],
                      "observable_files": ["observables.tsv"]}],
        "sbmlhybrid": {"solver": {"rtol": 1e-10, "atol": 1e-12,
                                  "sensitivity_method": "forward"}},
    }, sort_keys=False))
    return meas


def _simulate(model, fixed: dict[str, np.ndarray], free: dict[str, np.ndarray],
              times: list[float]) -> np.ndarray:
    """Observables (n, n_t, 2) of n parameter sets with plain AMICI calls."""
    import amici.sim.sundials as asd

    n = len(next(iter(fixed.values())))
    solver = model.create_solver()
    solver.set_relative_tolerance(1e-12), solver.set_absolute_tolerance(1e-14)
    model.set_timepoints(times)
    fixed_ids = list(model.get_fixed_parameter_ids())
    free_ids = list(model.get_free_parameter_ids())
    out = []
    for i in range(n):
        model.set_fixed_parameters([float(fixed[k][i]) for k in fixed_ids])
        model.set_free_parameters([float(free[k][i]) for k in free_ids])
        rdata = asd.run_simulation(model, solver)
        assert rdata.status == 0
        out.append(np.asarray(rdata.y))
    return np.asarray(out)


def simulate_data(meas: pd.DataFrame) -> None:
    sys.path.insert(0, str(HERE.parents[1] / "src"))
    from sbmlhybrid.build import compile_problem
    from sbmlhybrid.problem import load_problem

    meas.assign(measurement=0.0).to_csv(HERE / "measurements.tsv", sep="\t", index=False)
    model = compile_problem(load_problem(HERE / "problem.yaml")).create_model()
    rng = np.random.default_rng(SEED)
    conds = pd.read_csv(HERE / "conditions.tsv", sep="\t")
    fixed = {k: conds[k].to_numpy(float) for k in FIXED}
    free = {k: np.full(len(conds), v) for k, v in TRUE.items()}
    y = _simulate(model, fixed, free, TIMES)  # (n_cond, n_t, 2)
    lookup = {(c, t, o): y[i, j, k] for i, c in enumerate(conds["conditionId"])
              for j, t in enumerate(TIMES) for k, o in enumerate(("obs_bound", "obs_product"))}
    true = np.array([lookup[(r.simulationConditionId, r.time, r.observableId)]
                     for r in meas.itertuples()])
    meas = meas.assign(measurement=true + rng.normal(0.0, SIGMA_IN_VITRO, len(true)))
    meas.to_csv(HERE / "measurements.tsv", sep="\t", index=False, float_format="%.6g")

    # ---- in vivo: random mismatch patterns and contexts, ground truth with context shift
    n = N_TEST + N_POOL
    pattern = rng.random((n, 12)) < 0.15
    counts = pattern.reshape(n, 3, 4).sum(axis=2)
    access = rng.random(n)
    expr = rng.normal(0.0, 0.5, n)
    comp = rng.random(n)
    shift = context_shift(access, expr, comp)
    free = {k: np.full(n, v) for k, v in TRUE.items()}
    for j, k in enumerate(RATE_IDS):
        free[k] = free[k] + shift[:, j]
    fixed = {"E": np.full(n, E_IN_VIVO), "m_seed": counts[:, 0], "m_mid": counts[:, 1],
             "m_dist": counts[:, 2]}
    truth = _simulate(model, fixed, free, [T_IN_VIVO])[:, 0, 1]
    pd.DataFrame({
        "sample": [f"s{i:03d}" for i in range(n)],
        "split": ["test" if i < N_TEST else "train" for i in range(n)],
        "pattern": ["".join("x" if b else "." for b in row) for row in pattern],
        "m_seed": counts[:, 0], "m_mid": counts[:, 1], "m_dist": counts[:, 2],
        "access": access, "expr": expr, "comp": comp,
        "outcome": truth + rng.normal(0.0, SIGMA_IN_VIVO, n), "outcome_true": truth,
    }).to_csv(HERE / "invivo.tsv", sep="\t", index=False, float_format="%.6g")


if __name__ == "__main__":
    simulate_data(write_tables())
