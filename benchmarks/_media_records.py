"""Resumable record files, worker pools and CPU-budget planning of the media benchmarks.

Hand-written (stdlib; atomic writes reuse ``sbmlhybrid.media.container.atomic_write_bytes``:
temp file + fsync + rename). One JSON record per (configuration, repeat or seed) under a
records folder; a record that exists is skipped on the next run, so a run can be interrupted
and resumed. ``settings.json`` in the folder fixes the settings the records were made with:
a run with other settings refuses to mix them in (use another ``--records`` folder).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_commit, load1  # noqa: E402

from sbmlhybrid.media.container import atomic_write_bytes  # noqa: E402


@dataclass(frozen=True)
class Task:
    """One record to produce: ``path`` (its file), ``label`` (progress text), ``args``
    (picklable, passed to the task function), ``est_s`` (estimated CPU seconds) and
    ``fits`` (estimated model fits: the plan's unit)."""

    path: Path
    label: str
    args: tuple
    est_s: float
    fits: int
    group: str = field(default="")


def write_record(path: Path, data: dict[str, Any]) -> None:
    """Atomically write ``data`` as JSON (floats as written by json, NaN as null)."""
    text = json.dumps(data, indent=None, separators=(",", ":"), default=_plain,
                      allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def _plain(v: Any) -> Any:
    """JSON form of numpy scalars and arrays."""
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def read_record(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def settings_key(settings: dict[str, Any]) -> str:
    """Short hash of the settings (as canonical JSON)."""
    text = json.dumps(settings, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def check_settings(root: Path, settings: dict[str, Any]) -> str:
    """Write ``root/settings.json`` on first use; refuse (SystemExit) when it differs.

    Returns the settings key stored in every record.
    """
    path = root / "settings.json"
    key = settings_key(settings)
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("key") != key:
            raise SystemExit(
                f"{root}: its records were made with other settings (key {old.get('key')}, "
                f"now {key}); keep them apart with --records NEWDIR or delete the folder.\n"
                f"stored: {json.dumps(old.get('settings'), sort_keys=True)[:600]}\n"
                f"now:    {json.dumps(settings, sort_keys=True, default=_plain)[:600]}")
        return key
    root.mkdir(parents=True, exist_ok=True)
    write_record(path, {"key": key, "settings": settings, "created": time.strftime(
        "%Y-%m-%d %H:%M"), "commit": git_commit()})
    return key


def stamp(rec: dict[str, Any], key: str, t0: float, c0: float, load_start: float
          ) -> dict[str, Any]:
    """Add provenance to a record: settings key, commit, wall/CPU seconds, 1-min loads."""
    return {**rec, "settings_key": key, "commit": git_commit(), "pid": os.getpid(),
            "wall_s": round(time.perf_counter() - t0, 3),
            "cpu_s": round(time.process_time() - c0, 3),
            "load1_start_end": [load_start, load1()],
            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


def print_plan(tasks: list[Task], workers: int, what: str) -> None:
    """Print the CPU budget: per group records to run, fits and estimated CPU seconds."""
    todo = [t for t in tasks if not t.path.exists()]
    groups: dict[str, list[Task]] = {}
    for t in todo:
        groups.setdefault(t.group, []).append(t)
    total_s = sum(t.est_s for t in todo)
    total_fits = sum(t.fits for t in todo)
    print(f"{what}: {len(tasks) - len(todo)} of {len(tasks)} records present, "
          f"{len(todo)} to run", flush=True)
    for g, ts in groups.items():
        fits = sum(t.fits for t in ts)
        cpu = sum(t.est_s for t in ts)
        per = f"x {cpu / fits:6.3f} s/fit" if fits else "(no model fits) "
        print(f"  {g:<22} {len(ts):4d} records  {fits:7d} fits  {per} = {cpu:9.0f} CPU-s",
              flush=True)
    wall = total_s / max(1, min(workers, len(todo) or 1))
    print(f"  total {total_fits} fits, ~{total_s / 3600:.2f} CPU-h (one thread each); "
          f"~{wall / 3600:.2f} h wall with {workers} worker(s) on free cores", flush=True)


def run_tasks(tasks: list[Task], fn: Callable[[tuple], dict[str, Any]], workers: int,
              describe: Callable[[dict[str, Any]], str]) -> list[str]:
    """Run the tasks whose record is missing; ``fn(args)`` returns the record, which is
    written atomically here. Prints one line per record with an ETA. Returns the labels of
    failed tasks (their error is printed; other tasks go on)."""
    todo = [t for t in tasks if not t.path.exists()]
    if not todo:
        return []
    failed: list[str] = []
    left_s = sum(t.est_s for t in todo)
    t_start = time.perf_counter()
    done_s = 0.0
    for i, (task, rec, err) in enumerate(_results(todo, fn, workers), start=1):
        done_s += task.est_s
        left_s -= task.est_s
        if err is not None:
            failed.append(task.label)
            print(f"[{i}/{len(todo)}] {task.label}: FAILED {err}", flush=True)
            continue
        write_record(task.path, rec)
        rate = (time.perf_counter() - t_start) / max(done_s, 1e-9)
        print(f"[{i}/{len(todo)}] {task.label}: {describe(rec)} ({rec.get('cpu_s', 0):.0f} "
              f"CPU-s, load {load1()}); ETA {max(left_s, 0.0) * rate / 60:.0f} min", flush=True)
    return failed


def _call(job: tuple[Callable, Task]) -> tuple[Task, dict[str, Any] | None, str | None]:
    fn, task = job
    try:
        return task, fn(task.args), None
    except Exception as err:  # reported and counted; the other records go on
        return task, None, f"{type(err).__name__}: {err}"


def _results(todo: list[Task], fn: Callable, workers: int) -> Iterable[tuple]:
    jobs = [(fn, t) for t in sorted(todo, key=lambda t: -t.est_s)]  # longest first
    if workers <= 1:
        yield from map(_call, jobs)
        return
    with get_context("spawn").Pool(workers, initializer=_one_thread) as pool:
        yield from pool.imap_unordered(_call, jobs)


def _one_thread() -> None:
    """Worker start: one BLAS/OpenMP/torch thread (workers share the cores)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


def one_thread() -> None:
    """The main process's settings for ``--workers 1`` (same as a worker's)."""
    _one_thread()


def command_line() -> str:
    """The command line of this run (for the JSON)."""
    return " ".join([Path(sys.executable).name, *sys.argv])


def common_arguments(ap: argparse.ArgumentParser, smoke_dir: Path) -> None:
    """The options both media benchmarks take: smoke, workers, records, out, plan, report."""
    ap.add_argument("--smoke", action="store_true",
                    help=f"tiny configuration; records and JSON under {smoke_dir}")
    ap.add_argument("--workers", type=int, default=1, help="parallel processes (1 thread each)")
    ap.add_argument("--records", type=Path, help="records folder (default by --smoke)")
    ap.add_argument("--out", type=Path, help="JSON path (default by --smoke)")
    ap.add_argument("--plan-only", action="store_true", help="print the CPU budget and stop")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the JSON")


def output_paths(args: argparse.Namespace, name: str, smoke_dir: Path,
                 results: Path) -> tuple[Path, Path]:
    """(records folder, JSON path) from ``--records`` / ``--out`` / ``--smoke``."""
    root = args.records or (smoke_dir if args.smoke else results) / name
    out = args.out or (smoke_dir / f"{name}_smoke.json" if args.smoke
                       else results / f"{name}.json")
    return root, out


def complete_records(tasks: list[Task]) -> list[dict[str, Any]] | None:
    """Every task's record, or None (and a message) when some are missing."""
    missing = [t.label for t in tasks if not t.path.exists()]
    if missing:
        print(f"{len(missing)} records missing (e.g. {missing[:3]}); JSON not written",
              flush=True)
        return None
    return [read_record(t.path) for t in tasks]


def records_summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the JSON says about its records: commits, count, CPU seconds, load."""
    loads = np.array([r["load1_start_end"] for r in recs], float)
    return {"record_commits": dict(Counter(r["commit"] for r in recs)), "records": len(recs),
            "cpu_seconds_records": float(sum(r["cpu_s"] for r in recs)),
            "record_load1": {"min": float(loads.min()), "mean": float(loads.mean()),
                             "max": float(loads.max())}}
