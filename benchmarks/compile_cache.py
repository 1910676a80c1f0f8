"""Compile cache on the CHO fed-batch model: cold build, cache hit, and code-generation options.

Cold: a fresh cache folder, `compile_problem` with the default options. Hit: a fresh Python
process that loads the problem and then calls `compile_problem` + `create_model` (the cache
lookup and module import; `hit_s`), median of 3 processes. Options: cold builds with AMICI's
default sympy simplification vs `simplify=None` (the default here).
Writes benchmarks/results/compile_cache.json (fields `cold_s`, `hit_s`; goal hit < 1 s).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, load1, write_json  # noqa: E402

PROBLEM = REPO / "petab_problems" / "cho_fedbatch" / "problem.yaml"

HIT_SCRIPT = """
import json, time
from sbmlhybrid.problem import load_problem
from sbmlhybrid.build import compile_problem
t0 = time.perf_counter(); p = load_problem({problem!r}); t1 = time.perf_counter()
c = compile_problem(p); m = c.create_model(); t2 = time.perf_counter()
print(json.dumps({{"hit": c.hit, "load_problem_s": t1 - t0, "hit_s": t2 - t1}}))
"""


def cold_build(cache: str, codegen: dict | None) -> float:
    os.environ["SBMLHYBRID_CACHE_DIR"] = cache
    from sbmlhybrid.build import compile_problem
    from sbmlhybrid.problem import load_problem

    t = time.perf_counter()
    compiled = compile_problem(load_problem(PROBLEM), codegen=codegen)
    assert not compiled.hit
    return time.perf_counter() - t


def main() -> None:
    loads: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        loads["cold"] = [load1()]
        cold = cold_build(str(Path(tmp) / "a"), None)
        loads["cold"].append(load1())
        print(f"cold (simplify=None): {cold:.1f} s")
        hits = []
        loads["hit"] = [load1()]
        for _ in range(3):
            out = subprocess.run(
                [sys.executable, "-c", HIT_SCRIPT.format(problem=str(PROBLEM))],
                capture_output=True, text=True, check=True,
                env={**os.environ, "SBMLHYBRID_CACHE_DIR": str(Path(tmp) / "a")})
            hits.append(json.loads(out.stdout.strip().splitlines()[-1]))
        loads["hit"].append(load1())
        assert all(h["hit"] for h in hits)
        hit = statistics.median(h["hit_s"] for h in hits)
        print(f"hit: {hit:.3f} s")
        # AMICI's own default simplification (sympy powsimp) for comparison:
        from amici.importers.sbml import _default_simplify

        loads["cold_amici_default_simplify"] = [load1()]
        cold_simplify = cold_build(str(Path(tmp) / "c"), {"simplify": _default_simplify})
        loads["cold_amici_default_simplify"].append(load1())
        print(f"cold (AMICI default simplify): {cold_simplify:.1f} s")
    write_json("compile_cache.json", {
        "problem": "cho_fedbatch", "cold_s": cold, "hit_s": hit,
        "hit_load_problem_s": statistics.median(h["load_problem_s"] for h in hits),
        "cold_s_amici_default_simplify": cold_simplify,
        "goal": "hit_s < 1",
        "loadavg_1min_before_after": loads,
    })


if __name__ == "__main__":
    main()
