"""The machine's memory devices, read from /sys.

Every NUMA node with its memory, CPUs (none: HBM in flat mode, CXL, GPU memory),
HMAT latency and bandwidth, memory tier and distances; huge page pools; THP mode.
Everything is read below a configurable root so tests can build a fake /sys tree.

>>> topo = read_topology()                      # doctest: +SKIP
>>> [(n.id, n.cpulist or "CPU-less", n.mem_total) for n in topo.nodes]  # doctest: +SKIP
[(0, '0-1', 4389560320)]
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from memplace.errors import UserError
from memplace.placement.sysfs import HUGEPAGES_DIR, NODE_DIR, THP_ENABLED, TIER_DIR, WEIGHTED_INTERLEAVE_DIR


@dataclass
class Access:
    """HMAT performance from a node's accessN/initiators (ACPI HMAT; absent on most machines).

    Latencies in nanoseconds, bandwidths in MB/s, as the kernel reports them.
    """

    klass: int  # 0: any initiator, 1: CPU initiators only
    initiators: list[int]
    read_latency_ns: int | None = None
    write_latency_ns: int | None = None
    read_bandwidth_mbps: int | None = None
    write_bandwidth_mbps: int | None = None


@dataclass
class HugePagePool:
    """A huge page pool of one page size, system-wide or on one node."""

    pagesize: int
    total: int  # pages
    free: int
    surplus: int = 0
    reserved: int | None = None  # system-wide pools only


@dataclass
class Node:
    """One NUMA node. `cpus` empty means a CPU-less node (HBM flat mode, CXL, GPU memory)."""

    id: int
    mem_total: int  # bytes
    mem_free: int
    cpulist: str = ""
    cpus: list[int] = field(default_factory=list)
    distances: dict[int, int] = field(default_factory=dict)  # node id -> SLIT distance
    tier: int | None = None  # memory_tierN; lower is faster
    access: list[Access] = field(default_factory=list)
    hugepages: list[HugePagePool] = field(default_factory=list)
    interleave_weight: int | None = None  # weighted interleave weight of this node (Linux 6.9+)

    @property
    def cpu_less(self) -> bool:
        return not self.cpus


@dataclass
class Topology:
    """What `memplace devices` shows and what `policy check` validates against."""

    sysfs: str
    nodes: list[Node]
    hugepages: list[HugePagePool] = field(default_factory=list)
    thp: str | None = None  # always | madvise | never; None when the kernel lacks THP
    weighted_interleave: bool = False  # MPOL_WEIGHTED_INTERLEAVE (Linux 6.9+)

    def node(self, node_id: int) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def hugepage_sizes(self) -> list[int]:
        return sorted(p.pagesize for p in self.hugepages)

    def to_json(self) -> dict:
        d = asdict(self)
        for n, node in zip(d["nodes"], self.nodes):
            n["cpu_less"] = node.cpu_less
            n["distances"] = {str(k): v for k, v in node.distances.items()}
        return d


def parse_list(text: str) -> list[int]:
    """The kernel's list format: "0-3,8,10-11" -> [0, 1, 2, 3, 8, 10, 11].

    >>> parse_list("0-2,5"), parse_list("")
    ([0, 1, 2, 5], [])
    """
    out: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def read_topology(sysfs: str | Path = "/sys") -> Topology:
    """Read the memory topology below `sysfs`; UserError if it has no NUMA nodes."""
    root = Path(sysfs)
    node_dir = root / NODE_DIR
    ids = sorted(int(m.group(1)) for p in _listdir(node_dir) if (m := re.fullmatch(r"node(\d+)", p.name)))
    if not ids:
        raise UserError(f"{node_dir}: no NUMA nodes found (is {root} a sysfs tree?)")
    # The distance file lists one value per online node, in node order.
    online = _read_list(node_dir / "online") or ids
    tiers = _read_tiers(root / TIER_DIR)
    nodes = [_read_node(node_dir / f"node{i}", i, online, tiers.get(i)) for i in ids]
    for node in nodes:
        node.interleave_weight = _read_int(root / WEIGHTED_INTERLEAVE_DIR / f"node{node.id}")
    return Topology(
        sysfs=str(root),
        nodes=nodes,
        hugepages=_read_pools(root / HUGEPAGES_DIR, system=True),
        thp=_read_thp(root / THP_ENABLED),
        weighted_interleave=(root / WEIGHTED_INTERLEAVE_DIR).is_dir(),
    )


def _read_node(path: Path, node_id: int, online: list[int], tier: int | None) -> Node:
    meminfo = _read_meminfo(path / "meminfo")
    cpulist = (_read(path / "cpulist") or "").strip()
    cpus = _read_list(path / "cpulist")
    distances = _read_list(path / "distance", sep=" ")
    return Node(
        id=node_id,
        mem_total=meminfo.get("MemTotal", 0),
        mem_free=meminfo.get("MemFree", 0),
        cpulist=cpulist,
        cpus=cpus,
        distances=dict(zip(online, distances)),
        tier=tier,
        access=[a for k in (0, 1) if (a := _read_access(path / f"access{k}", k))],
        hugepages=_read_pools(path / "hugepages", system=False),
    )


def _read_meminfo(path: Path) -> dict[str, int]:
    """ "Node 0 MemTotal:  4286680 kB" lines -> {"MemTotal": bytes}."""
    out = {}
    for line in (_read(path) or "").splitlines():
        m = re.match(r"Node\s+\d+\s+(\w+):\s+(\d+)(\s*kB)?", line)
        if m:
            out[m.group(1)] = int(m.group(2)) * (1024 if m.group(3) else 1)
    return out


def _read_access(path: Path, klass: int) -> Access | None:
    init = path / "initiators"
    if not init.is_dir():
        return None
    return Access(
        klass=klass,
        initiators=sorted(int(m.group(1)) for p in _listdir(init) if (m := re.fullmatch(r"node(\d+)", p.name))),
        read_latency_ns=_read_int(init / "read_latency"),
        write_latency_ns=_read_int(init / "write_latency"),
        read_bandwidth_mbps=_read_int(init / "read_bandwidth"),
        write_bandwidth_mbps=_read_int(init / "write_bandwidth"),
    )


def _read_tiers(path: Path) -> dict[int, int]:
    """node id -> tier number, from memory_tierN/nodelist."""
    out = {}
    for p in _listdir(path):
        m = re.fullmatch(r"memory_tier(\d+)", p.name)
        if m:
            for node in _read_list(p / "nodelist"):
                out[node] = int(m.group(1))
    return out


def _read_pools(path: Path, *, system: bool) -> list[HugePagePool]:
    pools = []
    for p in _listdir(path):
        m = re.fullmatch(r"hugepages-(\d+)kB", p.name)
        if m:
            pools.append(
                HugePagePool(
                    pagesize=int(m.group(1)) * 1024,
                    total=_read_int(p / "nr_hugepages") or 0,
                    free=_read_int(p / "free_hugepages") or 0,
                    surplus=_read_int(p / "surplus_hugepages") or 0,
                    reserved=_read_int(p / "resv_hugepages") if system else None,
                )
            )
    return sorted(pools, key=lambda pool: pool.pagesize)


def _read_thp(path: Path) -> str | None:
    m = re.search(r"\[(\w+)\]", _read(path) or "")
    return m.group(1) if m else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _read_list(path: Path, sep: str = ",") -> list[int]:
    """A kernel list file ("0-3,8") or, with sep=" ", a row of numbers; UserError on junk."""
    text = _read(path) or ""
    try:
        return [int(x) for x in text.split()] if sep == " " else parse_list(text)
    except ValueError:
        raise UserError(f"{path}: unexpected contents {text.strip()[:40]!r}") from None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text.split()[0]) if text and text.split() else None
    except ValueError:
        return None


def _listdir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except OSError:
        return []
