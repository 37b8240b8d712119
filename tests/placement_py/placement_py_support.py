"""Fixtures for the placement tests: fake /sys trees and the memplace command line."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
if importlib.util.find_spec("memplace") is None:  # not installed: use this checkout
    sys.path.insert(0, str(SRC))

from fakesys import four_nodes, one_node  # noqa: E402


@pytest.fixture
def sys1(tmp_path) -> Path:
    return one_node(tmp_path / "sys1")


@pytest.fixture
def sys4(tmp_path) -> Path:
    return four_nodes(tmp_path / "sys4")


def run_memplace(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run `memplace ARGS` as a user would (from this checkout's sources)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "memplace", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


@pytest.fixture
def cli():
    return run_memplace
