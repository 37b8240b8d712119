"""Topology from /sys: fake trees with one and four nodes, and this machine."""

import json
import re
from pathlib import Path

import pytest

from fakesys import make_sysfs
from memplace.placement.devices import parse_list, read_topology
from memplace.errors import UserError

GiB = 1 << 30


def test_one_node_machine(sys1):
    topo = read_topology(sys1)
    assert [n.id for n in topo.nodes] == [0]
    node = topo.node(0)
    assert (node.mem_total, node.mem_free) == (8 * GiB, 6 * GiB)
    assert node.cpus == [0, 1] and not node.cpu_less
    assert node.distances == {0: 10} and node.tier == 4 and node.access == []
    assert [(p.pagesize, p.total, p.free) for p in node.hugepages] == [(2 << 20, 16, 10)]
    assert [(p.pagesize, p.total, p.free) for p in topo.hugepages] == [(2 << 20, 16, 10), (GiB, 0, 0)]
    assert topo.thp == "madvise" and topo.weighted_interleave is False and node.interleave_weight is None
    assert topo.node(1) is None


def test_four_nodes_with_cpu_less_hbm_and_cxl(sys4):
    topo = read_topology(sys4)
    assert [n.id for n in topo.nodes] == [0, 1, 2, 3]
    assert [n.cpu_less for n in topo.nodes] == [False, False, True, True]
    assert topo.node(1).cpus == [4, 5, 6, 7]
    assert topo.node(3).mem_total == 64 * GiB and topo.node(3).mem_free == 60 * GiB
    assert topo.node(2).distances == {0: 13, 1: 28, 2: 10, 3: 31}
    assert [n.tier for n in topo.nodes] == [4, 4, 4, 22]
    hbm, cxl = topo.node(2).access[0], topo.node(3).access[0]
    assert (hbm.klass, hbm.initiators, hbm.read_latency_ns, hbm.write_latency_ns) == (0, [0], 80, 85)
    assert (hbm.read_bandwidth_mbps, hbm.write_bandwidth_mbps) == (400000, 380000)
    assert cxl.initiators == [0, 1] and cxl.read_latency_ns == 250 and cxl.write_bandwidth_mbps == 25000
    assert topo.node(1).access == []
    assert [(p.pagesize, p.total, p.free) for p in topo.node(0).hugepages] == [(2 << 20, 64, 64), (GiB, 2, 1)]
    assert topo.thp == "always" and topo.weighted_interleave
    assert [n.interleave_weight for n in topo.nodes] == [1, 1, 4, 1]


def test_distances_follow_the_online_node_ids_when_there_are_holes(tmp_path):
    root = make_sysfs(tmp_path, [
        dict(id=0, total_kb=1024, free_kb=512, cpulist="0", distance="10 20"),
        dict(id=2, total_kb=2048, free_kb=2048, cpulist="", distance="20 10"),
    ])
    topo = read_topology(root)
    assert topo.node(2).distances == {0: 20, 2: 10} and topo.node(2).cpu_less
    assert topo.node(1) is None


def test_missing_optional_files_leave_fields_empty(tmp_path):
    root = make_sysfs(tmp_path, [dict(id=0, total_kb=1024, free_kb=1, cpulist="0", distance="10")], thp=None)
    topo = read_topology(root)
    assert topo.thp is None and topo.hugepages == [] and topo.node(0).tier is None


def test_a_tree_without_nodes_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no NUMA nodes found"):
        read_topology(tmp_path)


def test_junk_in_a_node_file_names_the_file(tmp_path):
    root = make_sysfs(tmp_path, [dict(id=0, total_kb=1024, free_kb=1, cpulist="zero", distance="10")])
    with pytest.raises(UserError, match=r"node0/cpulist: unexpected contents 'zero'"):
        read_topology(root)


def test_kernel_list_format():
    assert parse_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_list("") == []


def test_devices_json_has_every_field(cli, sys4):
    r = cli("devices", "--json", "--sysfs", sys4)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [n["id"] for n in data["nodes"]] == [0, 1, 2, 3]
    n2 = data["nodes"][2]
    assert n2["cpu_less"] and n2["cpulist"] == "" and n2["tier"] == 4
    assert n2["access"][0]["read_latency_ns"] == 80 and n2["access"][0]["initiators"] == [0]
    assert n2["distances"] == {"0": 13, "1": 28, "2": 10, "3": 31}
    assert data["hugepages"][1] == {"pagesize": GiB, "total": 2, "free": 1, "surplus": 0, "reserved": 0}
    assert data["thp"] == "always" and data["weighted_interleave"] is True


def test_devices_table_shows_cpu_less_nodes_and_hmat(cli, sys4):
    r = cli("devices", "--sysfs", sys4)
    assert r.returncode == 0, r.stderr
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if line.startswith("│")}
    assert "CPU-less" in rows["3"] and "250 ns" in rows["3"] and "30000 MB/s" in rows["3"]
    assert "0-3" in rows["0"] and "64GiB" in rows["3"] and "22" in rows["3"]
    assert "Transparent huge pages: always" in r.stdout and "node 2: 4" in r.stdout


def test_devices_on_this_machine(cli):
    """The real /sys: whatever nodes this machine has, as the kernel lists them."""
    node_dirs = sorted(int(p.name[4:]) for p in Path("/sys/devices/system/node").glob("node[0-9]*"))
    if not node_dirs:
        pytest.skip("this kernel exposes no NUMA nodes in /sys")
    r = cli("devices", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [n["id"] for n in data["nodes"]] == node_dirs
    for n in data["nodes"]:
        node = Path(f"/sys/devices/system/node/node{n['id']}")
        assert n["cpulist"] == node.joinpath("cpulist").read_text().strip()
        # Memory can be hot-plugged or ballooned between two reads: compare orders of magnitude.
        total_kb = int(re.search(r"MemTotal:\s+(\d+)", node.joinpath("meminfo").read_text()).group(1))
        assert 0.5 <= n["mem_total"] / (total_kb * 1024) <= 2
        assert 0 <= n["mem_free"] <= n["mem_total"]
    table = cli("devices")
    assert table.returncode == 0 and "Memory nodes" in table.stdout
