"""OpenFOAM tutorials (Debian openfoam + openfoam-examples) for tests and benchmarks:
the solver's environment, a fresh case, its residuals, and its largest allocation sites.

    env = foam_env()
    case = prepare("simpleFoam/pitzDaily", tmp / "case", env)
    set_end_time(case, 3)
    profiles = profile_case(case, ["simpleFoam"], env, tmp / "prof")
    largest_sites(profiles, 8)      # ['simpleFoam+0x3d992', 'libfiniteVolume.so+0x95b345', ...]

Shared by tests/realprograms and bench/placement (which puts this folder on sys.path);
it imports neither pytest nor anything else a benchmark would not have.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

EXAMPLES = Path("/usr/share/doc/openfoam-examples/examples/incompressible")
BASHRC = Path("/usr/share/openfoam/etc/bashrc")
RESIDUAL = re.compile(r"Solving for (\w+), Initial residual = (\S+), Final residual = (\S+), "
                      r"No Iterations (\d+)")


def missing() -> str | None:
    """Why the OpenFOAM tutorials cannot run here (naming the Debian packages), or None."""
    if not (BASHRC.exists() and EXAMPLES.exists() and shutil.which("simpleFoam")):
        return "needs Debian packages openfoam and openfoam-examples"
    return None


def foam_env() -> dict:
    """The environment OpenFOAM's bashrc sets up (plus Open MPI's run-as-root switches)."""
    out = subprocess.run(["bash", "-c", f"source {BASHRC} >/dev/null 2>&1; env -0"],
                         capture_output=True, check=True).stdout
    env = dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    return env


def prepare(tutorial: str, dest: Path, env: dict) -> Path:
    """A copy of the tutorial's case at `dest`, meshed."""
    shutil.copytree(EXAMPLES / tutorial, dest)
    subprocess.run(["blockMesh"], cwd=dest, env=env, check=True, capture_output=True)
    return dest


def set_end_time(case: Path, end_time: int) -> None:
    """Stop the run after `end_time` (a few iterations are enough for a profile)."""
    control = case / "system" / "controlDict"
    text, n = re.subn(r"(?m)^endTime\s+\S+;", f"endTime         {end_time};",
                      control.read_text())
    assert n == 1, f"{control}: no endTime entry"
    control.write_text(text)


def all_residuals(log: str) -> list[tuple]:
    """Every residual line of the solver's log, in order."""
    return RESIDUAL.findall(log)


def last_residuals(log: str) -> list[tuple]:
    """The residual lines of the last iteration that printed any."""
    blocks = [b for b in re.split(r"\n(?:Time = )", log) if RESIDUAL.search(b)]
    assert blocks, "no residuals in the solver's log"
    return RESIDUAL.findall(blocks[-1])


def iterations(log: str) -> int:
    """How many time steps the solver ran."""
    return len(re.findall(r"(?m)^Time = ", log))


def profile_case(case: Path, argv: list[str], env: dict, out: Path) -> list[Path]:
    """Profile one run of the solver in `case` with the runtime engine (bytes per site are
    all a largest-sites policy needs). Returns the profile files (one per process)."""
    r = subprocess.run([sys.executable, "-m", "memplace", "profile", "--out", str(out),
                        "--", *argv], cwd=case, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    files = sorted(out.glob("profile.*.json"))
    assert files, f"memplace profile wrote nothing: {r.stderr[-2000:]}"
    return files


def site_bytes(profiles: list[Path]) -> Counter:
    """Bytes allocated per innermost frame ("MODULE+0xOFF", MODULE a basename) over all the
    profiles' sites: the one-frame call sites a policy rule can name."""
    from memplace.profiling import profile as prof
    total: Counter = Counter()
    for path in profiles:
        for site in prof.load(path).sites:
            frame = site.frames[0]
            total[f"{os.path.basename(frame.module)}+{int(frame.offset):#x}"] += site.bytes
    return total


def largest_sites(profiles: list[Path], n: int) -> list[str]:
    """The `n` one-frame call sites that allocated the most bytes, largest first."""
    return [site for site, _ in site_bytes(profiles).most_common(n)]
