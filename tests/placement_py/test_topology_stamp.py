"""The compile cache's topology key (placement/sysfs.py, read raw at every start): it must
change with everything a policy's checks and capacities read from /sys (nodes, their
MemTotal, huge page pools, THP, weighted interleave) and stay put when only free memory
moves (a key that changed at every start would never hit)."""

from __future__ import annotations

import shutil

import pytest

from fakesys import make_sysfs
from memplace.placement.sysfs import topology_stamp


def machine(root, **changes):
    nodes = [dict(id=0, total_kb=16 << 20, free_kb=12 << 20, cpulist="0-3", distance="10 21",
                  hugepages={2048: (64, 60)}),
             dict(id=1, total_kb=8 << 20, free_kb=8 << 20, cpulist="", distance="21 10",
                  hugepages={2048: (0, 0)})]
    for node in nodes:
        node.update(changes.pop(f"node{node['id']}", {}))
    kw = dict(pools={2048: (64, 60), 1048576: (0, 0)}, thp="always [madvise] never")
    kw.update(changes)
    return make_sysfs(root, nodes, **kw)


CHANGED = {
    "a node's MemTotal": dict(node1=dict(total_kb=(8 << 20) + 4)),
    "a node's pool": dict(node1=dict(hugepages={2048: (8, 8)})),
    "a node's new pool size": dict(node0=dict(hugepages={2048: (64, 60), 1048576: (0, 0)})),
    "the system's pool": dict(pools={2048: (64, 60), 1048576: (1, 1)}),
    "THP": dict(thp="[always] madvise never"),
    "weighted interleave": dict(weighted_interleave=True),
    "online nodes": dict(online="0\n"),
}


@pytest.mark.parametrize("what", CHANGED)
def test_the_stamp_changes_with_what_the_checks_read(tmp_path, what):
    base = topology_stamp(str(machine(tmp_path / "a")))
    changed = machine(tmp_path / "b", **CHANGED[what])
    assert topology_stamp(str(changed)) != base


def test_the_stamp_changes_with_the_nodes(tmp_path):
    root = machine(tmp_path)
    base = topology_stamp(str(root))
    shutil.rmtree(root / "devices/system/node/node1")
    assert topology_stamp(str(root)) != base


def test_free_memory_and_free_huge_pages_do_not_change_it(tmp_path):
    base = topology_stamp(str(machine(tmp_path / "a")))
    moved = machine(tmp_path / "b", node0=dict(free_kb=1 << 20, hugepages={2048: (64, 3)}),
                    pools={2048: (64, 3), 1048576: (0, 0)})
    assert topology_stamp(str(moved)) == base
