"""Shared fixtures: compiling small programs in the test run, running them under memplace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).parent / "runtime" / "programs"


def compile_c(tmp_path: Path, source: str | Path, name: str | None = None, *flags: str,
              compiler: str = "gcc") -> Path:
    """Compile a C/C++ source (a file under tests/runtime/programs, or text) into tmp_path."""
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    src = PROGRAMS / source if isinstance(source, str) and (PROGRAMS / source).exists() else None
    if src is None:
        suffix = ".cc" if compiler in ("g++", "c++") else ".c"
        src = tmp_path / ((name or "prog") + suffix)
        src.write_text(str(source))
    out = tmp_path / (name or Path(src).stem)
    subprocess.run([compiler, "-O1", "-g", "-Wall", "-o", str(out), str(src), *flags],
                   check=True, capture_output=True, text=True)
    return out


@pytest.fixture
def cc(tmp_path):
    def build(source, name=None, *flags, compiler="gcc"):
        return compile_c(tmp_path, source, name, *flags, compiler=compiler)
    return build


@pytest.fixture(scope="session")
def runtime():
    from memplace.launch.runtime_path import runtime_path
    return runtime_path()


def memplace(*args: str, **kw) -> subprocess.CompletedProcess:
    """Run the memplace command line as a user would."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run([sys.executable, "-m", "memplace", *args], **kw)


def memplace_to_closed_pipe(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """`memplace ARGS | head -0`, made certain: stdout is a pipe whose reader is gone before
    memplace starts, so its first write fails (EPIPE), whatever the timing."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, "-m", "memplace", *args], stdout=w, stderr=subprocess.PIPE,
                              text=True, timeout=timeout, **kw)
    finally:
        os.close(w)


def assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    """Bad input: exit status 2, one line on stderr naming the problem, no traceback."""
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr + (p.stdout or "")
    assert lines[0].startswith("memplace: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])


def preloaded(runtime: str, env: dict | None = None) -> dict:
    e = dict(os.environ if env is None else env)
    e["LD_PRELOAD"] = runtime
    return e
