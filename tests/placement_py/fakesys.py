"""Fake /sys trees for topology tests: only the files memplace reads, with made-up values."""

from __future__ import annotations

from pathlib import Path


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_sysfs(root: Path, nodes: list[dict], tiers: dict[int, str] | None = None,
               pools: dict[int, tuple[int, int]] | None = None, thp: str | None = "always [madvise] never",
               weighted_interleave: bool = False, online: str | None = None) -> Path:
    """Build a sysfs tree under root.

    nodes: dicts with id, total_kb, free_kb, cpulist ("" = CPU-less), distance ("10 21"),
    optional access0 = {initiators: [ids], read_latency: ns, ...}, hugepages = {size_kb: (nr, free)}.
    pools: system-wide huge pages {size_kb: (nr, free)}.
    """
    node_dir = root / "devices/system/node"
    node_dir.mkdir(parents=True, exist_ok=True)
    _write(node_dir / "online", online if online is not None else ",".join(str(n["id"]) for n in nodes) + "\n")
    for n in nodes:
        d = node_dir / f"node{n['id']}"
        _write(d / "meminfo", (
            f"Node {n['id']} MemTotal:       {n['total_kb']} kB\n"
            f"Node {n['id']} MemFree:        {n['free_kb']} kB\n"
            f"Node {n['id']} MemUsed:        {n['total_kb'] - n['free_kb']} kB\n"
            f"Node {n['id']} HugePages_Total:     0\n"))
        _write(d / "cpulist", n["cpulist"] + "\n")
        _write(d / "distance", n["distance"] + "\n")
        if "access0" in n:
            init = d / "access0/initiators"
            init.mkdir(parents=True)
            a = dict(n["access0"])
            for i in a.pop("initiators"):
                (init / f"node{i}").symlink_to(node_dir / f"node{i}")
            for key, value in a.items():
                _write(init / key, f"{value}\n")
        for size_kb, (nr, free) in n.get("hugepages", {}).items():
            hp = d / f"hugepages/hugepages-{size_kb}kB"
            _write(hp / "nr_hugepages", f"{nr}\n")
            _write(hp / "free_hugepages", f"{free}\n")
            _write(hp / "surplus_hugepages", "0\n")
    for tier, nodelist in (tiers or {}).items():
        _write(root / f"devices/virtual/memory_tiering/memory_tier{tier}/nodelist", nodelist + "\n")
    for size_kb, (nr, free) in (pools or {}).items():
        hp = root / f"kernel/mm/hugepages/hugepages-{size_kb}kB"
        for name, value in (("nr_hugepages", nr), ("free_hugepages", free), ("resv_hugepages", 0),
                            ("surplus_hugepages", 0)):
            _write(hp / name, f"{value}\n")
    if thp is not None:
        _write(root / "kernel/mm/transparent_hugepage/enabled", thp + "\n")
    if weighted_interleave:
        wi = root / "kernel/mm/mempolicy/weighted_interleave"
        wi.mkdir(parents=True)
        for n in nodes:
            _write(wi / f"node{n['id']}", f"{n.get('weight', 1)}\n")
    return root


def one_node(root: Path) -> Path:
    """A laptop: one node, 2 CPUs, 8 GiB, a 2 MiB pool of 16 pages."""
    return make_sysfs(root, [
        dict(id=0, total_kb=8 << 20, free_kb=6 << 20, cpulist="0-1", distance="10",
             hugepages={2048: (16, 10)}),
    ], tiers={4: "0"}, pools={2048: (16, 10), 1048576: (0, 0)})


def four_nodes(root: Path) -> Path:
    """Two sockets with DRAM, a CPU-less HBM node and a CPU-less CXL node, with HMAT and tiers."""
    return make_sysfs(root, [
        dict(id=0, total_kb=16 << 20, free_kb=12 << 20, cpulist="0-3", distance="10 21 13 28",
             access0=dict(initiators=[0], read_latency=90, write_latency=95,
                          read_bandwidth=100000, write_bandwidth=90000),
             hugepages={2048: (64, 64), 1048576: (2, 1)}),
        dict(id=1, total_kb=16 << 20, free_kb=15 << 20, cpulist="4-7", distance="21 10 28 13",
             hugepages={2048: (0, 0), 1048576: (0, 0)}),
        dict(id=2, total_kb=8 << 20, free_kb=8 << 20, cpulist="", distance="13 28 10 31", weight=4,
             access0=dict(initiators=[0], read_latency=80, write_latency=85,
                          read_bandwidth=400000, write_bandwidth=380000)),
        dict(id=3, total_kb=64 << 20, free_kb=60 << 20, cpulist="", distance="28 13 31 10",
             access0=dict(initiators=[0, 1], read_latency=250, write_latency=270,
                          read_bandwidth=30000, write_bandwidth=25000)),
    ], tiers={4: "0-2", 22: "3"}, pools={2048: (64, 64), 1048576: (2, 1)},
        thp="[always] madvise never", weighted_interleave=True)
