"""Where the machine's memory topology is in /sys, a stamp of what a policy's checks read,
and the read-around of the disk under a file device.

memplace.placement.devices reads and parses these paths; `topology_stamp` only reads the
values a compiled policy depends on (which nodes, their memory, huge page pools, THP,
weighted interleave), raw, to key the compile cache: it is on the start-up path of every
`memplace run --policy`, which must not pay for parsing the whole topology.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

NODE_DIR = "devices/system/node"
TIER_DIR = "devices/virtual/memory_tiering"
HUGEPAGES_DIR = "kernel/mm/hugepages"
THP_ENABLED = "kernel/mm/transparent_hugepage/enabled"
WEIGHTED_INTERLEAVE_DIR = "kernel/mm/mempolicy/weighted_interleave"


def topology_stamp(root: str = "/sys") -> list:
    """Nodes online, THP mode, weighted interleave, the system's huge page pools, and per
    node its MemTotal line and pools: equal stamps, equal checks."""
    node_dir = os.path.join(root, NODE_DIR)
    nodes = sorted(n for n in _listdir(node_dir) if n.startswith("node") and n[4:].isdigit())
    return [_read(os.path.join(node_dir, "online")), _read(os.path.join(root, THP_ENABLED)),
            os.path.isdir(os.path.join(root, WEIGHTED_INTERLEAVE_DIR)),
            _pools(os.path.join(root, HUGEPAGES_DIR)),
            [[n, _mem_total(os.path.join(node_dir, n, "meminfo")),
              _pools(os.path.join(node_dir, n, "hugepages"))] for n in nodes]]


def _pools(path: str) -> list:
    return [[p, _read(os.path.join(path, p, "nr_hugepages"))]
            for p in sorted(_listdir(path)) if p.startswith("hugepages-")]


def _mem_total(path: str) -> str | None:
    text = _read(path) or ""
    return next((line for line in text.splitlines() if "MemTotal:" in line), None)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


# Above this, a file device under memory pressure evicts what the program uses to make room
# for what it does not (OpenFOAM at half its peak: 3-4x slower at 8 MiB than at the
# kernel's default 128 KiB, docs/policy.md).
READ_AROUND_WARN = 1 << 20


def read_around(path: str, root: str = "/sys", mounts: str = "/proc/self/mounts",
                _depth: int = 0) -> tuple[int, str] | None:
    """The kernel's read-around for page faults on files in directory `path`, in bytes,
    and the sysfs file that sets it (the disk's read_ahead_kb): a fault on a page of a
    file mapping that is not in memory reads that much around it. Found by the device
    number (the bdi, or the disk queue of a partition), for btrfs through its own bdi
    (at least 4 MiB) and for overlayfs through its upper directory. None on a filesystem
    mounted with DAX, and where /sys does not say (tmpfs: no block device)."""
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return None
    mount = _mount_of(os.path.realpath(path), mounts)
    if mount and any(o in ("dax", "dax=always") for o in mount.options):
        return None  # DAX maps the device itself: no page cache, nothing read around
    name = f"{os.major(dev)}:{os.minor(dev)}"
    block = os.path.join(root, "dev/block", name)
    if os.path.exists(os.path.join(block, "partition")):  # a partition's queue is its disk's
        block = os.path.dirname(os.path.realpath(block))
    candidates = [os.path.join(root, "class/bdi", name, "read_ahead_kb"),
                  os.path.join(block, "queue/read_ahead_kb")]
    if mount and mount.fstype == "btrfs":
        candidates += _btrfs_bdi(mount.source, root)
    if mount and mount.fstype == "overlay" and _depth < 4:
        upper = next((o[9:] for o in mount.options if o.startswith("upperdir=")), None)
        if upper:
            return read_around(upper, root, mounts, _depth + 1)
    for candidate in candidates:
        text = _read(candidate)
        if text is not None and text.strip().isdigit():
            return int(text) * 1024, candidate
    return None


@dataclass
class Mount:
    source: str
    point: str
    fstype: str
    options: list[str]


def _mount_of(path: str, mounts: str) -> Mount | None:
    """The mount holding `path`: the longest mount point that is a prefix of it."""
    best = None
    for line in (_read(mounts) or "").splitlines():
        parts = [_unescape(p) for p in line.split()]
        if len(parts) < 4:
            continue
        point = parts[1]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point)):
            best = Mount(parts[0], point, parts[2], parts[3].split(","))
    return best


def _unescape(field: str) -> str:
    """A /proc/mounts field: a space, tab, newline or backslash is written \\ooo (octal)."""
    if "\\" not in field:  # most fields: every line of /proc/mounts is read at each start
        return field
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _btrfs_bdi(source: str, root: str) -> list[str]:
    """btrfs's own bdi's read_ahead_kb for the filesystem on device `source`: the
    filesystem in /sys/fs/btrfs whose devices include it (their `dev` files hold the
    device number)."""
    try:
        rdev = os.stat(source).st_rdev
    except OSError:
        return []
    number = f"{os.major(rdev)}:{os.minor(rdev)}"
    base = os.path.join(root, "fs/btrfs")
    for fs in sorted(_listdir(base)):
        devices = os.path.join(base, fs, "devices")
        if any((_read(os.path.join(devices, d, "dev")) or "").strip() == number for d in _listdir(devices)):
            return [os.path.join(base, fs, "bdi", "read_ahead_kb")]
    return []
