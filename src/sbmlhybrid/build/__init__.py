"""AMICI compilation with a content-addressed, lock-protected, atomic cache.

Entry point: `compile_problem(problem)` -> `CompiledModel`.
"""

from sbmlhybrid.build.cache import (
    DEFAULT_CODEGEN,
    BuildError,
    CompiledModel,
    build_slot,
    cache_key,
    cache_root,
    clear_cache,
    compile_problem,
)

__all__ = ["DEFAULT_CODEGEN", "BuildError", "CompiledModel", "build_slot", "cache_key",
           "cache_root", "clear_cache", "compile_problem"]
