"""The compile cache's store: folders, locks, atomic publish (shared by the v1 and v2 builds).

A build goes to a temporary folder that is renamed into place only after the compile
succeeded, so a failed or interrupted build never leaves an entry; a file lock per entry makes
concurrent processes build once, and one machine-wide lock queues compiles. Keys are made by
`sbmlhybrid.build.cache` (PEtab v1) and `sbmlhybrid.build.v2` (PEtab v2), which both build
through `build_cached`. Hand-written: AMICI has no cache.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import amici
import amici.sim.sundials  # noqa: F401  (must precede import_model_module)
import platformdirs
from filelock import FileLock

from sbmlhybrid.build._cmake import swig_environment
from sbmlhybrid.build._codegen import faster_codegen
from sbmlhybrid.errors import InputError, SbmlHybridError

logger = logging.getLogger(__name__)

ENV_CACHE_DIR = "SBMLHYBRID_CACHE_DIR"
_READY = "sbmlhybrid_build.json"  # written last: its presence marks a complete build


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


def module_name(name: str, key: str) -> str:
    safe = re.sub(r"\W", "_", name).strip("_") or "model"
    if safe[0].isdigit():
        safe = f"m_{safe}"
    return f"{safe[:40]}_{key[:12]}"


def _swig_env() -> None:
    """Point CMake at the SWIG that built AMICI (`sbmlhybrid.build._cmake.swig_environment`)
    unless the user chose one; without any SWIG, CMake's own search reports it."""
    if "SWIG" not in os.environ:
        try:
            os.environ.update(swig_environment())
        except RuntimeError:
            pass


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
        module: Module name (stem plus key, see `module_name`); also the folder name.
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
            with build_slot(lock_timeout), faster_codegen():
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


def clear_cache(name: str | None = None) -> int:
    """Remove cached builds (all, or those of one SBML model id); returns how many."""
    root = cache_root()
    if not root.exists():
        return 0
    removed = 0
    for entry in root.iterdir():
        if entry.is_dir() and (name is None or entry.name.startswith(module_name(name, "")[:-1])):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
