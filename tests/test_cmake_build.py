"""The model's C++ build with CMake called directly (`sbmlhybrid.build._cmake`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sbmlhybrid.build import _cmake


def test_tool_takes_the_wheel_then_the_interpreter_folder_then_path(tmp_path,
                                                                     monkeypatch) -> None:
    import cmake

    assert _cmake.tool("cmake") == str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
    fake_bin = tmp_path / "venv" / "bin"
    fake_bin.mkdir(parents=True)
    on_path = tmp_path / "path"
    on_path.mkdir()
    for folder in (fake_bin, on_path):  # a tool without a Python module
        (folder / "fake-tool").write_text("#!/bin/sh\n")
        (folder / "fake-tool").chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.setattr(sys, "executable", str(fake_bin / "python"))
    assert _cmake.tool("fake-tool") == str(fake_bin / "fake-tool")
    (fake_bin / "fake-tool").unlink()
    assert _cmake.tool("fake-tool") == str(on_path / "fake-tool")
    with pytest.raises(RuntimeError, match="'no-such-tool' not found"):
        _cmake.tool("no-such-tool")


def test_amici_settings_not_replicated_fall_back(monkeypatch) -> None:
    monkeypatch.delenv("AMICI_BUILD_TEMP", raising=False)
    monkeypatch.delenv("ENABLE_GCOV_COVERAGE", raising=False)
    assert _cmake.replicates_amici_build()
    monkeypatch.setenv("ENABLE_GCOV_COVERAGE", "TRUE")
    assert not _cmake.replicates_amici_build()
    monkeypatch.delenv("ENABLE_GCOV_COVERAGE")
    monkeypatch.setenv("AMICI_BUILD_TEMP", "/tmp/x")
    assert not _cmake.replicates_amici_build()


def test_failed_compile_names_the_source_and_the_error(tmp_path, monkeypatch) -> None:
    """A CMake project whose source does not compile: the error ends with the compiler's
    message naming the file and line."""
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.22)\nproject(broken CXX)\n"
        "add_library(broken broken.cpp)\ninstall(TARGETS broken DESTINATION lib)\n")
    (tmp_path / "broken.cpp").write_text("int f() {\n  return undeclared_symbol;\n}\n")
    monkeypatch.setenv("AMICI_PARALLEL_COMPILE", "1")
    with pytest.raises(RuntimeError) as err:
        _cmake.build_model_extension(tmp_path, "broken")
    message = str(err.value)
    assert "cmake --build failed" in message
    assert "broken.cpp:2" in message and "undeclared_symbol" in message
    assert not (tmp_path / "broken" / "lib").exists()  # nothing installed


def test_working_project_is_installed_under_the_model_name(tmp_path, monkeypatch) -> None:
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.22)\nproject(ok CXX)\n"
        "add_library(ok ok.cpp)\ninstall(TARGETS ok DESTINATION lib)\n")
    (tmp_path / "ok.cpp").write_text("int f() { return 1; }\n")
    monkeypatch.delenv("AMICI_PARALLEL_COMPILE", raising=False)
    _cmake.build_model_extension(tmp_path, "ok_model")
    assert (tmp_path / "ok_model" / "lib" / "libok.a").is_file()
    cache = (tmp_path / _cmake.BUILD_FOLDER / "CMakeCache.txt").read_text()
    assert f"CMAKE_COMMAND:INTERNAL={_cmake.tool('cmake')}" in cache
    assert "CMAKE_BUILD_TYPE:STRING=Release" in cache
    assert os.path.isfile(Path(tmp_path / _cmake.BUILD_FOLDER / "build.ninja"))


def test_swig_environment_is_the_swig_that_built_amici_with_its_library() -> None:
    """The SWIG chosen for model builds has AMICI's SWIG version and a library folder that
    exists (the wheel's binary, run without its entry script, would look for its library in
    the wheel's build folder)."""
    import subprocess

    from amici._installation.amici import _SWIG_VERSION

    env = _cmake.swig_environment()
    clean = {k: v for k, v in os.environ.items() if k != "SWIG_LIB"} | env
    run = [env["SWIG"]]
    version = subprocess.run([*run, "-version"], env=clean, capture_output=True, text=True)
    assert f"SWIG Version {'.'.join(map(str, _SWIG_VERSION))}" in version.stdout
    library = subprocess.run([*run, "-swiglib"], env=clean, capture_output=True,
                             text=True).stdout.strip()
    assert (Path(library) / "swig.swg").is_file(), library
