"""Helpers shared by the call-site tests: marked lines of the test programs, building
them, running the memplace command line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PROGRAMS = Path(__file__).parent / "programs"


def marker_line(source: Path, kind: str, name: str) -> int:
    """The line of `source` carrying the comment `/* KIND NAME */`."""
    for i, text in enumerate(source.read_text().splitlines(), 1):
        if re.search(rf"/\* {kind} {name} \*/", text):
            return i
    raise AssertionError(f"{kind} {name} not in {source.name}")


def marked_frame(kind: str, name: str, *sources: Path) -> str:
    """`file:line` of the line marked `/* KIND NAME */` in the first of `sources` that
    has it (a program and the headers it includes)."""
    for source in sources:
        try:
            return f"{source.name}:{marker_line(source, kind, name)}"
        except AssertionError:
            pass
    raise AssertionError(f"{kind} {name} not in {', '.join(s.name for s in sources)}")


def build(tmp_path: Path, source: Path, flags: list[str]) -> Path:
    """`source` compiled with debug information and `flags` (g++ for C++)."""
    out = tmp_path / source.stem
    compiler = "g++" if source.suffix == ".cc" else "gcc"
    subprocess.run([compiler, "-g", *flags, "-o", str(out), str(source)], check=True)
    return out


def memplace(*args: str, **kw) -> subprocess.CompletedProcess:
    """The memplace command line, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "memplace", *args], capture_output=True,
                          text=True, **{"timeout": 300, **kw})


def chains_policy(tmp_path, rules: dict):
    """A policy with devices fast (node 0) and pmem (a file device) and one rule per
    name: (frames, device)."""
    pmem = tmp_path / "pmem"
    pmem.mkdir()
    text = ""
    for name, (frames, device) in rules.items():
        quoted = ", ".join(f'"{f}"' for f in frames)
        text += f'[[rules]]\nname = "{name}"\nsite = [{quoted}]\ndevice = "{device}"\n'
    policy = tmp_path / "policy.toml"
    policy.write_text(f"""version = 1
[devices.fast]
kind = "numa"
nodes = [0]
[devices.pmem]
kind = "file"
path = "{pmem}"
{text}""")
    return policy
