"""The whole placement loop on OpenFOAM pitzDaily, as a user runs it: bare run, profile
(one per rank), merge, advise, placed run with --stats, report with an HTML page; serial
or with MPI ranks (each rank its own memplace, capacities shared by the node's ranks).

    result = run_loop(tmp / "serial", ranks=1, steps=20, capacity_mib=64)
    result.seconds["advise"], result.planned_share, result.identical

Shared by tests/realprograms/test_openfoam_loop.py and bench/placement/openfoam_loop.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from openfoam_support import all_residuals, foam_env, prepare, set_end_time

DECOMPOSE = ("FoamFile {{ version 2.0; format ascii; class dictionary; object decomposeParDict; }}\n"
             "numberOfSubdomains {n};\nmethod simple;\n"
             "simpleCoeffs {{ n ({n} 1 1); delta 0.001; }}\n")


@dataclass
class LoopResult:
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each step
    identical: bool = False          # residuals of the placed run equal the bare run's
    planned: dict[str, int] = field(default_factory=dict)    # allocations per device, by the plan
    placed: dict[str, int] = field(default_factory=dict)     # allocations per device, in the run
    fast_peaks: list[int] = field(default_factory=list)      # each process's peak on "fast"
    planned_fast_peak: int = 0       # what the plan says one process holds on "fast" at most
    ranks_in_stats: list[int] = field(default_factory=list)
    capacity: int = 0
    sites: int = 0

    @property
    def planned_share(self) -> float:
        """Share of the planned allocations that went where the plan put them."""
        total = sum(self.planned.values())
        return sum(min(n, self.placed.get(d, 0)) for d, n in self.planned.items()) / total if total else 0.0


def memplace_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "memplace", *args]


def run_loop(case: Path, ranks: int = 1, steps: int = 20, capacity_mib: int = 64) -> LoopResult:
    env = foam_env()
    prepare("simpleFoam/pitzDaily", case, env)
    set_end_time(case, steps)
    solver = ["simpleFoam"]
    launch: list[str] = []
    if ranks > 1:
        (case / "system" / "decomposeParDict").write_text(DECOMPOSE.format(n=ranks))
        subprocess.run(["decomposePar", "-force"], cwd=case, env=env, check=True, capture_output=True)
        solver.append("-parallel")
        launch = ["mpirun", "-np", str(ranks)]
    res = LoopResult(capacity=capacity_mib << 20)

    def step(name: str, argv: list[str]) -> subprocess.CompletedProcess:
        t = time.perf_counter()
        r = subprocess.run(argv, cwd=case, env=env, capture_output=True, text=True, timeout=1800)
        res.seconds[name] = time.perf_counter() - t
        if r.returncode != 0:
            raise AssertionError(f"{name}: status {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        return r

    bare = step("bare run", [*launch, *solver])
    step("profile", [*launch, *memplace_cmd("profile", "--out", "prof", "--"), *solver])
    files = sorted(str(p) for p in (case / "prof").glob("*.json"))
    if len(files) > 1:
        step("merge", memplace_cmd("profile", "merge", *files, "-o", "merged.json"))
        files = ["merged.json"]
    res.sites = len(json.loads((case / files[0]).read_text())["sites"])
    (case / "slow").mkdir()
    step("advise", memplace_cmd("advise", files[0], "--policy-out", "policy.toml", "--ranks-per-node", str(ranks),
                                "--device", f"fast=numa:0,latency=80ns,capacity={capacity_mib}MiB",
                                "--device", f"slow=file:{case / 'slow'},latency=300ns"))
    placed = step("placed run", [*launch, *memplace_cmd("run", "--policy", "policy.toml", "--stats", "stats.json", "--"),
                                 *solver])
    step("report", memplace_cmd("report", "--stats", "stats.json", "--profile", files[0], "--policy", "policy.toml",
                                "--html", "report.html"))
    res.identical = all_residuals(bare.stdout) == all_residuals(placed.stdout) != []
    plan = json.loads(subprocess.run(memplace_cmd("report", "--profile", files[0], "--policy", "policy.toml", "--json"),
                                     cwd=case, env=env, capture_output=True, text=True, check=True).stdout)
    res.planned = {d["name"]: d["allocations"] for d in plan["devices"]}
    res.planned_fast_peak = max((max(t["live"]) for t in plan["device_timeline"] if t["device"] == "fast"), default=0)
    stats = json.loads((case / "stats.json").read_text())
    res.placed = {d["name"]: d["allocations"] for d in stats["totals"]["devices"]}
    res.ranks_in_stats = sorted(p["rank"] for p in stats["processes"] if "rank" in p)
    for p in stats["processes"]:
        res.fast_peaks += [d["peak"] for d in p["devices"] if d["name"] == "fast"]
    return res
