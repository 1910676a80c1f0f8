"""Content-addressed compile cache for AMICI models.

AMICI has no cache: `sbml2amici` always recompiles and the PEtab importers reuse any existing
folder, stale or not. Here a build is keyed on a SHA-256 of exactly what AMICI's PEtab v1 import
(`amici.importers.petab.v1.import_petab_problem`) turns into generated code — see `cache_key` —
and stored under ``$SBMLHYBRID_CACHE_DIR`` (default: the user cache dir) as
``<SBML model id>_<key>/``. Neither the name nor the key depends on the problem file, so problem
files that differ only in data (measurements, condition rows, nominal values, bounds) share one
build. A file lock per key makes concurrent processes build once; builds go to a temporary
folder that is renamed into place only after the compile succeeded, so a failed or interrupted
build never leaves an entry. The module name contains the key, so two versions of a model can
be loaded in one process (AMICI refuses to re-import a modified extension under the same name).
Hand-written (AMICI has no cache); reused: AMICI's v1 importer for the build itself.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import amici
import amici.sim.sundials  # noqa: F401  (must precede import_model_module)
import pandas as pd
import petab.v1 as petab
import platformdirs
from filelock import FileLock

from sbmlhybrid.errors import InputError, SbmlHybridError
from sbmlhybrid.problem import Problem
from sbmlhybrid.problem.v2 import ProblemV2

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


def cache_key(problem: Problem | ProblemV2, codegen: dict[str, Any]) -> str:
    """SHA-256 over everything that changes the generated code of `problem`'s model.

    PEtab v2 problems: `sbmlhybrid.build.v2.v2_cache_key` (`codegen` must be the default).
    PEtab v1: what AMICI 1.0.1's PEtab v1 import reads when it generates code (checked in
    ``amici/importers/petab/v1/_sbml_import.py`` and ``_import_helpers.py``):

    * the SBML model and the observable table (observation model, output parameters);
    * condition-table columns: a numeric parameter column becomes a fixed parameter (a
      constant without sensitivities), a column of parameter ids stays a parameter, species
      and compartment columns get ``initial_<id>_sim`` parameters and initial assignments;
      so the columns and whether each holds values or ids matter, not the values;
    * which parameters are estimated: the others become fixed parameters
      (``non_estimated_parameters_as_constants``); bounds, scales and nominal values are set
      at run time;
    * whether any measurement uses pre-equilibration (adds an indicator constant and
      ``initial_<id>_preeq`` parameters for species columns); no other measurement content;
    * the AMICI version and the code-generation options.
    """
    if isinstance(problem, ProblemV2):
        from sbmlhybrid.build.v2 import amici_importer, v2_cache_key

        if codegen and codegen != DEFAULT_CODEGEN:
            raise InputError("AMICI's PEtab v2 importer takes no code-generation options")
        return v2_cache_key(amici_importer(problem, "probe", Path(".")))
    pp = problem.petab_problem
    par = pp.parameter_df
    estimated = [] if par is None else sorted(str(i) for i in par.index[par["estimate"] == 1])
    cond = pp.condition_df
    columns = [] if cond is None else sorted(
        [str(c), "ids" if pd.api.types.is_string_dtype(cond[c].dtype) else "values"]
        for c in cond.columns if c != petab.CONDITION_NAME)
    mdf = pp.measurement_df
    preeq = bool(mdf is not None and petab.PREEQUILIBRATION_CONDITION_ID in mdf
                 and mdf[petab.PREEQUILIBRATION_CONDITION_ID].notna().any())
    payload = {
        "sbml": problem.sbml_text,
        "observables": _frame_text(pp.observable_df),
        "condition_columns": columns,
        "estimated": estimated,
        "preequilibration": preeq,
        "amici": amici.__version__,
        "codegen": {k: _option_text(v) for k, v in sorted(codegen.items())},
        "format": 2,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def model_id(problem: Problem | ProblemV2) -> str:
    """Name stem of a problem's builds: the SBML model id (``model`` if it has none)."""
    if isinstance(problem, ProblemV2):
        return problem.model_id
    return problem.petab_problem.sbml_model.getId() or "model"


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


def build_cached(module: str, key: str, build: Callable[[Path], None], info: dict[str, Any],
                 lock_timeout: float = 3600.0) -> CompiledModel:
    """The cache entry ``cache_root() / module``, made by ``build(folder)`` on a miss.

    Args:
        module: Module name (stem plus key, see `_module_name`); also the folder name.
        key: The cache key.
        build: Generates and compiles the module `module` into the folder it is given.
        info: Recorded in the entry's ``sbmlhybrid_build.json`` (problem, model, options).
        lock_timeout: Seconds to wait for another process building the same key.

    Raises:
        BuildError: `build` failed (nothing is left in the cache); `InputError` passes.
    """
    start = time.perf_counter()
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
        logger.info("compiling %s (cache miss) into %s", info.get("problem", module), final)
        try:
            with build_slot(lock_timeout):
                build(tmp)
            info = {**info, "key": key, "amici": amici.__version__,
                    "build_seconds": time.perf_counter() - start}
            (tmp / _READY).write_text(json.dumps(info, indent=1))
            os.replace(tmp, final)  # atomic on one file system
        except Exception as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(err, InputError):
                raise
            raise BuildError(f"AMICI failed to build model {info.get('problem', module)!r}: "
                             f"{type(err).__name__}: {err}") from err
    return CompiledModel(module, final, key, False, time.perf_counter() - start, info)


def compile_problem(problem: Problem | ProblemV2, codegen: dict[str, Any] | None = None,
                    verbose: bool = False, lock_timeout: float = 3600.0) -> CompiledModel:
    """Return the compiled AMICI model of a PEtab problem, building it only on a cache miss.

    Args:
        problem: A validated problem (`sbmlhybrid.problem.load_problem`); PEtab v2 problems
            go through AMICI's v2 importer (`sbmlhybrid.build.v2.compile_v2`).
        codegen: Extra `sbml2amici` options (merged over `DEFAULT_CODEGEN`); part of the key.
            AMICI's v2 importer takes none: must be empty for PEtab v2 problems.
        verbose: Show AMICI's compile output.
        lock_timeout: Seconds to wait for another process building the same key.

    Raises:
        BuildError: code generation or compilation failed (nothing is left in the cache).
    """
    if isinstance(problem, ProblemV2):
        from sbmlhybrid.build.v2 import compile_v2

        if codegen:
            raise InputError("AMICI's PEtab v2 importer takes no code-generation options; "
                             f"got {sorted(codegen)}")
        return compile_v2(problem, verbose=verbose, lock_timeout=lock_timeout)
    from amici.importers.petab.v1 import import_petab_problem

    options = {**DEFAULT_CODEGEN, **(codegen or {})}
    key = cache_key(problem, options)
    module = _module_name(model_id(problem), key)

    def build(folder: Path) -> None:
        import_petab_problem(
            problem.petab_problem, output_dir=str(folder), model_name=module, compile_=True,
            verbose=logging.INFO if verbose else logging.ERROR, **options,
        )

    info = {"problem": problem.name, "model": model_id(problem),
            "codegen": {k: _option_text(v) for k, v in options.items()}}
    return build_cached(module, key, build, info, lock_timeout)


def clear_cache(name: str | None = None) -> int:
    """Remove cached builds (all, or those of one SBML model id); returns how many."""
    root = cache_root()
    if not root.exists():
        return 0
    removed = 0
    for entry in root.iterdir():
        if entry.is_dir() and (name is None or entry.name.startswith(_module_name(name, "")[:-1])):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


