"""Multi-start fitting through pyPESTO, with checkpointing and resume.

Reused: `pypesto.optimize.minimize` (optimizers, engines, histories), `pypesto.store` (HDF5
results), petab's start-point sampling (honours initialization priors). Added here: start
points seeded per start index (start i is the same whatever `n_starts` is, so a larger run
extends a smaller one), a checkpoint after every chunk of starts written atomically
(temp file + rename: an interrupted run never leaves a corrupt result), and resume that
runs only the missing starts.

`fit` takes any object of the objective protocol (`sbmlhybrid.objective.Objective`: PEtab
v1/v2, hybrid, SciML, torch-side ODE); mini-batch optimizers need one whose condition
subsets they can run (`supports_subsets`: pyPESTO's AMICI objective, or ``evaluate`` behind an
`EvaluateObjective` for PEtab v2 experiments, SciML and the torch ODE: every objective of the
package); another implementation of the protocol without either is refused by name.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import petab.v1 as petab
import pypesto
import pypesto.optimize as optimize
import pypesto.store
from pypesto.engine import MultiProcessEngine, MultiThreadEngine, SingleCoreEngine
from tqdm.auto import tqdm

from sbmlhybrid.errors import InputError, Issue, SimulationError
from sbmlhybrid.objective import Objective, supports_subsets
from sbmlhybrid.optimize.counted import CountedOptimizer
from sbmlhybrid.optimize.fullbatch import make_optimizer
from sbmlhybrid.optimize.minibatch import MiniBatchOptimizer
from sbmlhybrid.optimize.screen import POLISHED, screened_polish

logger = logging.getLogger(__name__)

_META = "sbmlhybrid"
OPTIMIZERS = ("fides", "lbfgsb")
ENGINES = ("single", "threads", "process", "mpi")


@dataclass
class FitSettings:
    """Settings of a multi-start fit.

    Attributes:
        n_starts: Number of local optimizations.
        optimizer: "fides" (trust-region, default), "lbfgsb" (scipy), or a
            `pypesto.optimize.Optimizer` instance (e.g. a mini-batch optimizer).
        engine: "single", "threads", "process" (local processes) or "mpi"
            (`MPIPoolEngine`; run under ``mpiexec -n N python -m mpi4py.futures``).
        workers: Threads/processes for the engine (default: CPU count).
        seed: Seed of the start points (start i uses seed (seed, i)).
        max_iter: Iteration limit per start.
        checkpoint_every: Starts per checkpoint (default: the number of workers).
        screen_margin: After all starts, polish with `screen_optimizer` (to convergence,
            `max_iter` iterations at most) only the starts whose value lies within
            screen_margin x |best value| of the best (`sbmlhybrid.optimize.screen`); None:
            no screened polish. Meant for mini-batch starts (without their own polish).
        screen_optimizer: "fides" or "lbfgsb".
    """

    n_starts: int = 10
    optimizer: str | optimize.Optimizer = "fides"
    engine: str = "single"
    workers: int | None = None
    seed: int = 0
    max_iter: int = 1000
    checkpoint_every: int | None = None
    screen_margin: float | None = None
    screen_optimizer: str = "fides"

    def __post_init__(self) -> None:
        if isinstance(self.optimizer, str) and self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {self.optimizer!r}; choose from {OPTIMIZERS}")
        if self.engine not in ENGINES:
            raise InputError(f"unknown engine {self.engine!r}; choose from {ENGINES}")
        if self.n_starts < 1:
            raise InputError("n_starts must be >= 1")
        if self.screen_margin is not None and not (
                np.isfinite(self.screen_margin) and self.screen_margin >= 0):
            raise InputError(f"screen_margin must be >= 0, got {self.screen_margin}")
        if self.screen_optimizer not in OPTIMIZERS:
            raise InputError(f"unknown screen_optimizer {self.screen_optimizer!r}; choose "
                             f"from {OPTIMIZERS}")


def make_engine(name: str, workers: int | None) -> pypesto.engine.Engine:
    workers = workers or os.cpu_count() or 1
    if name == "single":
        return SingleCoreEngine()
    if name == "threads":
        return MultiThreadEngine(n_threads=workers)
    if name == "process":
        return MultiProcessEngine(n_procs=workers)
    from pypesto.engine.mpi_pool import MPIPoolEngine

    return MPIPoolEngine()


MAX_RESAMPLES = 100


def _sample_start(objective: Objective, key: list[int]) -> np.ndarray:
    """One start point on PEtab scale, seeded by `key`: petab v1's sampler (initialization
    priors, else uniform within bounds) when the free vector is a v1 parameter table's,
    otherwise (PEtab v2, SciML) the pyPESTO problem's own start-point method."""
    sub_seed = int(np.random.SeedSequence(key).generate_state(1)[0])
    petab_problem = getattr(objective.problem, "petab_problem", None)
    if isinstance(petab_problem, petab.Problem) and \
            list(petab_problem.x_free_ids) == list(objective.x_free_ids):
        return np.asarray(petab.sample_parameter_startpoints(
            petab_problem.parameter_df, n_starts=1, seed=sub_seed)[0], dtype=float)
    problem = objective.pypesto_problem
    state = np.random.get_state()
    np.random.seed(sub_seed)  # pyPESTO's start-point methods draw from numpy's global RNG
    try:
        return np.asarray(problem.startpoint_method(n_starts=1, problem=problem)[0], float)
    finally:
        np.random.set_state(state)


