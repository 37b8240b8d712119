"""Real programs under `memplace run`, same outcome as without: CPython's own regression
tests (installed interpreter, PYTHONMALLOC=malloc so every object goes through malloc)
and stress-ng's malloc stressor."""

import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

REGRTESTS = ["test_threading", "test_signal", "test_os", "test_subprocess", "test_ctypes",
             "test_gc", "test_mmap", "test_tracemalloc", "test_sqlite3", "test_fork1",
             "test_faulthandler"]


def failed_tests(output: str) -> set[str]:
    """Test files regrtest lists as failed in its summary (after its reruns)."""
    failed, collecting = set(), False
    for line in output.splitlines():
        if re.match(r"^\d+ tests? failed( again)?:$", line.strip()):
            collecting = True
            failed = set()  # the "failed again" list after reruns replaces the first one
            continue
        if collecting:
            if not line.startswith("    "):
                collecting = False
                continue
            failed.update(line.split())
    return failed


def run_regrtest(placed: bool) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONMALLOC="malloc")
    prefix = [sys.executable, "-m", "memplace", "run", "--verbose", "--"] if placed else []
    return subprocess.run([*prefix, sys.executable, "-m", "test", "-j2", "-w", *REGRTESTS],
                          capture_output=True, text=True, env=env, timeout=1800)


def test_cpython_regression_tests_same_outcome():
    try:
        import test.support  # noqa: F401
    except ImportError:
        pytest.skip("this interpreter has no test suite installed")
    plain = run_regrtest(False)
    placed = run_regrtest(True)
    assert "Total test files: run=11/11" in placed.stdout, placed.stdout[-3000:]
    assert failed_tests(placed.stdout) == failed_tests(plain.stdout), placed.stdout[-3000:]
    assert placed.returncode == plain.returncode
    assert "next allocator from" in placed.stderr and "libc.so.6" in placed.stderr


@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="needs Debian package stress-ng")
def test_stress_ng_malloc():
    r = subprocess.run([sys.executable, "-m", "memplace", "run", "--verbose", "--", "stress-ng",
                        "--malloc", "2", "--malloc-ops", "200000", "--malloc-thresh", "65536",
                        "--verify", "--metrics-brief"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert "successful run completed" in out
    assert "fail" not in out.lower().replace("failed: 0", "")
    assert "next allocator from" in r.stderr
