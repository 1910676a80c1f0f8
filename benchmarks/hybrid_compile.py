"""Cold compile time of unrolled networks in the CHO model, and recompile cost for new weights.

Network: 2 inputs (Lac, Glc) -> width -> width -> 1 output (tanh), replacing the lactate-shift
rate ``r_lac_shift`` of `petab_problems/cho_fedbatch` (gray box). Every build goes to a fresh
temporary ``SBMLHYBRID_CACHE_DIR`` (cold: AMICI code generation + C++ compile). Then the same
architecture with re-initialized weights is "compiled" again: the cache key must be equal, so
this is a cache lookup. The machine is shared, so the load average is recorded per timing.

Usage: ``python benchmarks/hybrid_compile.py [--widths 4 8 16 32] [--fused 16]``
Writes ``benchmarks/results/hybrid_compile.json`` (merged with earlier entries).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "hybrid_compile.json"


def mlp(width: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, width, dtype=torch.float64), nn.Tanh(),
                         nn.Linear(width, width, dtype=torch.float64), nn.Tanh(),
                         nn.Linear(width, 1, dtype=torch.float64))


def _children_cpu() -> float:
    """CPU seconds of finished child processes (the C++ build), user + system."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def build(width: int, representation: str, codegen: dict, seed: int = 0) -> dict:
    from sbmlhybrid.build import cache_key
    from sbmlhybrid.build.cache import DEFAULT_CODEGEN
    from sbmlhybrid.hybrid import HYBRID_CODEGEN, NetworkTerm, compile_hybrid, hybridize
    from sbmlhybrid.problem import load_problem

    problem = load_problem(REPO / "petab_problems" / "cho_fedbatch" / "problem.yaml")

    def hybrid(s: int):
        term = NetworkTerm("lacnet", mlp(width, s), ["Lac", "Glc"], ["r_lac_shift"],
                           output_transform="softplus", output_scale=0.3,
                           representation=representation)
        return hybridize(problem, [term])

    hp = hybrid(seed)
    n_weights = len(hp.hybrid.weight_ids)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    cpu0 = time.process_time() + _children_cpu()
    compiled = compile_hybrid(hp, codegen)
    cold = time.perf_counter() - t0
    cpu = time.process_time() + _children_cpu() - cpu0
    assert not compiled.hit, "expected a cold build"
    load1 = os.getloadavg()[0]
    size = sum(f.stat().st_size for f in compiled.path.rglob("*") if f.is_file())
    gen = {}
    for name in ("dwdp", "dwdw", "dwdx", "w", "dxdotdw", "dxdotdp_explicit"):
        files = list(compiled.path.rglob(f"{name}.cpp"))
        gen[name] = sum(f.stat().st_size for f in files)
    # new weights, same architecture: must be a cache hit (0 s compile)
    hp2 = hybrid(seed + 1)
    opts = {**DEFAULT_CODEGEN, **HYBRID_CODEGEN, **codegen}
    same_key = cache_key(hp2, opts) == cache_key(hp, opts)
    t0 = time.perf_counter()
    again = compile_hybrid(hp2, codegen)
    recompile = time.perf_counter() - t0
    return {"width": width, "representation": representation, "codegen": codegen,
            "n_weights": n_weights, "cold_s": round(cold, 2), "cold_cpu_s": round(cpu, 2),
            "loadavg_1min_before": round(load0, 2), "loadavg_1min_after": round(load1, 2),
            "build_bytes": size, "generated_cpp_bytes": gen,
            "recompile_new_weights_s": round(recompile, 4), "recompile_was_cache_hit": again.hit,
            "cache_key_unchanged_by_weights": same_key}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="*", default=[4, 8, 16, 32])
    ap.add_argument("--fused", type=int, nargs="*", default=[], help="widths for 'fused' too")
    ap.add_argument("--conservation", type=int, nargs="*", default=[],
                    help="widths also built with compute_conservation_laws=True")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    runs = results.setdefault("runs", [])
    plan = [(w, "split", {}) for w in args.widths]
    plan += [(w, "fused", {}) for w in args.fused]
    plan += [(w, "split", {"compute_conservation_laws": True}) for w in args.conservation]
    for width, rep, codegen in plan:
        with tempfile.TemporaryDirectory(prefix="hybrid_compile_") as tmp:
            os.environ["SBMLHYBRID_CACHE_DIR"] = tmp
            r = build(width, rep, codegen)
        print(json.dumps(r), flush=True)
        runs[:] = [x for x in runs if (x["width"], x["representation"], x["codegen"])
                   != (width, rep, codegen)] + [r]
        default = [x for x in runs if x["representation"] == "split" and not x["codegen"]]
        for x in default:
            results[f"cold_s_h{x['width']}"] = x["cold_s"]
            results[f"n_weights_h{x['width']}"] = x["n_weights"]
            if "cold_cpu_s" in x:
                results[f"cold_cpu_s_h{x['width']}"] = x["cold_cpu_s"]
        if default:
            results["recompile_new_weights_s"] = max(x["recompile_new_weights_s"]
                                                     for x in default)
        results["cpu_count"] = os.cpu_count()
        results["note"] = ("cold = wall s of AMICI codegen + C++ build into an empty cache, on "
                           "a shared 2-core machine (see loadavg per run); cold_cpu = CPU s of "
                           "this process + the build subprocesses (less load-dependent); "
                           "recompile = same architecture, new weights (cache hit)")
        OUT.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
