"""Compiling and wrapping hybrid problems (thin layer over the foundation, hand-written).

Reused: `sbmlhybrid.build.compile_problem` (content-hash cache) and
`sbmlhybrid.objective.create_objective`. Added: the code-generation options measured to be
cheapest for unrolled networks (`HYBRID_CODEGEN`, see `benchmarks/hybrid_compile.py`).
"""

from __future__ import annotations

from typing import Any

from sbmlhybrid.build import CompiledModel, compile_problem
from sbmlhybrid.objective import ModelObjective, create_objective
from sbmlhybrid.problem import Problem

# Merged over the foundation's DEFAULT_CODEGEN (simplify=None, sensitivity code on).
# Conservation-law detection is pointless for rate-rule models and costs codegen time.
HYBRID_CODEGEN: dict[str, Any] = {"compute_conservation_laws": False}


def compile_hybrid(problem: Problem, codegen: dict[str, Any] | None = None) -> CompiledModel:
    """Compile (or take from the cache) a hybrid problem with `HYBRID_CODEGEN`."""
    return compile_problem(problem, codegen={**HYBRID_CODEGEN, **(codegen or {})})


def create_hybrid_objective(problem: Problem, codegen: dict[str, Any] | None = None,
                            sensitivity_method: str | None = None) -> ModelObjective:
    """`create_objective` over the `compile_hybrid` build of `problem`."""
    return create_objective(problem, compile_hybrid(problem, codegen), sensitivity_method)
