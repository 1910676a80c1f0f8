"""Many-condition PEtab problems from Boehm et al. (J. Proteome Res. 2014): Epo doses x ratios.

The benchmark design of Stapor et al. (Nat. Commun. 2022): a published model, N experimental
conditions, artificial noisy data from documented true parameters and a seed. Used by
`benchmarks/minibatch_scale.py` (N = 64, 256, 1024) to measure how the work of mini-batch and
full-batch optimizers grows with the number of conditions.

Model: the published STAT5 dimerization model of Boehm et al. (SBML from the PEtab
benchmark collection, ``Boehm_JProteomeRes2014``; BSD-3-Clause), read from a path (default
``../shared/benchmark_models/Boehm_JProteomeRes2014``), never copied here. One change: the
Epo stimulus ``BaF3_Epo = 1.25e-7 * exp(-Epo_degradation_BaF3 * t)`` gets a dose factor
``Epo_dose`` (dimensionless, 1 = the published experiment), so that conditions can differ in
their stimulus.

Conditions (condition ``c{i:04d}``, i = 0..N-1, drawn with `numpy.random.default_rng(SEED + N)`):

* ``Epo_dose``: log-uniform in [0.1, 10] (stimulus dose relative to the published one);
* ``ratio``: uniform in [0.3, 0.9] (initial STAT5A fraction of total STAT5: a different cell
  line or expression level; the published value is 0.693).

Data: the published observables (pSTAT5A_rel, pSTAT5B_rel, rSTAT5A_rel, in %) at the
published 16 time points (0 to 240 min), normal noise with the published noise levels
(``TRUE`` below), 48 measurements per condition. Estimated: the 6 kinetic parameters and
the 3 noise levels (log10 scale, bounds 1e-5..1e5 as published). The true parameters are
the published estimates (`TRUE`) with one change: the publication estimates ``k_exp_hetero``
at its lower bound 1e-5, and with the truth on a bound a second basin (``k_exp_hetero`` at the
upper bound, objective 9602.9 vs 8801.8 at N = 64) took most starts of every method; here it
is 1e-2 (the order of ``k_exp_homo``), inside the bounds. Times are in minutes.

Solver: forward sensitivities, rtol 1e-6, atol 1e-8: 4.8 ms per condition with gradient on
the idle machine (rtol 1e-8, atol 1e-10: 6.8 ms, objective 2e-3 different at N = 64).

Run: ``python petab_problems/boehm_doses/make_problem.py OUT_DIR --n 64 [--boehm DIR]``;
writes ``OUT_DIR/problem.yaml`` and its tables. Deterministic for a given N.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import libsbml
import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_BOEHM = HERE.parents[1] / ".." / "shared" / "benchmark_models" / "Boehm_JProteomeRes2014"
SEED = 2022
TIMES = [0.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 120.0, 160.0,
         200.0, 240.0]
#: True parameters (linear scale): the published estimates of the benchmark collection.
TRUE = {
    "Epo_degradation_BaF3": 0.026982514033029,
    "k_exp_hetero": 1e-2,  # published: 1.00067973851508e-05 (on its bound)
    "k_exp_homo": 0.006170228086381,
    "k_imp_hetero": 0.0163679184468,
    "k_imp_homo": 97749.3794024716,
    "k_phos": 15766.5070195731,
    "sd_pSTAT5A_rel": 3.85261197844677,
    "sd_pSTAT5B_rel": 6.59147818673419,
    "sd_rSTAT5A_rel": 3.15271275648527,
}
OBSERVABLES = ("pSTAT5A_rel", "pSTAT5B_rel", "rSTAT5A_rel")


def _write_sbml(boehm: Path, out: Path) -> None:
    """Published SBML with the dose factor ``Epo_dose`` in the Epo stimulus rule."""
    doc = libsbml.readSBMLFromFile(str(boehm / "model_Boehm_JProteomeRes2014.xml"))
    if doc.getNumErrors(libsbml.LIBSBML_SEV_ERROR):
        raise SystemExit(f"cannot read the Boehm SBML in {boehm}")
    model = doc.getModel()
    dose = model.createParameter()
    dose.setId("Epo_dose")
    dose.setValue(1.0)
    dose.setConstant(True)
    rule = model.getAssignmentRuleByVariable("BaF3_Epo")
    formula = libsbml.formulaToL3String(rule.getMath())
    rule.setMath(libsbml.parseL3Formula(f"Epo_dose * ({formula})"))
    model.setId("Boehm_doses")
    libsbml.writeSBMLToFile(doc, str(out / "model.xml"))


def conditions(n: int) -> pd.DataFrame:
    """Condition table of N conditions (see the module docstring)."""
    rng = np.random.default_rng(SEED + n)
    return pd.DataFrame({
        "conditionId": [f"c{i:04d}" for i in range(n)],
        "Epo_dose": 10.0 ** rng.uniform(-1.0, 1.0, n),
        "ratio": rng.uniform(0.3, 0.9, n),
    })


def _tables(n: int, boehm: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    obs = pd.read_csv(boehm / "observables_Boehm_JProteomeRes2014.tsv", sep="\t")
    par = pd.read_csv(boehm / "parameters_Boehm_JProteomeRes2014.tsv", sep="\t")
    par = par[par["estimate"] == 1].copy()  # ratio goes to the condition table
    par["nominalValue"] = par["parameterId"].map(TRUE)
    return obs, par


def write_problem(out: Path, n: int, boehm: Path = DEFAULT_BOEHM) -> Path:
    """Write the N-condition problem (with noise-free placeholder data) and return its YAML."""
    out.mkdir(parents=True, exist_ok=True)
    _write_sbml(boehm, out)
    obs, par = _tables(n, boehm)
    cond = conditions(n)
    rows = [{"observableId": o, "simulationConditionId": c, "measurement": 0.0, "time": t,
             "noiseParameters": f"sd_{o}"}
            for c in cond["conditionId"] for o in OBSERVABLES for t in TIMES]
    obs.to_csv(out / "observables.tsv", sep="\t", index=False)
    par.to_csv(out / "parameters.tsv", sep="\t", index=False)
    cond.to_csv(out / "conditions.tsv", sep="\t", index=False)
    pd.DataFrame(rows).to_csv(out / "measurements.tsv", sep="\t", index=False)
    spec = {"format_version": 1, "parameter_file": "parameters.tsv",
            "problems": [{"sbml_files": ["model.xml"], "condition_files": ["conditions.tsv"],
                          "measurement_files": ["measurements.tsv"],
                          "observable_files": ["observables.tsv"]}],
            "sbmlhybrid": {"solver": {"rtol": 1e-6, "atol": 1e-8,
                                      "sensitivity_method": "forward"}}}
    path = out / "problem.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def make(out: Path, n: int, boehm: Path = DEFAULT_BOEHM) -> Path:
    """Write the problem, simulate it at `TRUE` and replace the data by noisy simulations.

    Returns the problem YAML. The noise is normal with the true noise levels, drawn with
    `numpy.random.default_rng(SEED + N + 1)`; the noise-free values go to
    ``true_measurements.tsv`` beside it.
    """
    from sbmlhybrid.objective import create_objective
    from sbmlhybrid.problem import load_problem

    path = write_problem(out, n, boehm)
    objective = create_objective(load_problem(path))
    ids = objective.x_free_ids
    x_true = np.log10([TRUE[i] for i in ids])
    sim = objective.simulate(x_true)
    rng = np.random.default_rng(SEED + n + 1)
    mdf = pd.read_csv(out / "measurements.tsv", sep="\t")
    key = ["observableId", "simulationConditionId", "time"]
    merged = mdf.drop(columns="measurement").merge(
        sim[key + ["simulation"]], on=key, how="left", validate="one_to_one")
    if merged["simulation"].isna().any():
        raise SystemExit("simulation table does not cover the measurement table")
    sigma = merged["observableId"].map(lambda o: TRUE[f"sd_{o}"]).to_numpy()
    merged.rename(columns={"simulation": "measurement"}).to_csv(
        out / "true_measurements.tsv", sep="\t", index=False)
    merged["measurement"] = merged.pop("simulation") + rng.normal(0.0, sigma)
    merged[mdf.columns].to_csv(out / "measurements.tsv", sep="\t", index=False)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder (created)")
    ap.add_argument("--n", type=int, default=64, help="number of conditions")
    ap.add_argument("--boehm", type=Path, default=DEFAULT_BOEHM,
                    help="folder of the Boehm_JProteomeRes2014 PEtab problem")
    args = ap.parse_args(argv)
    if args.n < 1:
        raise SystemExit("--n must be >= 1")
    if args.out.exists() and any(args.out.iterdir()):
        shutil.rmtree(args.out)
    print(make(args.out, args.n, args.boehm.resolve()))


if __name__ == "__main__":
    main()
