"""Where the machine's memory topology is in /sys, and a stamp of what a policy's checks read.

memplace.placement.devices reads and parses these paths; `topology_stamp` only reads the
values a compiled policy depends on (which nodes, their memory, huge page pools, THP,
weighted interleave), raw, to key the compile cache: it is on the start-up path of every
`memplace run --policy`, which must not pay for parsing the whole topology.
"""

from __future__ import annotations

import os

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
