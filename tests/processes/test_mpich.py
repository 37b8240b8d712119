"""MPI beyond Open MPI: a small MPI C program built with MPICH's mpicc, two ranks started by
MPICH's launcher (Hydra: mpirun.mpich), each rank under its own memplace, as users launch
it: `mpirun.mpich -np 2 memplace profile|run ... -- prog`.

MPICH tells a rank its rank (PMI_RANK) but names no job: memplace.launch.mpi takes Hydra's
proxy, the ranks' common parent, for the job, so the ranks write one statistics file
together. (Before, memplace started the program without the descriptors it was given,
and every MPICH rank died in MPI_Init: PMI_FD closed.) The launcher is named explicitly:
`mpirun` stays Open MPI's (Debian's alternatives rank it higher) and the Open MPI tests
keep using it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mpi_program import MEMPLACE, SOURCE, line

from memplace.profiling import profile as prof

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("mpirun.mpich") is None or shutil.which("mpicc.mpich") is None,
                       reason="needs Debian packages mpich and libmpich-dev"),
]

@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("mpich")
    (tmp / "ranks.c").write_text(SOURCE)
    exe = tmp / "ranks"
    subprocess.run(["mpicc.mpich", "-O1", "-g", "-o", str(exe), str(tmp / "ranks.c")], check=True)
    return exe


def mpich(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    r = subprocess.run(["mpirun.mpich", "-np", "2", *argv], capture_output=True, text=True,
                       timeout=300, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r


def bare_output(program: Path) -> list[str]:
    return sorted(mpich(str(program), cwd=program.parent).stdout.splitlines())


def test_each_rank_writes_its_profile_with_its_rank(program, tmp_path):
    out = tmp_path / "profiles"
    r = mpich(*MEMPLACE, "profile", "--out", str(out), "--", str(program), cwd=tmp_path)
    assert sorted(r.stdout.splitlines()) == bare_output(program)
    files = sorted(out.glob("*.json"))
    profiles = {p.rank: p for p in map(prof.load, files)}
    assert sorted(profiles) == [0, 1] and len(files) == 2, [f.name for f in files]
    for rank, p in profiles.items():
        fields = [s for s in p.sites if s.symbol(0) and s.symbol(0).line == line("FIELD")]
        assert len(fields) == 1, (rank, [s.symbol(0) for s in p.sites])
        assert fields[0].allocations == 4 + 2 * rank
        assert fields[0].peak_live_bytes == (1 << 16) * 8


def test_ranks_placed_write_one_stats_file_with_both_ranks(program, tmp_path):
    """The ranks' profiles merged, field()'s site (as the profile names it) sent to a
    device whose capacity the node's ranks share, both ranks placed under mpirun.mpich."""
    out = tmp_path / "profiles"
    mpich(*MEMPLACE, "profile", "--out", str(out), "--", str(program), cwd=tmp_path)
    merged = tmp_path / "merged.json"
    r = subprocess.run([*MEMPLACE, "profile", "merge", *map(str, sorted(out.glob("*.json"))),
                        "-o", str(merged)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    total = prof.load(merged)
    field, = [s for s in total.sites if s.symbol(0) and s.symbol(0).line == line("FIELD")]
    assert (total.processes, field.allocations) == (2, 4 + 6)
    frame = field.frames[0]
    (tmp_path / "slow").mkdir()
    policy = tmp_path / "policy.toml"
    policy.write_text(f"""version = 1
default = "slow"
[devices.fast]
kind = "numa"
nodes = [0]
capacity = "64MiB"
scope = "node"
fallback = "slow"
[devices.slow]
kind = "file"
path = "{tmp_path / 'slow'}"
[[rules]]
name = "field"
site = ["{frame.module}+{frame.offset:#x}"]
device = "fast"
""")
    stats = tmp_path / "stats.json"
    r = mpich(*MEMPLACE, "run", "--policy", str(policy), "--stats", str(stats), "--", str(program),
              cwd=tmp_path)
    assert sorted(r.stdout.splitlines()) == bare_output(program)
    assert "cannot share" not in r.stderr, r.stderr  # the node's counters: one file for both
    doc = json.loads(stats.read_text())
    assert doc["ranks"] == {"0": 0, "1": 0}
    assert doc["job"].startswith("hydra-")
    by_rank = {p["rank"]: p for p in doc["processes"]}
    assert sorted(by_rank) == [0, 1]
    for rank, p in by_rank.items():  # each rank's field() blocks on fast, by the rule
        fast = next(d for d in p["devices"] if d["name"] == "fast")
        rule = next(x for x in p["rules"] if x["name"] == "field")
        assert fast["allocations"] == rule["hits"] == 4 + 2 * rank, p
