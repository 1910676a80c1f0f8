"""Compiling hybrid problems with their code-generation choice (thin layer, hand-written).

A `HybridProblem` (what `hybridize` returns) is compiled with `HYBRID_CODEGEN`, the options
measured to be cheapest for unrolled networks (`benchmarks/hybrid_compile.py`), wherever it
is compiled: `objective_of` (used by `sbmlhybrid.create_objective` and by the PEtab SciML
objective) reads the choice from the problem, so one problem has one build and there is no
second objective constructor. Reused: `sbmlhybrid.build.compile_problem` (content-hash
cache) and `sbmlhybrid.objective.create_objective`.
"""

from __future__ import annotations

from typing import Any

from sbmlhybrid.build import CompiledModel, compile_problem
from sbmlhybrid.errors import NotSupportedError
from sbmlhybrid.hybrid.hybridize import HybridProblem
from sbmlhybrid.objective import create_objective

__all__ = ["HYBRID_CODEGEN", "codegen_of", "compile_hybrid", "create_hybrid_objective",
           "objective_of"]

# Merged over the foundation's DEFAULT_CODEGEN (simplify=None, sensitivity code on).
# Conservation-law detection is pointless for rate-rule models and costs codegen time.
HYBRID_CODEGEN: dict[str, Any] = {"compute_conservation_laws": False}


def codegen_of(problem: Any) -> dict[str, Any] | None:
    """Code-generation options a problem is compiled with: its own ``codegen`` attribute if
    it has one, `HYBRID_CODEGEN` for a `HybridProblem`, else None (the defaults)."""
    own = getattr(problem, "codegen", None)
    if own is not None:
        return dict(own)
    return dict(HYBRID_CODEGEN) if isinstance(problem, HybridProblem) else None


def compile_hybrid(problem: Any, codegen: dict[str, Any] | None = None) -> CompiledModel:
    """Compile (or take from the cache) a problem with its code-generation options
    (`codegen_of`), updated with `codegen`."""
    options = {**(codegen_of(problem) or {}), **(codegen or {})}
    return compile_problem(problem, codegen=options or None)


def objective_of(problem: Any, compiled: CompiledModel | None = None,
                 sensitivity_method: str | None = None) -> Any:
    """`sbmlhybrid.objective.create_objective` over the problem's own build (`codegen_of`):
    `ModelObjective` for PEtab v1, bare SBML and hybrid problems, `PetabV2Objective` for
    PEtab v2."""
    if compiled is None:
        compiled = compile_hybrid(problem)
    return create_objective(problem, compiled, sensitivity_method)


def create_hybrid_objective(*args: Any, **kwargs: Any) -> Any:
    """Removed: a hybrid problem carries its code-generation choice.

    Raises:
        NotSupportedError: always, naming the replacement.
    """
    raise NotSupportedError(
        "create_hybrid_objective was removed (issue 14): hybridize() returns a problem that "
        "carries its code-generation choice; use sbmlhybrid.create_objective(problem), which "
        "compiles it with HYBRID_CODEGEN (one build, no second compile)")
