"""The C++ build of a generated AMICI model, with CMake called directly.

Reused: AMICI's generated CMake project (``CMakeLists.txt``, ``swig/``), its CMake package
and the three commands its generated ``setup.py`` runs through ``cmake_build_extension``
(configure, build, install into ``<model folder>/<model name>``, build folder
``build_model_ext``): the result is the same module in the same place.

Hand-written, and why (2x64 gray-box CHO build, `benchmarks/hybrid_compile.py`):

- the generated ``setup.py`` spends 1.7 s importing amici, setuptools and
  ``cmake_build_extension`` before the first CMake command;
- it runs the first ``cmake`` on ``PATH``, which, unless the virtual environment is
  activated, is the system's (3.25 here) instead of the CMake wheel installed with
  ``cmake_build_extension`` next to the interpreter (4.x): the older FindPython queries the
  interpreter six times through ``distutils``, which imports setuptools each time (1.7 s of a
  4.3 s configure, 0.3 s with 4.x). Which CMake runs should not depend on an activated shell;
  the wheel's is taken when it is there, and so is SWIG's (`swig_environment`, which the
  compile cache sets for every build);
- ``CMAKE_ADD_CUSTOM_COMMAND_DEPENDS_EXPLICIT_ONLY`` (CMake >= 3.27) lets the SWIG step start
  before the model library is archived: it reads only the interface file and the generated
  headers, so the order-only wait on the library served nothing.

AMICI's own path is used whenever its build has settings this one does not replicate
(``AMICI_BUILD_TEMP``, gcov coverage builds).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import amici

__all__ = ["BUILD_FOLDER", "build_model_extension", "replicates_amici_build",
           "swig_environment", "tool"]

#: The build folder inside the model folder (the one AMICI's ``setup.py`` uses).
BUILD_FOLDER = "build_model_ext"
#: Lines of compiler output kept in the error of a failed build.
_TAIL_LINES = 40


def tool(name: str) -> str:
    """Path of the executable `name`: the binary of its wheel (the ``cmake`` package's
    ``CMAKE_BIN_DIR``, whose ``bin/cmake`` entry script would start Python first), else the
    one next to this interpreter, else the first on PATH. Raises RuntimeError if none."""
    try:
        module = importlib.import_module(name)
        bin_dir = getattr(module, "CMAKE_BIN_DIR", None) or getattr(module, "BIN_DIR", None)
    except ImportError:
        bin_dir = None
    for folder in (bin_dir, Path(sys.executable).parent):
        candidate = Path(folder, name) if folder else None
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"required command {name!r} not found next to {sys.executable} "
                           f"or on PATH")
    return found


def swig_environment() -> dict[str, str]:
    """``SWIG`` (and, for the wheel's binary, ``SWIG_LIB``) for the model's SWIG step: the SWIG
    that built AMICI, found as `tool` finds it. A system SWIG of another version found first
    on PATH builds modules that fail to load ("SwigPyObject has no attribute module").

    The ``swig`` wheel's binary looks for its library where the wheel was built unless
    ``SWIG_LIB`` names it (its ``bin/swig`` entry script sets it, after starting Python).

    Raises:
        RuntimeError: no ``swig`` next to this interpreter or on PATH.
    """
    path = tool("swig")
    env = {"SWIG": path}
    try:
        wheel = importlib.import_module("swig")
    except ImportError:
        return env
    share = Path(getattr(wheel, "SWIG_SHARE_DIR", ""))
    if Path(path).parent == Path(getattr(wheel, "BIN_DIR", "")) and share.is_dir():
        libraries = sorted(d for d in share.iterdir() if d.is_dir())  # one: <version>/
        if libraries:
            env["SWIG_LIB"] = str(libraries[-1])
    return env


def replicates_amici_build() -> bool:
    """False where AMICI's build has settings this module does not replicate."""
    return not (os.environ.get("AMICI_BUILD_TEMP")
                or _env_true("ENABLE_GCOV_COVERAGE"))


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true")


def _prefix_path() -> str:
    """CMAKE_PREFIX_PATH as AMICI's generated ``setup.py`` sets it: the user's entries, AMICI's
    installation and, when AMICI was built with it, scipy-openblas's CMake folder."""
    installation = Path(amici.__file__).parent / "_installation"
    entries = [e for e in os.environ.get("CMAKE_PREFIX_PATH", "").split(os.pathsep) if e]
    entries.append(installation.as_posix())
    root = Path(importlib.metadata.distribution("amici").locate_file(""))
    openblas = root / "amici" / "_installation" / "lib" / "cmake" / "openblas"
    if openblas.exists():
        entries.append(openblas.as_posix())
    return ";".join(entries)


def _run(command: list[str], cwd: Path, env: dict[str, str], verbose: bool) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if verbose:
        print(result.stdout)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-_TAIL_LINES:])
        raise RuntimeError(f"{Path(command[0]).name} {command[1]} failed (exit "
                           f"{result.returncode}) in {cwd}:\n{tail}")


def build_model_extension(package_dir: str | os.PathLike, model_name: str,
                          compiler: str | None = None, verbose: bool = False) -> None:
    """Configure, build and install the generated model in `package_dir` (the module lands in
    ``package_dir / model_name``). Jobs: ``AMICI_PARALLEL_COMPILE`` (as AMICI reads it);
    ``ENABLE_AMICI_DEBUGGING`` makes a Debug build; `compiler` is used as ``CXX``.

    Raises:
        RuntimeError: a CMake step failed; the message ends with its last output lines.
    """
    package_dir = Path(package_dir).absolute()
    build_dir = package_dir / BUILD_FOLDER
    build_dir.mkdir(parents=True, exist_ok=True)
    build_type = "Debug" if _env_true("ENABLE_AMICI_DEBUGGING") else "Release"
    cmake = tool("cmake")
    env = os.environ.copy()
    if compiler is not None:
        env["CXX"] = compiler
    configure = [cmake, "-S", str(package_dir), "-B", str(build_dir), "-G", "Ninja",
                 f"-DCMAKE_MAKE_PROGRAM={tool('ninja')}",
                 f"-DCMAKE_BUILD_TYPE={build_type}",
                 f"-DCMAKE_INSTALL_PREFIX:PATH={package_dir / model_name}",
                 "-DCMAKE_VERBOSE_MAKEFILE=ON",
                 f"-DCMAKE_PREFIX_PATH={_prefix_path()}",
                 "-DAMICI_PYTHON_BUILD_EXT_ONLY=ON",
                 f"-DPython3_EXECUTABLE={Path(sys.executable).as_posix()}",
                 "-DCMAKE_ADD_CUSTOM_COMMAND_DEPENDS_EXPLICIT_ONLY=ON"]
    # AMICI's convention: unset -> 1 job, empty -> CMake's default parallelism
    jobs = os.environ.get("AMICI_PARALLEL_COMPILE", "1")
    _run(configure, package_dir, env, verbose)
    _run([cmake, "--build", str(build_dir), "--config", build_type, "--parallel",
          *([jobs] if jobs else [])], package_dir, env, verbose)
    _run([cmake, "--install", str(build_dir), "--config", build_type], package_dir, env,
         verbose)
