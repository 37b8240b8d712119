"""Helpers for placement tests: build the test programs, find call sites, write policies."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).parent / "programs"


def build(tmp_path: Path, source: str, *flags: str) -> Path:
    compiler = "g++" if source.endswith(".cc") else "gcc"
    out = tmp_path / Path(source).stem
    subprocess.run([compiler, "-O1", "-g", "-I", str(PROGRAMS), "-o", str(out),
                    str(PROGRAMS / source), *flags], check=True, capture_output=True, text=True)
    return out


def line_of(source: str, marker: str) -> int:
    """The line of `source` carrying the comment `SITE <marker>`."""
    for i, line in enumerate((PROGRAMS / source).read_text().splitlines(), 1):
        if re.search(rf"SITE {re.escape(marker)}\b", line):
            return i
    raise AssertionError(f"no SITE {marker} in {source}")


def calls_to(binary: Path, callee: str) -> list[tuple[str, int]]:
    """(function, return-address offset) of every call to `callee` in `binary`."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(binary)],
                         capture_output=True, text=True, check=True).stdout
    found, function, pending = [], None, None
    for line in out.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if head:
            function, pending = head.group(1), None
            continue
        insn = re.match(r"\s+([0-9a-f]+):", line)
        if not insn:
            continue
        if pending:
            found.append((pending, int(insn.group(1), 16)))
            pending = None
        if "call" in line and f"<{callee}" in line:
            pending = function
    return found


def run_placed(binary: Path, policy: Path, *args: str, stats: Path | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "memplace", "run", "--policy", str(policy)]
    if stats:
        cmd += ["--stats", str(stats)]
    return subprocess.run([*cmd, "--", str(binary), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def where(stdout: str) -> dict[str, dict[str, str]]:
    """Parse the programs' 'LABEL policy=MODE:NODES node=N file=PATH' lines."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"(\S+) policy=(\S*) node=(\S+) file=(.*)$", line)
        if m:
            out[m.group(1)] = {"policy": m.group(2), "node": m.group(3), "file": m.group(4)}
    return out


def stats_of(path: Path) -> dict:
    doc = json.loads(path.read_text())
    return {"devices": {d["name"]: d for d in doc["totals"]["devices"]},
            "rules": {r["name"]: r for r in doc["totals"]["rules"]}}


@pytest.fixture
def pmem(tmp_path) -> Path:
    d = tmp_path / "pmem"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def runtime():
    from memplace.launch.runtime_path import runtime_path
    return runtime_path()
