"""PEtab v2 problems compiled by AMICI's native v2 importer, into the sbmlhybrid cache.

Reused: `amici.importers.petab.PetabImporter` does all of the import — it encodes every
experiment (periods, t0, condition changes, including expressions and compartment sizes) as
SBML events and initial assignments (petab.v2's `ExperimentsToSbmlConverter`), adds output
parameters and generates and compiles the code. Hand-written: the cache key and the cached
build (`sbmlhybrid.build._store.build_cached`: lock, temporary folder, atomic rename), which
AMICI's importer lacks (it reuses any existing output folder, stale or not).

Because the experiments become part of the model, the generated code of a v2 problem depends
on its condition and experiment tables (values included), unlike the v1 path. The key is
therefore taken from the importer's converted problem: its SBML text (experiments encoded;
global parameters sorted by id, as petab adds them in hash-seed-dependent order),
the observable table, the estimated parameter ids (the others become constants), the ids
condition changes still set at run time (experiment indicators, turned into constants), and
the mapping table — measurements, bounds and nominal values do not enter it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import amici
import libsbml

from sbmlhybrid.build._codegen import CODEGEN_VARIANT
from sbmlhybrid.build._store import CompiledModel, build_cached, module_name
from sbmlhybrid.errors import InputError, Issue, NotSupportedError
from sbmlhybrid.problem.v2 import ProblemV2

#: Recorded in the key: AMICI's v2 importer hard-codes its `sbml2amici` options (no
#: simplification, sensitivity code generated) and forwards none of ours.
IMPORTER = "amici.importers.petab.PetabImporter"


@contextmanager
def _log_level(name: str, level: int) -> Iterator[None]:
    """Logger `name` at `level` inside the block only (its level is restored)."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def amici_importer(problem: ProblemV2, module_name: str, output_dir: str | Path,
                   verbose: bool = False) -> Any:
    """AMICI's v2 importer for `problem`, writing module `module_name` into `output_dir`.

    Raises:
        NotSupportedError: AMICI's importer refuses the problem (its NotImplementedError).
        InputError: AMICI's importer rejects the problem as invalid (ValueError).
    """
    from amici.importers.petab import PetabImporter

    where = str(problem.source)
    try:
        # petab's converter validates its own output and warns that the indicator conditions
        # it has just added are unused; the problem itself was validated when loaded
        with _log_level("petab.v2.lint", logging.ERROR):
            return PetabImporter(problem.petab_problem, module_name=module_name,
                                 output_dir=output_dir, validate=False, compile_=True,
                                 verbose=logging.INFO if verbose else logging.ERROR)
    except NotImplementedError as err:
        raise NotSupportedError(Issue(f"AMICI's PEtab v2 importer: {err}", where)) from err
    except ValueError as err:
        raise InputError(Issue(f"AMICI's PEtab v2 importer: {err}", where)) from err


def _canonical_sbml(doc: libsbml.SBMLDocument) -> str:
    """SBML text with the global parameters sorted by id.

    petab's converter adds the parameters it needs in set order, which depends on Python's
    hash seed, so the same problem gave a different text (and a rebuild) per process. The
    order changes nothing at run time: AMICI's experiment manager maps every value by id.
    """
    doc = doc.clone()
    model = doc.getModel()
    params = [model.removeParameter(0) for _ in range(model.getNumParameters())]
    for par in sorted(params, key=lambda q: q.getId()):
        model.addParameter(par)
    return libsbml.writeSBMLToString(doc)


def v2_cache_key(importer: Any) -> str:
    """SHA-256 over what changes the code AMICI generates for an importer's problem."""
    pp = importer.petab_problem  # converted: experiments are events of its SBML model
    targets = sorted({ch.target_id for c in pp.conditions for ch in c.changes})
    payload = {
        "sbml": _canonical_sbml(pp.model.sbml_model.getSBMLDocument()),
        "observables": pp.observable_df.to_csv(sep="\t"),
        "estimated": sorted(pp.x_free_ids),
        "condition_targets": targets,
        "mappings": "" if pp.mapping_df is None else pp.mapping_df.to_csv(sep="\t"),
        "amici": amici.__version__,
        "importer": IMPORTER,
        "format": 1,
        "variant": CODEGEN_VARIANT,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def compile_v2(problem: ProblemV2, verbose: bool = False,
               lock_timeout: float = 3600.0) -> CompiledModel:
    """The compiled AMICI model of a PEtab v2 problem, built only on a cache miss.

    Args:
        problem: A validated problem (`sbmlhybrid.problem.load_problem`).
        verbose: Show AMICI's import and compile output.
        lock_timeout: Seconds to wait for another process building the same key.

    Raises:
        NotSupportedError: AMICI's v2 importer cannot import the problem.
        BuildError: code generation or compilation failed (nothing is left in the cache).
    """
    # The module name is fixed when an importer is made, and the key needs the importer's
    # converted problem: a first importer only converts (no output folder is written).
    probe = amici_importer(problem, "probe", Path("."), verbose)
    key = v2_cache_key(probe)
    module = module_name(problem.model_id, key)

    def build(folder: Path) -> None:
        importer = amici_importer(problem, module, folder, verbose)
        try:
            # AMICI's v2 importer logs each build step at INFO whatever `verbose` says
            with _log_level("amici.importers.petab._petab_importer",
                            logging.INFO if verbose else logging.WARNING):
                importer.import_module(force_import=True)
        except NotImplementedError as err:
            raise NotSupportedError(Issue(f"AMICI's PEtab v2 importer: {err}",
                                          str(problem.source))) from err

    info = {"problem": problem.name, "model": problem.model_id, "importer": IMPORTER}
    return build_cached(module, key, build, info, lock_timeout)


__all__ = ["IMPORTER", "amici_importer", "compile_v2", "v2_cache_key"]
