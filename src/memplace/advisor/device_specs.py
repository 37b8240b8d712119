"""Devices as the user describes them (`--device NAME=SPEC`) or as the machine reports them.

SPEC: a kind — numa:N[+M|-K], file:DIR, hugepages[:SIZE], system — then key=value items:
latency, read-latency, write-latency (ns), bandwidth, read-bandwidth, write-bandwidth
(GB/s), capacity, mode, fallback. Without any, one device per NUMA node with its HMAT
attributes. A figure neither given nor in HMAT comes from `memplace devices --measure`'s
cached measurement of the device on this machine. Each becomes a policy [devices.NAME]
table and a cost model (solver.Device).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from memplace.advisor import solver as adv
from memplace.errors import UserError
from memplace.placement.policy import MAX_NODE
from memplace.units import Percent, format_ns, format_size, parse_capacity

NS_UNITS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
BW_UNITS = {"gb/s": 1e9, "gib/s": 2**30, "mb/s": 1e6, "mib/s": 2**20, "b/s": 1.0}
MODES = ("bind", "preferred", "preferred-many", "interleave", "weighted-interleave")


@dataclass
class DeviceSpec:
    """A device as the user described it: its policy table and its cost model."""

    name: str
    kind: str  # numa | file | hugepages | system
    table: dict[str, Any] = field(default_factory=dict)  # [devices.NAME] keys except capacity/fallback
    model: adv.Device | None = None
    capacity_text: str | None = None
    fallback: str | None = None
    ranks: int = 1  # ranks per node sharing the capacity (scope "node" when above 1)
    notes: list[str] = field(default_factory=list)  # where figures came from (measured ones)

    @property
    def builtin(self) -> bool:
        """The built-in "system" device: never written under [devices]."""
        return self.name == "system"


def _number(text: str, units: dict[str, float], default_unit: str, what: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z/]*)\s*", text)
    unit = (m.group(2) or default_unit).lower() if m else ""
    if not m or unit not in units:
        raise UserError(f"{what}: {text!r} is not a number with a unit ({', '.join(units)})")
    value = float(m.group(1)) * units[unit]
    if not 0 < value < 1e30:  # a cost model divides by bandwidths and multiplies latencies
        raise UserError(f"{what}: {text!r} must be above 0 and finite")
    return value


def parse_nodes(text: str, what: str) -> list[int]:
    """'0', '0-3', '0+2', '0-1+4' -> node ids."""
    nodes: list[int] = []
    for part in text.split("+"):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise UserError(f"{what}: {text!r} is not a node list (examples: 0, 0-3, 0+2)")
        lo, hi = (int(g) if len(g) <= 6 else MAX_NODE + 1 for g in (m.group(1), m.group(2) or m.group(1)))
        if not lo <= hi <= MAX_NODE:
            raise UserError(f"{what}: {text!r}: node ids go from 0 to {MAX_NODE}, each range upwards")
        nodes.extend(range(lo, hi + 1))
    return nodes


def check_nodes(d: DeviceSpec, what: str) -> None:
    """The machine has the device's nodes (what `memplace policy check` would say of the policy)."""
    from memplace.placement.devices import read_topology

    topo = read_topology()
    missing = [n for n in d.table.get("nodes", []) if topo.node(n) is None]
    if missing:
        have = ", ".join(str(n.id) for n in topo.nodes)
        raise UserError(f"{what}: node {missing[0]} does not exist on this machine (nodes: {have})")


