"""Helpers shared by the benchmark scripts: paths, JSON output, machine state."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
RESULTS = REPO / "benchmarks" / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on (load average matters on a shared 2-core box)."""
    return {"cpus": os.cpu_count(), "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}


def write_json(name: str, data: dict[str, Any], path: Path | None = None) -> Path:
    """Write `data` atomically to ``RESULTS / name`` (or `path`) with the machine's state and,
    unless `data` has them, the commit and the command line of this run."""
    path = path or RESULTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    provenance = {"commit": git_commit(), "command": " ".join(["python", *sys.argv])}
    doc = {**provenance, **data, "machine": machine()}
    tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
    return path


def checkout_commit() -> str:
    """Commit of the checkout now, "+dirty" when tracked files other than the results differ
    from it: the records a resumable run rewrites under `RESULTS` are its output, not changed
    code (counted as changes, they marked runs of committed scripts "+dirty")."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=False).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                  f":(exclude){RESULTS.relative_to(REPO).as_posix()}")
    return commit + ("+dirty" if changed else "")


_START_COMMIT: str | None = None


def git_commit() -> str:
    """`checkout_commit` as it was when this process imported this module: the code the run
    started from. Taken later, it saw the run's own tracked outputs outside `RESULTS`
    (flux_cho writes its fit into petab_problems/) as changed code, and a commit made while a
    long run was going as the code it ran."""
    global _START_COMMIT
    if _START_COMMIT is None:
        _START_COMMIT = checkout_commit()
    return _START_COMMIT


def alternated_times(calls: dict[Any, Callable[[], object]], repeats: int
                     ) -> dict[Any, list[float]]:
    """Wall s of each call, the calls alternated `repeats` times so that drifts of the
    machine hit every setting alike (set the calls up, and warm them, beforehand)."""
    times: dict[Any, list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - t0)
    return times


def load1() -> float:
    """1-minute load average (timings count only at <= 2)."""
    return round(os.getloadavg()[0], 2)


def cpu_times() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs since boot (/proc/stat; (0, 0) where it is absent).

    Steal is the time the hypervisor gave this virtual machine's CPUs to others (top showed
    40 % on this 2-core host at load 0.7): the load average does not show it."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def host_speed_s(repeats: int = 3) -> float:
    """Seconds of a fixed single-thread Python workload (sum of 10**7 integers), the fastest
    of `repeats`: the host's CPU speed changes within the hour without load or steal showing
    it, so builds or timings can be set against it."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        sum(range(10_000_000))
        best = min(best, time.perf_counter() - t0)
    return round(best, 4)


def steal_fraction(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """Share of CPU time stolen by the hypervisor between two `cpu_times` (None: unknown)."""
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 3) if total > 0 else None


git_commit()  # at import, before the run writes anything
