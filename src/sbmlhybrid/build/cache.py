"""Content-addressed compile cache for AMICI models.

AMICI has no cache: `sbml2amici` always recompiles and the PEtab importers reuse any existing
folder, stale or not. Here a build is keyed on a SHA-256 of everything that changes generated
code — the SBML text, the observation and noise model, which ids become fixed parameters,
the AMICI version and the code-generation options — and stored under
``$SBMLHYBRID_CACHE_DIR`` (default: the user cache dir) as ``<name>_<key>/``. A file lock per
key makes concurrent processes build once; builds go to a temporary folder that is renamed
into place only after the compile succeeded, so a failed or interrupted build never leaves
an entry. The module name contains the key, so two versions of a model can be loaded in one
process (AMICI refuses to re-import a modified extension under the same name).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import amici
import amici.sim.sundials  # noqa: F401  (must precede import_model_module)
import platformdirs
from filelock import FileLock

from sbmlhybrid.errors import InputError, SbmlHybridError
from sbmlhybrid.problem import Problem

logger = logging.getLogger(__name__)

ENV_CACHE_DIR = "SBMLHYBRID_CACHE_DIR"
_READY = "sbmlhybrid_build.json"  # written last: its presence marks a complete build

# Code-generation options chosen by measurement (benchmarks/compile_cache.py and
# benchmarks/results/compile_cache.json): skipping sympy's simplification shrinks code-generation
# time for large rule-based models (337-weight network: 108 s -> 36 s) and changed no result in
# the PEtab test suite; conservation laws stay on (fewer states for mass-action models).
DEFAULT_CODEGEN: dict[str, Any] = {"simplify": None, "generate_sensitivity_code": True}


class BuildError(SbmlHybridError):
    """AMICI code generation or compilation failed."""


def cache_root() -> Path:
    """The cache folder: ``$SBMLHYBRID_CACHE_DIR`` or the user cache dir, per AMICI version."""
    base = os.environ.get(ENV_CACHE_DIR) or platformdirs.user_cache_dir("sbmlhybrid")
    return Path(base) / f"amici-{amici.__version__}"


@dataclass
class CompiledModel:
    """A compiled AMICI model module from the cache.

    Attributes:
        module_name: Python module name (contains the cache key).
        path: Folder holding the module (pass to `amici.import_model_module`).
        key: The cache key (hex SHA-256).
        hit: Whether the build came from the cache.
        seconds: Wall time of the lookup or build.
    """

    module_name: str
    path: Path
    key: str
    hit: bool
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    def load_module(self) -> Any:
        return amici.import_model_module(self.module_name, str(self.path))

    def create_model(self) -> amici.sim.sundials.Model:
        return self.load_module().get_model()


def _option_text(value: Any) -> str:
    """Stable text of a code-generation option (functions by qualified name, not address)."""
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', value)}"
    return repr(value)


def _frame_text(df: Any) -> str:
    return "" if df is None else df.to_csv(sep="\t")


def cache_key(problem: Problem, codegen: dict[str, Any]) -> str:
    """SHA-256 over everything that changes the generated code of `problem`'s model."""
    pp = problem.petab_problem
    par = pp.parameter_df
    estimate = "" if par is None else par[["estimate"]].to_csv(sep="\t")
    conditions = [] if pp.condition_df is None else sorted(pp.condition_df.columns)
    payload = {
        "sbml": problem.sbml_text,
        "observables": _frame_text(pp.observable_df),
        "condition_columns": conditions,
        "estimate": estimate,
        "amici": amici.__version__,
        "codegen": {k: _option_text(v) for k, v in sorted(codegen.items())},
        "format": 1,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _module_name(name: str, key: str) -> str:
    safe = re.sub(r"\W", "_", name).strip("_") or "model"
    if safe[0].isdigit():
        safe = f"m_{safe}"
    return f"{safe[:40]}_{key[:12]}"


def _swig_env() -> None:
    """Point CMake at the SWIG that built AMICI (the `swig` wheel next to this interpreter).

    A system SWIG of another version found first on PATH builds modules that fail to load
    ("SwigPyObject has no attribute module").
    """
    if "SWIG" not in os.environ:
        candidate = Path(sys.executable).parent / "swig"
        if candidate.exists():
            os.environ["SWIG"] = str(candidate)


def build_slot(timeout: float = 3600.0) -> FileLock:
    """A machine-wide lock held while AMICI generates and compiles code.

    A compile saturates the cores it gets (the C++ build runs in parallel), so two at once on a
    small machine take longer than two in a row and can exhaust memory; builds of different
    models therefore queue behind one lock in the cache folder.
    """
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    return FileLock(str(root / ".compile.lock"), timeout=timeout)


def _is_complete(path: Path) -> bool:
    return (path / _READY).is_file()


def compile_problem(problem: Problem, codegen: dict[str, Any] | None = None,
                    verbose: bool = False, lock_timeout: float = 3600.0) -> CompiledModel:
    """Return the compiled AMICI model of a PEtab problem, building it only on a cache miss.

    Args:
        problem: A validated problem (`sbmlhybrid.problem.load_problem`).
        codegen: Extra `sbml2amici` options (merged over `DEFAULT_CODEGEN`); part of the key.
        verbose: Show AMICI's compile output.
        lock_timeout: Seconds to wait for another process building the same key.

    Raises:
        BuildError: code generation or compilation failed (nothing is left in the cache).
    """
    from amici.importers.petab.v1 import import_petab_problem

    options = {**DEFAULT_CODEGEN, **(codegen or {})}
    start = time.perf_counter()
    key = cache_key(problem, options)
    module = _module_name(problem.name, key)
    root = cache_root()
    final = root / module
    if _is_complete(final):  # fast path, no lock needed for a finished build
        return CompiledModel(module, final, key, True, time.perf_counter() - start)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{module}.lock"), timeout=lock_timeout):
        if _is_complete(final):  # another process finished it while we waited
            return CompiledModel(module, final, key, True, time.perf_counter() - start)
        if final.exists():  # an incomplete folder is never a valid entry
            shutil.rmtree(final, ignore_errors=True)
        tmp = root / ".tmp" / f"{module}-{uuid.uuid4().hex[:8]}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        _swig_env()
        logger.info("compiling %s (cache miss) into %s", problem.name, final)
        try:
            with build_slot(lock_timeout):
                import_petab_problem(
                    problem.petab_problem, output_dir=str(tmp), model_name=module, compile_=True,
                    verbose=logging.INFO if verbose else logging.ERROR, **options,
                )
            info = {"problem": problem.name, "key": key, "amici": amici.__version__,
                    "codegen": {k: _option_text(v) for k, v in options.items()},
                    "build_seconds": time.perf_counter() - start}
            (tmp / _READY).write_text(json.dumps(info, indent=1))
            os.replace(tmp, final)  # atomic on one file system
        except Exception as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, InputError):
                raise
            raise BuildError(f"AMICI failed to build model {problem.name!r}: "
                             f"{type(err).__name__}: {err}") from err
    return CompiledModel(module, final, key, False, time.perf_counter() - start, info)


def clear_cache(name: str | None = None) -> int:
    """Remove cached builds (all, or those of one problem name); returns how many."""
    root = cache_root()
    if not root.exists():
        return 0
    removed = 0
    for entry in root.iterdir():
        if entry.is_dir() and (name is None or entry.name.startswith(_module_name(name, "")[:-1])):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