def parse_device(text: str) -> DeviceSpec:
    """`NAME=numa:1,latency=80ns,capacity=2GiB` -> DeviceSpec (UserError naming the problem).

    >>> d = parse_device("hbm=numa:0,latency=80ns,capacity=2GiB")
    >>> d.kind, d.table["nodes"], d.model.read_latency, d.model.capacity
    ('numa', [0], 80.0, 2147483648)
    """
    what = f"--device {text!r}"
    name, eq, spec = text.partition("=")
    name = name.strip()
    if not eq or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UserError(f"{what}: expected NAME=KIND[,key=value...] (example: hbm=numa:1,latency=80ns,capacity=2GiB)")
    items = [i.strip() for i in spec.split(",") if i.strip()]
    kind_text = items.pop(0) if items and "=" not in items[0] else ("system" if name == "system" else "")
    kind, _, arg = kind_text.partition(":")
    d = DeviceSpec(name=name, kind=kind)
    if kind == "numa":
        d.table = {"kind": "numa", "nodes": parse_nodes(arg, what), "mode": "bind"}
        check_nodes(d, what)
    elif kind == "file":
        if not arg.startswith("/"):
            raise UserError(f"{what}: file devices need an absolute directory (file:/mnt/pmem0)")
        d.table = {"kind": "file", "path": arg}
    elif kind == "hugepages":
        d.table = {"kind": "hugepages"}
        if arg:
            d.table["pagesize"] = arg
    elif kind == "system":
        d.table = {} if name == "system" else {"kind": "system"}
    else:
        raise UserError(f"{what}: unknown kind {kind_text!r} (numa:N, file:DIR, hugepages[:SIZE], system)")
    lat: dict[str, float] = {}
    bw: dict[str, float] = {}
    capacity: int | None = None
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq:
            raise UserError(f"{what}: {item!r} is not key=value")
        if key in ("latency", "read-latency", "write-latency"):
            v = _number(value, NS_UNITS, "ns", f"{what} {key}")
            for k in ("read", "write"):
                if key == "latency" or key.startswith(k):
                    lat[k] = v
        elif key in ("bandwidth", "read-bandwidth", "write-bandwidth"):
            v = _number(value, BW_UNITS, "gb/s", f"{what} {key}")
            for k in ("read", "write"):
                if key == "bandwidth" or key.startswith(k):
                    bw[k] = v
        elif key == "capacity":
            if d.builtin:
                raise UserError(f"{what}: the built-in system device has no capacity (name the device otherwise)")
            c = parse_capacity(value, what=f"{what} capacity")
            d.capacity_text = value
            capacity = c.of(_total_bytes(d, what)) if isinstance(c, Percent) else c
        elif key == "mode":
            if kind not in ("numa", "hugepages") or value not in MODES:
                raise UserError(f"{what}: mode {value!r} (one of {', '.join(MODES)}, numa/hugepages only)")
            d.table["mode"] = value
        elif key == "fallback":
            d.fallback = value
        else:
            raise UserError(f"{what}: unknown key {key!r}")
    d.model = adv.Device(
        name,
        read_latency=lat.get("read"),
        write_latency=lat.get("write"),
        read_bandwidth=bw.get("read"),
        write_bandwidth=bw.get("write"),
        capacity=capacity,
        page_cache=kind == "file",
    )
    return d


def _total_bytes(d: DeviceSpec, what: str) -> int:
    """What a percentage capacity is a share of: the nodes' memory."""
    if d.kind != "numa":
        raise UserError(f"{what}: a percentage capacity needs a numa device (give bytes, e.g. 2GiB)")
    from memplace.placement.devices import read_topology

    topo = read_topology()
    total = sum(n.mem_total for n in topo.nodes if n.id in d.table["nodes"])
    if not total:
        raise UserError(f"{what}: node(s) {d.table['nodes']} not on this machine")
    return total


def devices_from_machine() -> list[DeviceSpec]:
    """One device per NUMA node, with HMAT latency/bandwidth; the nodes with CPUs take
    whatever does not fit, CPU-less ones (HBM, CXL) are limited to their memory."""
    from memplace.placement.devices import read_topology

    topo = read_topology()
    out = []
    for n in topo.nodes:
        acc = next((a for a in n.access if a.read_latency_ns or a.read_bandwidth_mbps), None)
        d = DeviceSpec(name=f"node{n.id}", kind="numa", table={"kind": "numa", "nodes": [n.id], "mode": "bind"})
        cap = n.mem_total if n.cpu_less else None
        if cap is not None:
            d.capacity_text = format_size(cap)
        if acc is None:
            d.model = adv.Device(d.name, capacity=cap)
            if not fill_measured(d):
                raise UserError(
                    f"node {n.id} has no HMAT latency/bandwidth on this machine and was not measured: run "
                    f"`memplace devices --measure`, or describe the devices with "
                    f"--device NAME=numa:{n.id},latency=NS[,capacity=SIZE]"
                )
            out.append(d)
            continue
        mb = 1e6
        d.model = adv.Device(
            d.name,
            read_latency=acc.read_latency_ns,
            write_latency=acc.write_latency_ns,
            read_bandwidth=acc.read_bandwidth_mbps * mb if acc.read_bandwidth_mbps else None,
            write_bandwidth=acc.write_bandwidth_mbps * mb if acc.write_bandwidth_mbps else None,
            capacity=cap,
        )
        out.append(d)
    return out


