"""AMICI compilation with a content-addressed, lock-protected, atomic cache.

Entry point: `compile_problem(problem)` -> `CompiledModel`.
"""

from sbmlhybrid.build._store import BuildError, CompiledModel, build_slot, cache_root, clear_cache
from sbmlhybrid.build.cache import DEFAULT_CODEGEN, cache_key, compile_problem

__all__ = ["DEFAULT_CODEGEN", "BuildError", "CompiledModel", "build_slot", "cache_key",
           "cache_root", "clear_cache", "compile_problem"]