def start_points(objective: Objective, n_starts: int, seed: int,
                 resample: bool = True) -> np.ndarray:
    """Start points on PEtab scale, shape (n_starts, n_free); row i depends only on (seed, i).

    With `resample`, a start whose objective is not finite (some condition does not
    integrate there) is replaced by a new draw seeded by (seed, i, attempt), up to
    `MAX_RESAMPLES` times, before any optimizer sees it: a start that cannot be simulated is
    a wasted start. The forward simulations this costs are not part of any start's work.

    Raises:
        SimulationError: if no finite start is found for some i.
    """
    return start_points_and_redraws(objective, n_starts, seed, resample)[0]


def start_points_and_redraws(objective: Objective, n_starts: int, seed: int,
                             resample: bool = True) -> tuple[np.ndarray, list[int]]:
    """`start_points` and, per start, how many times it was redrawn (0: the first draw)."""
    lb, ub = objective.pypesto_problem.lb, objective.pypesto_problem.ub
    rows, redraws = [], []
    for i in range(n_starts):
        for attempt in range(MAX_RESAMPLES + 1):
            key = [seed, i] if attempt == 0 else [seed, i, attempt]
            x = np.clip(_sample_start(objective, key), lb, ub)
            if not resample or np.isfinite(
                    objective.evaluate(x, gradient=False, raise_on_failure=False).fval):
                break
        else:
            raise SimulationError(f"start {i}: no start point with a finite objective in "
                                  f"{MAX_RESAMPLES + 1} draws (seed {seed})")
        if attempt:
            logger.info("start %d: resampled %d time(s) (objective not finite)", i, attempt)
        rows.append(x)
        redraws.append(attempt)
    return np.asarray(rows, dtype=float).reshape(n_starts, len(lb)), redraws


