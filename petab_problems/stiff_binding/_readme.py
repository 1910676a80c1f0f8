"""README.md of the stiff_binding problem, written by `make_problem.py` (hand-written template).

The stiffness figures are inserted from the generator's measurement (`make_problem.stiffness`),
never typed by hand.
"""

from __future__ import annotations

from pathlib import Path

from make_problem import CONDITIONS, HILL, OBSERVABLES, PARAMETERS, SEED, TIMES

TEMPLATE = """# stiff_binding: fast receptor-ligand binding beside slow trafficking and expression

A stiff kinetic model for hybrid (UDE) benchmarks, written by `make_problem.py` (this file
too: do not edit by hand). Style: the receptor binding/trafficking model with ligand
depletion of Wiley & Cunningham (Cell 25:433, 1981) and Lauffenburger & Linderman
(*Receptors: Models for Binding, Trafficking, and Signaling*, Oxford UP 1993, ch. 2-3),
driving a two-stage induced gene expression (mRNA `M`, protein `P`) through a Hill activation
by occupied receptors `C`.

```
L + R <-> C        kon*(L*R - Kd*C)             fast: koff = kon*Kd = 360 1/h (0.1 1/s)
C -> .             ke*C                          ligand-induced internalization
. -> R, R -> .     kt*R0, kt*R                   receptor turnover
. -> M             k_tx*C^{hill}/(K_C^{hill} + C^{hill})      induced transcription (hidden term)
M -> ., . -> P     kdm*M, ktl*M                  mRNA decay, translation
P -> .             kdp*P                         protein decay (half-life 35 h)
```

Time in h, `L`, `R`, `C` in nM (per culture volume), `M`, `P` in arbitrary units.

## Measured stiffness

{stiffness_text}

The ratio is computed by `make_problem.stiffness` (sympy Jacobian of the SBML rate laws,
eigenvalues with numpy, along AMICI simulations of the truth at rtol 1e-12) and stored in
`stiffness.json`; `tests/test_stiff_problem.py` recomputes it from a hand-written Jacobian.
An explicit solver needs steps below about 3 / max|Re l| for stability whatever its
tolerance, i.e. thousands of steps per 24 h culture.

## Design and data

{n_cond} conditions (ligand dose `L0` x receptor level `R0`): {conditions}.
Observables (additive normal noise, sigma in the observable's unit): {observables}, at
{times} h; {n_data} measurements, noise from `numpy.random.default_rng({seed})`; noise-free
values in `true_measurements.tsv`.

True parameters (`make_problem.PARAMETERS`, also the `nominalValue`s; estimated on log10
scale except `kon`, fixed: the data, from 15 min on, see binding in quasi-equilibrium and
determine `Kd` but not `kon`):

| id | value | unit | estimated | meaning |
|---|---|---|---|---|
{parameters}

Solver (problem YAML): CVODES BDF, rtol 1e-8, atol 1e-10, forward sensitivities.

## Gray box

`graybox.py`: `graybox_terms()` replaces the `transcription` rate law (input `C`, hidden
term `k_tx*C^{hill}/(K_C^{hill} + C^{hill})`) by a 1-8-8-1 tanh network with a softplus output
(`hybridize(load_problem("petab_problems/stiff_binding/problem.yaml"), graybox_terms())`);
`k_tx` and `K_C` drop out, the other 6 kinetic parameters are estimated with the weights.
`benchmarks/stiff_graybox.py` fits it (multi-start fides) and plots the learned vs the true
term over the data range of `C`; `benchmarks/ude_speed.py` times its gradient against
torchdiffeq and AMICI's JAX backend.

## Regenerate

`python petab_problems/stiff_binding/make_problem.py` (deterministic; compiles the model
through the project cache on first use).
"""


def write_readme(out: Path, stiff: dict, n_data: int) -> Path:
    """Write ``out/README.md`` with the measured stiffness `stiff` (`make_problem.stiffness`)."""
    per = stiff["per_condition"]
    rows = "\n".join(f"| {cid} | {v['ratio_min']:.3g} | {v['ratio_median']:.3g} | "
                     f"{v['ratio_max']:.3g} | {v['max_abs_re_lambda_per_h']:.3g} |"
                     for cid, v in per.items())
    text = (f"Stiffness ratio max|Re l| / min|Re l| over the nonzero eigenvalues of the "
            f"Jacobian along the true trajectories (241 points, 0-24 h, every condition): "
            f"**minimum {stiff['ratio_min_over_all']:.3g}**, median "
            f"{stiff['ratio_median_over_all']:.3g}; fastest eigenvalue "
            f"{stiff['max_abs_re_lambda_per_h']:.3g} 1/h.\n\n"
            "| condition | ratio min | median | max | max abs(Re l) [1/h] |\n"
            "|---|---|---|---|---|\n" + rows)
    params = "\n".join(f"| `{pid}` | {v:g} | {u} | {'yes' if est else 'no'} | {d} |"
                       for pid, (v, u, _lb, _ub, est, d) in PARAMETERS.items())
    body = TEMPLATE.format(
        stiffness_text=text, n_cond=len(CONDITIONS), hill=HILL, seed=SEED, n_data=n_data,
        conditions=", ".join(f"`{c}` ({a:g} nM, {b:g} nM)" for c, (a, b) in CONDITIONS.items()),
        observables=", ".join(f"`{o}` = {s} (sigma {g:g})" for o, (s, g) in OBSERVABLES.items()),
        times=", ".join(f"{t:g}" for t in TIMES), parameters=params)
    path = out / "README.md"
    path.write_text(body)
    return path