def fill_measured(d: DeviceSpec) -> bool:
    """The figures a device lacks (neither given nor from HMAT), from `memplace devices
    --measure`'s cached measurement on this machine; a note says which and when. False when
    the device was not measured here (or nothing was missing)."""
    from memplace.placement import measure

    m = d.model
    missing = [k for k in ("read_latency", "write_latency", "read_bandwidth", "write_bandwidth")
               if getattr(m, k) is None]
    if not missing:
        return False
    arg = d.table.get("nodes") if d.kind == "numa" else d.table.get("path") if d.kind == "file" else \
        d.table.get("pagesize", "") if d.kind == "hugepages" else ""
    result = measure.cached_for(d.kind, arg)
    if result is None:
        return False
    latency, read_bw, write_bw, which = measure.advisor_figures(result)
    figures = {"read_latency": latency, "write_latency": latency, "read_bandwidth": read_bw,
               "write_bandwidth": write_bw}
    filled = {k: figures[k] for k in missing if figures[k] is not None}
    if not filled:
        return False
    d.model = adv.Device(**{**m.__dict__, **filled})
    if d.kind == "file" and m.resident is None:  # what its pages cost while the page cache holds them
        bw = result.get("bandwidth_gbps") or {}
        d.model = adv.Device(**{**d.model.__dict__, "resident": adv.Device(
            f"{d.name} (resident)", read_latency=result.get("latency_ns"), write_latency=result.get("latency_ns"),
            read_bandwidth=bw["read"] * 1e9 if bw.get("read") else None,
            write_bandwidth=bw["write"] * 1e9 if bw.get("write") else None)})
    shown = []
    if "read_latency" in filled or "write_latency" in filled:
        shown.append(f"latency {format_ns(latency)}")
    if read_bw and "read_bandwidth" in filled:
        shown.append(f"read {read_bw / 1e9:.3g} GB/s")
    if write_bw and "write_bandwidth" in filled:
        shown.append(f"write {write_bw / 1e9:.3g} GB/s")
    quick = ", --quick" if result.get("quick") else ""
    if result.get("read_around") is not None:  # the disk's, which the cold figures depend on
        quick += f", read-around {format_size(result['read_around'])}"
    d.notes.append(f"{d.name}: {', '.join(shown)} measured on this machine ({which}, single thread{quick}) "
                   f"by `memplace devices --measure` at {result.get('measured_at', '?')}")
    return True


def apply_capacities(devices: list[DeviceSpec], overrides: tuple[str, ...]) -> None:
    """`--capacity NAME=SIZE` (SIZE may be "none" for no limit)."""
    by_name = {d.name: d for d in devices}
    for text in overrides:
        name, eq, value = text.partition("=")
        if not eq:
            raise UserError(f"--capacity {text!r}: expected NAME=SIZE (example: hbm=2GiB)")
        d = by_name.get(name)
        if d is None:
            raise UserError(f"--capacity {text!r}: no device named {name!r} (devices: {', '.join(by_name)})")
        if value.strip().lower() in ("none", "unlimited"):
            cap, d.capacity_text = None, None
        else:
            c = parse_capacity(value, what=f"--capacity {name}")
            cap = c.of(_total_bytes(d, f"--capacity {name}")) if isinstance(c, Percent) else c
            d.capacity_text = value
        d.model = adv.Device(**{**d.model.__dict__, "capacity": cap})


def share_among_ranks(devices: list[DeviceSpec], ranks: int) -> None:
    """`--ranks-per-node N`: the ranks of a node share each capacity (policy scope "node").
    Profiles give each process's own peaks, so each rank is planned with 1/N of it; the
    policy keeps the node's capacity and the runtime enforces it for the ranks together."""
    if ranks <= 1:
        return
    for d in devices:
        if d.model.capacity is not None:
            d.ranks = ranks
            d.model = adv.Device(**{**d.model.__dict__, "capacity": d.model.capacity // ranks})