def _write_atomic(result: pypesto.Result, path: Path, meta: dict, x0: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        pypesto.store.write_result(result, str(tmp), problem=True, optimize=True,
                                   overwrite=True)
        with h5py.File(tmp, "a") as f:
            grp = f.require_group(_META)
            for key, value in meta.items():
                grp.attrs[key] = value
            grp.create_dataset("start_points", data=x0)
            # pyPESTO's store keeps only its own result fields: the work per start goes here
            work = grp.require_group("work")
            for r in result.optimize_result.list:
                if "work_sensitivity" in r.keys():
                    work.attrs[str(r.id)] = [int(r["work_sensitivity"]),
                                             int(r.get("work_forward") or 0)]
            grp.attrs[POLISHED] = ",".join(str(r.id) for r in result.optimize_result.list
                                           if r.get(POLISHED))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _read_checkpoint(path: Path, meta: dict) -> pypesto.Result | None:
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as f:
            stored = dict(f[_META].attrs) if _META in f else {}
            work = dict(f[_META]["work"].attrs) if f"{_META}/work" in f else {}
            polished = set(str(stored.get(POLISHED, "")).split(","))
    except OSError as err:
        raise InputError(Issue(f"cannot read existing result file: {err}", str(path))) from err
    for key in ("problem", "x_free_ids", "seed", "optimizer"):
        if str(stored.get(key)) != str(meta[key]):
            raise InputError(Issue(
                f"existing result was made with {key}={stored.get(key)!r}, not {meta[key]!r}; "
                "choose another --output or pass overwrite", str(path)))
    result = pypesto.store.read_result(str(path), problem=False, optimize=True)
    for r in result.optimize_result.list:
        if str(r.id) in work:
            r["work_sensitivity"], r["work_forward"] = (int(v) for v in work[str(r.id)])
        if str(r.id) in polished:
            r[POLISHED] = True
    return result


def read_work(path: str | Path) -> dict[str, tuple[int, int]]:
    """Per start id of a stored fit: (conditions simulated with, without sensitivities)."""
    with h5py.File(path, "r") as f:
        if f"{_META}/work" not in f:
            return {}
        return {k: (int(v[0]), int(v[1])) for k, v in f[_META]["work"].attrs.items()}


def _check_optimizer(objective: Objective, optimizer: str | optimize.Optimizer) -> None:
    """InputError when a mini-batch optimizer meets an objective it cannot batch."""
    if isinstance(optimizer, MiniBatchOptimizer) and not supports_subsets(objective):
        raise InputError(
            f"mini-batch optimizers run their batches through pyPESTO's AMICI objective "
            f"(PEtab v1, bare SBML and hybrid problems) or the objective's evaluate behind an "
            f"EvaluateObjective (PEtab v2, SciML, torch ODE); {type(objective).__name__} offers "
            f"neither: "
            f"use optimizer {' or '.join(OPTIMIZERS)}")


def fit(objective: Objective, settings: FitSettings | None = None,
        output: str | Path | None = None, overwrite: bool = False, progress: bool = True,
        on_checkpoint: Callable[[pypesto.Result], None] | None = None) -> pypesto.Result:
    """Multi-start fit of a problem; resumes an interrupted run stored at `output`.

    Args:
        objective: The problem's objective (`sbmlhybrid.create_objective`; any object of
            the objective protocol).
        settings: Fit settings (default `FitSettings()`).
        output: HDF5 result file (pyPESTO store format plus start points). If it holds a
            compatible earlier run, only its missing starts are run.
        overwrite: Ignore and replace an existing `output`.
        progress: Show a progress bar over starts.
        on_checkpoint: Called with the partial result after every checkpoint.

    Returns:
        The pyPESTO result, starts sorted by objective value (priors included).
    """
    settings = settings or FitSettings()
    _check_optimizer(objective, settings.optimizer)
    problem = objective.pypesto_problem
    x0 = start_points(objective, settings.n_starts, settings.seed)
    meta = {"problem": objective.problem.name, "x_free_ids": ",".join(objective.x_free_ids),
            "seed": settings.seed, "optimizer": str(settings.optimizer)}
    path = Path(output) if output else None
    result = None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite and path.exists():
            path.unlink()
        result = _read_checkpoint(path, meta)
    result = result or pypesto.Result(problem)
    result.problem = problem
    done = {r.id for r in result.optimize_result.list}
    todo = [i for i in range(settings.n_starts) if str(i) not in done]
    if done:
        logger.info("resuming: %d of %d starts done", len(done), settings.n_starts)
    engine = make_engine(settings.engine, settings.workers)
    optimizer = CountedOptimizer(make_optimizer(settings.optimizer, settings.max_iter))
    chunk = settings.checkpoint_every or max(1, getattr(engine, "n_procs", None)
                                             or getattr(engine, "n_threads", 1))
    if settings.engine == "mpi":
        chunk = settings.checkpoint_every or len(todo) or 1
    bar = tqdm(total=settings.n_starts, initial=len(done), desc=f"fit {objective.problem.name}",
               unit="start", disable=not progress)
    t0 = time.perf_counter()
    for k in range(0, len(todo), chunk):
        ids = todo[k:k + chunk]
        problem.set_x_guesses(np.array([problem.get_full_vector(x0[i]) for i in ids]))
        result = optimize.minimize(
            problem, optimizer=optimizer, n_starts=len(ids), ids=[str(i) for i in ids],
            result=result, engine=engine, progress_bar=False,
        )
        if path is not None:
            _write_atomic(result, path, meta | {"n_starts": settings.n_starts}, x0)
        if on_checkpoint is not None:
            on_checkpoint(result)
        bar.update(len(ids))
        best = result.optimize_result.list[0].fval
        bar.set_postfix(best=f"{best:.4g}", elapsed=f"{time.perf_counter() - t0:.0f}s")
    bar.close()
    problem.set_x_guesses(np.zeros((0, problem.dim_full)))
    result.optimize_result.sort()
    if settings.screen_margin is not None:
        result = screened_polish(objective, result, settings.screen_margin,
                                 settings.screen_optimizer, settings.max_iter, engine)
        if path is not None:
            _write_atomic(result, path, meta | {"n_starts": settings.n_starts}, x0)
    return result


def summary_table(result: pypesto.Result, top: int | None = 10) -> pd.DataFrame:
    """One row per start (best first): id, fval, gradient norm, evaluations, time, exit."""
    rows = []
    for rank, r in enumerate(result.optimize_result.list[:top]):
        grad = np.asarray(r.grad) if r.grad is not None else np.array([np.nan])
        rows.append({"rank": rank + 1, "start": r.id, "fval": r.fval,
                     "|grad|": float(np.linalg.norm(grad[np.isfinite(grad)])),
                     "n_fval": r.n_fval, "work": r.get("work_sensitivity"),
                     "time_s": round(r.time, 2), "exitflag": r.exitflag,
                     "message": str(r.message)[:40]})
    return pd.DataFrame(rows)
