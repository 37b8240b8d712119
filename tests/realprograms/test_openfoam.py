"""OpenFOAM tutorials from Debian's openfoam + openfoam-examples under `memplace run`:
the same residuals as without memplace. libOpenFOAM.so exports its own malloc, so it is
also the real-world case of an allocator sitting between the runtime and libc."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from openfoam_support import foam_env, last_residuals, missing, prepare

pytestmark = pytest.mark.slow

if missing():
    pytest.skip(missing(), allow_module_level=True)


def solve(case: Path, argv: list[str], env: dict, under_memplace: bool) -> tuple[str, str]:
    cmd = [sys.executable, "-m", "memplace", "run", "--verbose", "--", *argv] if under_memplace \
        else argv
    r = subprocess.run(cmd, cwd=case, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout, r.stderr


def compare(tmp_path, tutorial, solver_argv, setup=None, mpi_ranks=0):
    env = foam_env()
    logs = {}
    for placed in (False, True):
        case = prepare(tutorial, tmp_path / ("placed" if placed else "plain"), env)
        if setup:
            setup(case, env)
        if mpi_ranks:
            # memplace wraps each rank, as it would under any launcher
            inner = [sys.executable, "-m", "memplace", "run", "--verbose", "--"] if placed else []
            r = subprocess.run(["mpirun", "-np", str(mpi_ranks), *inner, *solver_argv,
                                "-parallel"], cwd=case, env=env, capture_output=True, text=True,
                               timeout=900)
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
            logs[placed] = (r.stdout, r.stderr)
        else:
            logs[placed] = solve(case, solver_argv, env, placed)
    plain, placed = logs[False][0], logs[True][0]
    assert last_residuals(placed) == last_residuals(plain)
    assert placed.count("\nTime = ") == plain.count("\nTime = ")
    return logs[True][1]


def test_icofoam_cavity(tmp_path):
    stderr = compare(tmp_path, "icoFoam/cavity/cavity", ["icoFoam"])
    assert "next allocator from /lib/libOpenFOAM.so" in stderr or \
        "next allocator from /usr/lib/libOpenFOAM.so" in stderr, stderr


def test_simplefoam_pitzdaily(tmp_path):
    compare(tmp_path, "simpleFoam/pitzDaily", ["simpleFoam"])


def decompose_in_two(case: Path, env: dict):
    (case / "system" / "decomposeParDict").write_text(
        "FoamFile { version 2.0; format ascii; class dictionary; object decomposeParDict; }\n"
        "numberOfSubdomains 2;\nmethod simple;\n"
        "coeffs { n (2 1 1); }\nsimpleCoeffs { n (2 1 1); delta 0.001; }\n")
    subprocess.run(["decomposePar", "-force"], cwd=case, env=env, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs Debian package openmpi-bin")
def test_icofoam_cavity_mpirun_two_ranks(tmp_path):
    stderr = compare(tmp_path, "icoFoam/cavity/cavity", ["icoFoam"], setup=decompose_in_two,
                     mpi_ranks=2)
    assert stderr.count("next allocator from") == 2, stderr
