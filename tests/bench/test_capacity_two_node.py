"""bench/capacity's two-node mode: which nodes it takes as fast and slow (from a /sys
tree), the one-line refusal of nodes the machine lacks, and the policies it writes for
each variant (they pass memplace's policy check against that topology)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "capacity"))
sys.path.insert(0, str(ROOT / "tests" / "placement_py"))
from fakesys import make_sysfs, one_node  # noqa: E402
from two_node import fast_and_slow, two_node_policies  # noqa: E402

from memplace.placement.devices import read_topology  # noqa: E402
from memplace.profiling import profile as prof  # noqa: E402

MIB = 1 << 20


def two_nodes(root: Path, hmat: bool) -> Path:
    """node 0 with CPUs, node 1 CPU-less (a CXL expander); HMAT latencies when `hmat`."""
    def access(lat):
        return dict(access0=dict(initiators=[0], read_latency=lat, write_latency=lat, read_bandwidth=20000,
                                 write_bandwidth=20000)) if hmat else {}
    return make_sysfs(root, [
        dict(id=0, total_kb=4 << 20, free_kb=3 << 20, cpulist="0-1", distance="10 28", **access(100)),
        dict(id=1, total_kb=4 << 20, free_kb=4 << 20, cpulist="", distance="28 10", **access(250)),
    ])


def test_fast_and_slow_nodes_from_sys(tmp_path):
    assert fast_and_slow(read_topology(sysfs=one_node(tmp_path / "one"))) is None
    assert fast_and_slow(read_topology(sysfs=two_nodes(tmp_path / "hmat", True))) == (0, 1)
    assert fast_and_slow(read_topology(sysfs=two_nodes(tmp_path / "plain", False))) == (0, 1)
    # HMAT decides over CPUs: a CPU-less node that is faster (HBM) is the fast one
    hbm = make_sysfs(tmp_path / "hbm", [
        dict(id=0, total_kb=4 << 20, free_kb=3 << 20, cpulist="0-1", distance="10 12",
             access0=dict(initiators=[0], read_latency=140, write_latency=140)),
        dict(id=1, total_kb=1 << 20, free_kb=1 << 20, cpulist="", distance="12 10",
             access0=dict(initiators=[0], read_latency=80, write_latency=80)),
    ])
    assert fast_and_slow(read_topology(sysfs=hbm)) == (1, 0)


def test_policies_of_each_variant_check_against_the_topology(tmp_path):
    from memplace.placement.policy import load
    from memplace.placement.policy_compile import prepare

    topo = read_topology(sysfs=two_nodes(tmp_path / "sys", True))
    exe = "/opt/app/bin/app"
    sites = [prof.Site((prof.Frame(exe, None, 0x1100),), allocations=1, bytes=48 * MIB, peak_live_bytes=48 * MIB,
                       reads=800 * MIB, writes=800 * MIB),
             prof.Site((prof.Frame(exe, None, 0x1200),), allocations=1, bytes=192 * MIB, peak_live_bytes=192 * MIB,
                       reads=0, writes=192 * MIB)]
    path = tmp_path / "profile.json"
    prof.save(prof.Profile("dhat", ["app"], sites, pid=1, clock_unit="instr"), path)
    policies = two_node_policies(path, (0, 1), 120 * MIB, tmp_path / "policies", topo)
    assert set(policies) == {"slow", "first-fit", "memplace"}
    for variant, policy in policies.items():
        prepare(policy, None, tmp_path / f"{variant}.mpc", topology=topo)  # raises on any error
    advised = load(policies["memplace"])
    assert advised.default == "slow" and advised.devices["fast"].nodes == [0]
    assert [r.device for r in advised.rules] == ["fast"]  # the hot table; the log stays on node 1
    first = load(policies["first-fit"])
    assert first.default == "fast" and first.devices["fast"].fallback == "slow"


@pytest.mark.parametrize("nodes, needle", [("0,7", "node 7 does not exist"), ("x", "expected FAST,SLOW"),
                                           ("0,0", "must differ")])
def test_bad_nodes_are_one_line_exit_2(nodes, needle, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "capacity" / "run.py"), "--nodes", nodes,
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
