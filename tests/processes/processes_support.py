"""Helpers for the process tests: build small C programs (glibc, musl, static, i686), a
policy with one small-size rule, and `memplace run` with and without statistics."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

POLICY = """version = 1
[devices.fast]
kind = "numa"
nodes = [0]
capacity = "64MiB"
[[rules]]
name = "small"
size = "..4KiB"
device = "fast"
"""


def compile_c(tmp_path: Path, name: str, source: str, kind: str = "glibc") -> Path:
    """Compile `source` as `name`: kind glibc (gcc), musl (musl-gcc), static (gcc -static) or
    i686 (the i686 cross gcc, or gcc -m32); skipped with the Debian package when missing."""
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / name
    if kind == "musl":
        if shutil.which("musl-gcc") is None:
            pytest.skip("needs musl-gcc (Debian package musl-tools)")
        cc = ["musl-gcc"]
    elif kind == "i686":
        cc = ["i686-linux-gnu-gcc"] if shutil.which("i686-linux-gnu-gcc") else ["gcc", "-m32"]
    elif kind == "static":
        cc = ["gcc", "-static"]
    else:
        cc = ["gcc"]
    r = subprocess.run([*cc, "-O1", "-o", str(out), str(src)], capture_output=True, text=True)
    if r.returncode != 0:
        if kind == "i686":
            pytest.skip("no i386 compiler links here (Debian packages gcc-i686-linux-gnu and "
                        "libc6-dev-i386-cross, or gcc-multilib)")
        if kind == "static":
            pytest.skip(f"gcc -static does not link here: {r.stderr.strip()[:200]}")
        raise AssertionError(r.stderr)
    if kind == "i686":
        probe = subprocess.run([str(out)], capture_output=True, text=True)
        if probe.returncode == 127 or "No such file" in probe.stderr:
            pytest.skip("i386 programs do not run here (Debian package libc6-i386)")
    return out


def policy_file(tmp_path: Path) -> Path:
    p = tmp_path / "policy.toml"
    p.write_text(POLICY)
    return p


def memplace_run(tmp_path: Path, *cmd: str, stats: Path | None = None,
                 cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`memplace run --policy P [--stats S] -- CMD`."""
    args = [sys.executable, "-m", "memplace", "run", "--policy", str(policy_file(tmp_path))]
    if stats is not None:
        args += ["--stats", str(stats)]
    return subprocess.run([*args, "--", *cmd], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def plain_run(*cmd: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, cwd=cwd, timeout=timeout)


def stats_doc(path: Path) -> dict:
    return json.loads(path.read_text())
