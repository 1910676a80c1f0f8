"""AMICI's JAX backend (diffrax) on the same SBML hybrid model, for `ude_speed.py`.

Reused: AMICI 1.0.1's JAX exporter and simulator (`amici.importers.petab.PetabImporter(...,
jax=True)`, `amici.sim.jax.JAXProblem`, its vmapped `run_simulation`), petab's v1 -> v2
upgrade (`petab.v2.Problem.from_yaml` on the v1 files written by petab), diffrax solvers and
step-size controllers, `jax.value_and_grad`. The hybridized SBML (network unrolled into
assignment rules by `sbmlhybrid.hybrid.hybridize`) is exported as it is: the same model
AMICI's C++ path compiles.

Hand-written: the gradient path. In AMICI 1.0.1, `JAXProblem` maps every model parameter to
the *nominal value* of the PEtab v2 parameter table (`_map_experiment_model_parameter_value`),
so ``jax.grad`` of `amici.sim.jax.run_simulations` w.r.t. ``JAXProblem.parameters`` is
identically zero (measured: gradient norm 0.0 on stiff_binding). Here the per-condition
parameter array is prepared once by AMICI (`_prepare_experiments`, outside the trace) and its
estimated columns are overwritten inside the traced function by ``10**x`` of the free vector
(PEtab v1 scales), then AMICI's `run_simulation` integrates all conditions (vmapped).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import petab.v1 as petab

SOLVERS = ("Kvaerno5", "Kvaerno3", "Tsit5", "Dopri5")  # diffrax; Kvaerno* are implicit ESDIRK


def configure(threads: int) -> None:
    """XLA CPU thread settings; call before jax is imported."""
    os.environ["JAX_ENABLE_X64"] = "1"
    os.environ["JAX_PLATFORMS"] = "cpu"
    if threads == 1:
        os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")


def build(up, folder: Path):
    """Export the hybrid problem to JAX and return the `JAXProblem` (code in `folder`)."""
    import petab.v2 as v2
    from amici.importers.petab import PetabImporter

    v1_dir = folder / "petab_v1"
    v1_dir.mkdir(parents=True, exist_ok=True)
    up.hp.petab_problem.to_files_generic(v1_dir)
    problem = v2.Problem.from_yaml(str(v1_dir / "problem.yaml"))
    importer = PetabImporter(problem, jax=True, module_name=f"ude_{up.name}_jax",
                             output_dir=str(folder / "model"), verbose=False)
    return importer.create_simulator()


def objective(jp, up):
    """(nll(x), info): x = the free vector of `up` (PEtab v1 scales), a traceable function.

    The estimated model parameters of every condition come from ``x``; the other entries
    (fixed and condition-specific values) from AMICI's own prepared array.
    """
    import jax.numpy as jnp

    experiments = jp._petab_problem.experiments
    conds = [cid for exp in experiments for per in exp.periods for cid in per.condition_ids]
    dynamic = list(dict.fromkeys(c for c in conds if "preequilibration" not in c))
    p0, mask_re, x_re, op_arr, np_arr, h_mask, t_zeros = jp._prepare_experiments(
        experiments, dynamic, False, jp._op_numeric, jp._op_mask, jp._op_indices,
        jp._np_numeric, jp._np_mask, jp._np_indices)
    model_ids = list(jp.model.parameter_ids)
    pdf = up.hp.petab_problem.parameter_df
    missing = [p for p in up.x_ids if p not in model_ids]
    if missing:
        raise RuntimeError(f"estimated parameters not in the JAX model: {missing[:5]}")
    cols = np.array([model_ids.index(p) for p in up.x_ids])
    log10 = np.array([pdf.loc[p, petab.PARAMETER_SCALE] == petab.LOG10 for p in up.x_ids])
    if any(pdf.loc[p, petab.PARAMETER_SCALE] == petab.LOG for p in up.x_ids):
        raise RuntimeError("natural-log scaled parameters are not handled")
    n_exp = len(experiments)
    init_mask = jnp.stack([jnp.array([s in set(model_ids) for s in jp.model.state_ids])] * n_exp)
    init_val = jnp.ones_like(init_mask, dtype=float)
    preeq = jnp.stack([jnp.array([]) for _ in experiments])

    def nll(x, solver, controller, max_steps):
        vals = jnp.where(log10, 10.0 ** x, x)
        p = p0.at[:, cols].set(jnp.broadcast_to(vals, (n_exp, len(cols))))
        llh, stats = jp.run_simulation(
            p, jp._ts_dyn, jp._ts_posteq, jp._my, jp._iys, jp._iy_trafos, op_arr, np_arr,
            mask_re, x_re, init_val, init_mask, h_mask, solver, controller,
            _root_finder(), _steady_state_event(), max_steps, preeq, preeq, jp._ts_masks,
            t_zeros)
        return -jnp.sum(llh), stats

    return nll, {"n_conditions": n_exp, "model_parameters": len(model_ids)}


def _root_finder():
    import optimistix
    from amici.sim.jax.petab import DEFAULT_ROOT_FINDER_SETTINGS

    return optimistix.Newton(**DEFAULT_ROOT_FINDER_SETTINGS)


def _steady_state_event():
    import diffrax

    return diffrax.steady_state_event()


def value_and_grad_fn(jp, up, solver_name: str, max_steps: int = 2**17):
    """Jitted ((x, rtol, atol) -> (nll, grad, n_steps)) and its compile time [s].

    The tolerances are traced arguments of the PID step-size controller (AMICI's default
    coefficients), so one compilation serves the whole tolerance sweep of a solver.

    Args:
        jp: `build` output.
        up: The problem.
        solver_name: A diffrax solver of `SOLVERS`.
        max_steps: diffrax step cap per condition.

    Returns:
        (fn, compile_s): ``fn(x, rtol, atol) -> (nll float, grad (n_free,), steps int)``;
        the compilation (trace + XLA) is timed with ``lower(...).compile()``, apart from calls.
    """
    import diffrax
    import jax
    import jax.numpy as jnp
    from amici.sim.jax.petab import DEFAULT_CONTROLLER_SETTINGS

    nll, info = objective(jp, up)
    n_exp = info["n_conditions"]
    solver = getattr(diffrax, solver_name)()
    coeffs = {k: v for k, v in DEFAULT_CONTROLLER_SETTINGS.items() if k not in ("rtol", "atol")}

    def f(x, rtol, atol):  # tolerances per condition: AMICI vmaps every array leaf
        ctrl = diffrax.PIDController(rtol=jnp.broadcast_to(rtol, (n_exp,)),
                                     atol=jnp.broadcast_to(atol, (n_exp,)), **coeffs)
        return nll(x, solver, ctrl, max_steps)

    vg = jax.jit(jax.value_and_grad(f, has_aux=True))
    x0 = jnp.asarray(up.x)
    t0 = time.perf_counter()
    compiled = vg.lower(x0, jnp.float64(1e-6), jnp.float64(1e-8)).compile()
    compile_s = time.perf_counter() - t0

    def fn(x, rtol: float, atol: float):
        (val, stats), grad = compiled(jnp.asarray(x), jnp.float64(rtol), jnp.float64(atol))
        val.block_until_ready()
        steps = stats.get("stats_dyn", {}).get("num_steps") if isinstance(stats, dict) else None
        return float(val), np.asarray(grad), (int(np.sum(steps)) if steps is not None else None)

    return fn, compile_s
