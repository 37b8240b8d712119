"""OpenFOAM simpleFoam pitzDaily with a refined mesh, for the capacity benchmark.

The tutorial's blockMeshDict cell counts are multiplied by REFINE in x and y (pitzDaily is
2-D): 4 gives 195,600 cells instead of 12,225 and a peak of about 340 MiB. Each run
starts from the same meshed case (time directories the previous run wrote are removed);
what must be identical in every run is the residual of every equation at every iteration.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "realprograms"))
from openfoam_support import EXAMPLES, all_residuals, foam_env, missing, set_end_time  # noqa: E402

TUTORIAL = "simpleFoam/pitzDaily"


def refine(case: Path, factor: int) -> None:
    """Multiply every block's cell counts in x and y by `factor`."""
    mesh = case / "system" / "blockMeshDict"
    text, n = re.subn(r"(hex \([^)]*\)\s*)\(\s*(\d+)\s+(\d+)\s+(\d+)\s*\)",
                      lambda m: f"{m.group(1)}({int(m.group(2)) * factor} {int(m.group(3)) * factor} {m.group(4)})",
                      mesh.read_text())
    if n == 0:
        raise SystemExit(f"{mesh}: no hex blocks to refine")
    mesh.write_text(text)


def openfoam_program(work: Path, factor: int, steps: int):
    from run import Program
    if missing():
        raise SystemExit(f"--openfoam: {missing()}")
    env = foam_env()
    env.pop("LD_PRELOAD", None)
    case = work / "case"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(EXAMPLES / TUTORIAL, case)
    refine(case, factor)
    set_end_time(case, steps)
    subprocess.run(["blockMesh"], cwd=case, env=env, check=True, capture_output=True)
    exe = subprocess.run(["bash", "-c", "command -v simpleFoam"], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()

    def fresh() -> None:
        for d in case.iterdir():   # time directories of an earlier run: each run starts at 0
            if d.is_dir() and d.name != "0" and re.fullmatch(r"[0-9.e+-]+", d.name):
                shutil.rmtree(d)

    def residuals(out: str) -> str:
        found = all_residuals(out)
        digest = hashlib.sha256(repr(found).encode()).hexdigest()[:16]
        return f"{len(found)} residual lines, last {found[-1] if found else None}, all: sha256 {digest}"

    return Program(f"openfoam-x{factor}", [exe, "-case", str(case)], residuals, fresh, env)
