"""Cold compile time of unrolled networks in the CHO model, per build option, in one run.

Network: 2 inputs (Lac, Glc) -> width -> width -> 1 output (tanh), replacing the lactate-shift
rate ``r_lac_shift`` of `petab_problems/cho_fedbatch` (gray box). Every build goes to a fresh
temporary ``SBMLHYBRID_CACHE_DIR`` (cold: AMICI code generation + C++ compile), each in a fresh
Python process (as a user's first compile: no sympy caches or garbage of earlier builds), started
once the 1-minute load has fallen below 1 (at most 90 s of waiting). Builds:

- ``amici``: AMICI's own code generation and C++ build (1 job, -O3, through its setup.py with
  the first ``cmake`` on PATH);
- ``sbmlhybrid``: the default (`sbmlhybrid.build._codegen`: free-symbol Jacobian, sparse
  symbols and static indices, rule derivatives chained at code generation
  (`sbmlhybrid.build._chain`); generated sources of >= 64 kB at -O0, the rest at -O3; one C++
  job per core; CMake run directly, not through the generated setup.py
  (`sbmlhybrid.build._cmake`));
- ``sbmlhybrid-recursion``: the default with AMICI's run-time chain rule for the rules'
  derivatives (the generated C++ equals the ``amici`` build's);
- ``sbmlhybrid-O3``: the default code generation with every source at -O3;
- ``sbmlhybrid-O1large``: the default with the large sources at -O1;
- ``sbmlhybrid-O1``: the default with ``AMICI_CXXFLAGS=-O1`` (every source at -O1).

For each build: wall and CPU seconds (this process + the compiler processes), 1-minute load
before and after, the share of CPU time the hypervisor stole during the build
(``cpu_steal_fraction``), the seconds of a fixed Python workload just before the build
(``host_speed_s_before``: the host's CPU speed varies within the hour), whether the generated
C++ equals the ``amici`` build's (SHA-256 of the generated sources), and the median seconds of
one likelihood + gradient of the built model at nominal parameters (1 thread, median of
``--repeats``, widths in ``--gradient-widths``: does a lower optimization level cost
simulation speed?). Then the same architecture with new weights is "compiled" again: the cache
key must be equal, so that is a lookup.

Usage: ``python benchmarks/hybrid_compile.py [--widths 32 64] [--builds amici sbmlhybrid ...]``
Writes ``benchmarks/results/hybrid_compile.json`` from this run only. Headline: ``cold_s_h64``
(``sbmlhybrid`` build, width 64), valid at ``loadavg_1min_before`` <= 2.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    alternated_times,
    cpu_times,
    git_commit,
    host_speed_s,
    load1,
    steal_fraction,
    write_json,
)

BUILDS = ("amici", "sbmlhybrid", "sbmlhybrid-recursion", "sbmlhybrid-O3", "sbmlhybrid-O1large",
          "sbmlhybrid-O1")


def mlp(width: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, width, dtype=torch.float64), nn.Tanh(),
                         nn.Linear(width, width, dtype=torch.float64), nn.Tanh(),
                         nn.Linear(width, 1, dtype=torch.float64))


def _children_cpu() -> float:
    """CPU seconds of finished child processes (the C++ build), user + system."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@contextlib.contextmanager
