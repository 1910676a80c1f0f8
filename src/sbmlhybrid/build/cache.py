"""Content-addressed compile cache for AMICI models: keys and builds of PEtab v1 problems.

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
Hand-written (AMICI has no cache); reused: AMICI's v1 importer for the build itself. The store
(folders, locks, atomic publish) is `sbmlhybrid.build._store`, shared with the PEtab v2 builds
of `sbmlhybrid.build.v2`, to which `compile_problem` and `cache_key` hand v2 problems.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import amici
import pandas as pd
import petab.v1 as petab

from sbmlhybrid.build._codegen import CODEGEN_VARIANT
from sbmlhybrid.build._store import CompiledModel, build_cached, module_name
from sbmlhybrid.build.v2 import amici_importer, compile_v2, v2_cache_key
from sbmlhybrid.errors import InputError
from sbmlhybrid.problem import Problem
from sbmlhybrid.problem.v2 import ProblemV2

# Code-generation options chosen by measurement (benchmarks/compile_cache.py and
# benchmarks/results/compile_cache.json): skipping sympy's simplification shrinks code-generation
# time for large rule-based models (337-weight network: 108 s -> 36 s) and changed no result in
# the PEtab test suite; conservation laws stay on (fewer states for mass-action models).
DEFAULT_CODEGEN: dict[str, Any] = {"simplify": None, "generate_sensitivity_code": True}


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
    * the AMICI version, the code-generation options and sbmlhybrid's code-generation variant
      (`sbmlhybrid.build._codegen.CODEGEN_VARIANT`).
    """
    if isinstance(problem, ProblemV2):
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
        "variant": CODEGEN_VARIANT,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def model_id(problem: Problem | ProblemV2) -> str:
    """Name stem of a problem's builds: the SBML model id (``model`` if it has none)."""
    if isinstance(problem, ProblemV2):
        return problem.model_id
    return problem.petab_problem.sbml_model.getId() or "model"


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
        if codegen:
            raise InputError("AMICI's PEtab v2 importer takes no code-generation options; "
                             f"got {sorted(codegen)}")
        return compile_v2(problem, verbose=verbose, lock_timeout=lock_timeout)
    from amici.importers.petab.v1 import import_petab_problem

    options = {**DEFAULT_CODEGEN, **(codegen or {})}
    key = cache_key(problem, options)
    module = module_name(model_id(problem), key)

    def build(folder: Path) -> None:
        # validate=False: every Problem was linted by the door it came through
        # (`load_problem`, `problem_from_tables`, `hybridize`); AMICI's second lint of a
        # 4,417-weight parameter table costs seconds of every cold build.
        import_petab_problem(
            problem.petab_problem, output_dir=str(folder), model_name=module, compile_=True,
            verbose=logging.INFO if verbose else logging.ERROR, validate=False, **options,
        )

    info = {"problem": problem.name, "model": model_id(problem),
            "codegen": {k: _option_text(v) for k, v in options.items()}}
    return build_cached(module, key, build, info, lock_timeout)


