"""Helpers for the advisor/profile tests: run the CLI as a user would, build C programs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import assert_one_line_error  # noqa: F401 (the tests here import it from this module)



def memplace(*args: str, cwd: str | os.PathLike | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """`memplace ARGS` in a fresh interpreter, the installed package (its runtime and tools
    are there, not in the source tree); returns the finished process."""
    p = subprocess.run([sys.executable, "-m", "memplace", *args], capture_output=True, text=True, cwd=cwd)
    if check and p.returncode != 0:
        raise AssertionError(f"memplace {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


@pytest.fixture
def cc(tmp_path):
    """Compile C source into an executable in tmp_path: cc(name, source, *flags) -> path."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (Debian package gcc)")

    def build(name: str, source: str, *flags: str) -> Path:
        src = tmp_path / f"{name}.c"
        src.write_text(source)
        exe = tmp_path / name
        subprocess.run(["gcc", "-g", "-O0", *flags, "-o", str(exe), str(src)], check=True)
        return exe

    return build


needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed (Debian package valgrind)")