def build_option(name: str):
    """Environment and code-generation patch of one build option."""
    import sbmlhybrid.build._codegen as codegen
    import sbmlhybrid.build._store as store

    saved = {k: os.environ.get(k) for k in ("AMICI_PARALLEL_COMPILE", "AMICI_CXXFLAGS")}
    patch, large_flags = store.faster_codegen, codegen.LARGE_SOURCE_FLAGS
    if name == "amici":
        os.environ["AMICI_PARALLEL_COMPILE"] = "1"
        store.faster_codegen = contextlib.nullcontext
    elif name == "sbmlhybrid-recursion":
        store.faster_codegen = functools.partial(patch, total_w_derivatives=False)
    elif name == "sbmlhybrid-O1":
        os.environ["AMICI_CXXFLAGS"] = "-O1"
    elif name == "sbmlhybrid-O3":
        codegen.LARGE_SOURCE_FLAGS = ""
    elif name == "sbmlhybrid-O1large":
        codegen.LARGE_SOURCE_FLAGS = "-O1"
    try:
        yield
    finally:
        store.faster_codegen, codegen.LARGE_SOURCE_FLAGS = patch, large_flags
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _sources_digest(path: Path) -> str:
    """SHA-256 (16 hex digits) of the generated C++ sources, not of the CMake build folder
    (its compiler-probe sources depend on the CMake version that ran)."""
    from sbmlhybrid.build._cmake import BUILD_FOLDER

    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.suffix in (".cpp", ".h") and f.is_file() and \
                BUILD_FOLDER not in f.relative_to(path).parts:
            h.update(f.relative_to(path).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def gradient_times(objectives: dict[str, object], repeats: int) -> dict[str, dict]:
    """Median s of one likelihood + gradient per build (objectives already set up by a first
    call), the builds alternated `repeats` times."""
    times = alternated_times({name: o.evaluate for name, o in objectives.items()}, repeats)
    return {name: {"gradient_s": round(statistics.median(times[name]), 4),
                   "gradient_s_all": [round(t, 4) for t in times[name]]}
            for name in objectives}


def _hybrid(width: int, seed: int):
    from sbmlhybrid.hybrid import NetworkTerm, hybridize
    from sbmlhybrid.problem import load_problem

    problem = load_problem(REPO / "petab_problems" / "cho_fedbatch" / "problem.yaml")
    term = NetworkTerm("lacnet", mlp(width, seed), ["Lac", "Glc"], ["r_lac_shift"],
                       output_transform="softplus", output_scale=0.3)
    return hybridize(problem, [term])


def cold_build(width: int, option: str, cache_dir: str, seed: int = 0) -> dict:
    """One cold build into the empty `cache_dir` (run in a fresh process: `--child`)."""
    from sbmlhybrid.build import cache_key
    from sbmlhybrid.build.cache import DEFAULT_CODEGEN
    from sbmlhybrid.hybrid import HYBRID_CODEGEN, compile_hybrid

    hp = _hybrid(width, seed)
    os.environ["SBMLHYBRID_CACHE_DIR"] = cache_dir
    speed = host_speed_s()
    load_before, steal0 = load1(), cpu_times()
    t0, cpu0 = time.perf_counter(), time.process_time() + _children_cpu()
    with build_option(option):
        compiled = compile_hybrid(hp)
    cold = time.perf_counter() - t0
    cpu = time.process_time() + _children_cpu() - cpu0
    load_after, steal = load1(), steal_fraction(steal0, cpu_times())
    assert not compiled.hit, "expected a cold build"
    hp2 = _hybrid(width, seed + 1)  # new weights, same architecture: a cache hit
    opts = {**DEFAULT_CODEGEN, **HYBRID_CODEGEN}
    t0 = time.perf_counter()
    again = compile_hybrid(hp2)
    recompile = time.perf_counter() - t0
    return {"width": width, "build": option, "n_weights": len(hp.hybrid.weight_ids),
            "cold_s": round(cold, 2), "cold_cpu_s": round(cpu, 2),
            "loadavg_1min_before": load_before, "loadavg_1min_after": load_after,
            "cpu_steal_fraction": steal, "host_speed_s_before": speed,
            "sources_sha256": _sources_digest(compiled.path),
            "gradient_s": None, "fval": None,
            "recompile_new_weights_s": round(recompile, 4),
            "recompile_was_cache_hit": again.hit,
            "cache_key_unchanged_by_weights": cache_key(hp2, opts) == cache_key(hp, opts)}


def _settle(limit: float = 1.0, wait_s: float = 90.0) -> None:
    """Wait (at most `wait_s`) for the 1-minute load to fall below `limit`: the previous
    build's compiler processes would otherwise be counted in the next build's load."""
    t0 = time.perf_counter()
    while load1() >= limit and time.perf_counter() - t0 < wait_s:
        time.sleep(5)


def build(width: int, option: str, cache_dir: str) -> dict:
    """Cold build in a fresh Python process (a user's first compile: no sympy caches or
    garbage of earlier builds in the process), its record read from the child's stdout."""
    _settle()
    out = subprocess.run([sys.executable, __file__, "--child", str(width), option, cache_dir],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def loaded_objective(width: int, option: str, cache_dir: str):
    """Objective of a build already in `cache_dir` (a cache hit), set up by a first call."""
    from sbmlhybrid.hybrid import compile_hybrid, objective_of

    hp = _hybrid(width, 0)
    os.environ["SBMLHYBRID_CACHE_DIR"] = cache_dir
    with build_option(option):
        compiled = compile_hybrid(hp)
    assert compiled.hit, "expected the child's build in the cache"
    objective = objective_of(hp, compiled)
    return objective, float(objective.evaluate().fval)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="*", default=[32, 64])
    ap.add_argument("--builds", nargs="*", default=list(BUILDS), choices=BUILDS)
    ap.add_argument("--out", default="hybrid_compile.json", help="file name under results/")
    ap.add_argument("--repeats", type=int, default=3, help="timed gradients per build (0: none)")
    ap.add_argument("--gradient-widths", type=int, nargs="*", default=[32],
                    help="widths whose builds get the gradient timing (a 2x64 gray-box "
                         "gradient with random weights takes minutes)")
    ap.add_argument("--child", nargs=3, metavar=("WIDTH", "BUILD", "CACHE_DIR"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    if args.child:
        print(json.dumps(cold_build(int(args.child[0]), args.child[1], args.child[2])))
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="hybrid_compile_") as tmp:
        for width in args.widths:
            timed = bool(args.repeats) and width in args.gradient_widths
            objectives = {}
            for option in args.builds:
                cache_dir = os.path.join(tmp, f"h{width}-{option}")
                os.mkdir(cache_dir)
                r = build(width, option, cache_dir)
                if timed:
                    objectives[option], r["fval"] = loaded_objective(width, option, cache_dir)
                print(r, flush=True)
                runs.append(r)
            if timed:
                gradients = gradient_times(objectives, args.repeats)
                for option, g in gradients.items():
                    r = next(x for x in runs if x["width"] == width and x["build"] == option)
                    r |= g
                    print(width, option, g, flush=True)
    result: dict = {"commit": git_commit(), "command": " ".join(sys.argv), "runs": runs,
                    "cpu_count": os.cpu_count(),
                    "note": "cold = wall s of AMICI code generation + C++ build into an empty "
                            "cache, each build in a fresh Python process started once the "
                            "1-minute load is below 1 (or after 90 s); cold_cpu = CPU s of that "
                            "process + the compiler processes; "
                            "gradient_s = median s of one likelihood + gradient (1 thread, random "
                            "initial weights; the builds of a width alternated --repeats "
                            "times); "
                            "sources_sha256 equal across builds = the same generated code"}
    for r in runs:
        amici = next((x for x in runs if x["width"] == r["width"] and x["build"] == "amici"),
                     None)
        if amici is not None:
            r["same_code_as_amici"] = r["sources_sha256"] == amici["sources_sha256"]
        if r["build"] == "sbmlhybrid":
            w = r["width"]
            result |= {f"cold_s_h{w}": r["cold_s"], f"cold_cpu_s_h{w}": r["cold_cpu_s"],
                       f"n_weights_h{w}": r["n_weights"],
                       f"loadavg_1min_before_h{w}": r["loadavg_1min_before"],
                       f"cpu_steal_fraction_h{w}": r["cpu_steal_fraction"]}
            if amici is not None:  # the host's speed varies: AMICI's build as its yardstick
                result[f"cold_ratio_to_amici_h{w}"] = round(r["cold_s"] / amici["cold_s"], 3)
            if w == 64:
                result["loadavg_1min_before"] = r["loadavg_1min_before"]
    write_json(args.out, result)


if __name__ == "__main__":
    main()
