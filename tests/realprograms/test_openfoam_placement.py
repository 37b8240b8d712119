"""OpenFOAM simpleFoam pitzDaily placed by call site: its largest allocation sites (by bytes,
from a profile of a short run) on a file device, everything else bound to NUMA node 0.
The placed run must solve exactly as the run without memplace, and its stats must show
that both devices really served the solver's allocations."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openfoam_support import (all_residuals, foam_env, iterations, largest_sites,
                              last_residuals, missing, prepare, profile_case, set_end_time)

pytestmark = pytest.mark.slow

if missing():
    pytest.skip(missing(), allow_module_level=True)

TUTORIAL = "simpleFoam/pitzDaily"
LARGEST = 8          # sites sent to the file device
PROFILED_STEPS = 3   # iterations of the profiled run (valgrind, when DHAT is the engine)


def policy(sites: list[str], file_dir: Path) -> str:
    lines = ['version = 1', 'default = "dram"', '',
             '[devices.dram]', 'kind = "numa"', 'nodes = [0]', '',
             '[devices.big]', 'kind = "file"', f'path = "{file_dir}"', 'capacity = "2GiB"', '']
    for i, site in enumerate(sites):
        lines += ['[[rules]]', f'name = "large-{i}"', f'site = ["{site}"]', 'device = "big"', '']
    return "\n".join(lines)


def solve(case: Path, argv: list[str], env: dict) -> str:
    r = subprocess.run(argv, cwd=case, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout


def test_simplefoam_pitzdaily_largest_sites_on_file_device_rest_on_node0(tmp_path):
    env = foam_env()
    short = prepare(TUTORIAL, tmp_path / "short", env)
    set_end_time(short, PROFILED_STEPS)
    sites = largest_sites(profile_case(short, ["simpleFoam"], env, tmp_path / "profile"),
                          LARGEST)
    assert len(sites) == LARGEST, sites
    file_dir = tmp_path / "filedev"
    file_dir.mkdir()
    toml = tmp_path / "policy.toml"
    toml.write_text(policy(sites, file_dir))
    stats_path = tmp_path / "stats.json"

    plain = solve(prepare(TUTORIAL, tmp_path / "plain", env), ["simpleFoam"], env)
    placed = solve(prepare(TUTORIAL, tmp_path / "placed", env),
                   [sys.executable, "-m", "memplace", "run", "--policy", str(toml),
                    "--stats", str(stats_path), "--", "simpleFoam"], env)

    assert last_residuals(placed) == last_residuals(plain)
    assert iterations(placed) == iterations(plain) > PROFILED_STEPS
    assert all_residuals(placed) == all_residuals(plain)

    stats = json.loads(stats_path.read_text())
    assert stats["returncode"] == 0
    devices = {d["name"]: d for d in stats["totals"]["devices"]}
    for name in ("big", "dram"):
        assert devices[name]["allocations"] > 0 and devices[name]["bytes"] > 0, devices[name]
        assert not any(devices[name]["fallbacks"].values()), devices[name]
    assert devices["system"]["allocations"] == 0, devices["system"]
    rules = {r["name"]: r for r in stats["totals"]["rules"]}
    hit = [n for n, r in rules.items() if r["hits"] > 0 and r["bytes"] > 0]
    assert hit, rules
    # the file device got exactly what the rules sent it: nothing fell back elsewhere
    assert sum(r["bytes"] for r in rules.values()) == devices["big"]["bytes"]
    # the largest sites of a short run stay large over the whole run
    assert devices["big"]["bytes"] > 0.2 * (devices["big"]["bytes"] + devices["dram"]["bytes"])
    # and the file device's memory is a file in its directory, created and unlinked
    assert list(file_dir.iterdir()) == []
