"""`memplace advise --swap`: a plan for a machine that swaps under the memory limit.

A file device and swap both keep data on a disk, but they write different pages. Swap
writes a page when reclaim evicts it, and a page the program frees is simply dropped. A
file device's pages are page cache: every page the program dirties is written back (the
flusher writes all of a file's dirty pages, hot ones too, and a memory cgroup's reclaim
cannot write them itself), freed blocks stay dirty in the cache until written, and a page
reused after eviction is read back from the disk even when its old contents were dead.
Measured on OpenFOAM at 75% of its peak (docs/benchmarks.md): the file device wrote 4.7-5.3
GiB and read back 4.4-5 GiB where swap wrote 60 MiB and read 40 MiB, 3x the time. The
file device is still the better place for long-lived data written once and read in
streams (the kernel reads it back 8 MiB at a time where swap reads 32 KiB).

So with swap the plan is the solver's, changed in two ways:

* a site the solver left on a file device goes to `system` (the next allocator's
  anonymous memory, which the kernel swaps page by page) when it churns: it allocates at
  least CHURN times its peak of live bytes (temporaries freed and allocated again), or its
  estimated writes are at least CHURN times that peak (data rewritten in place); when its
  blocks are smaller than two of the disk's read-around windows (`read_ahead_kb` of the
  device holding the directory): read-around only pays for data streamed through large
  blocks, and a window over small ones reads in unrelated data and evicts hot pages for
  it (OpenFOAM at 75% with swap: its long-lived mesh data, blocks of 0.1-18 MiB under an
  8 MiB window, on the file device 6.2-6.9 s, in swappable memory 5.0-5.2 s, swap alone
  4.5-5.2 s); and every
  site of the file device does when the page cache model (`--shared-memory`) expects the
  file device's pages to stay in memory anyway (hit ratio at least RESIDENT): a file
  device then only adds its costs (page cache, write-back of every page written; spmv at
  100% of its peak: 0.48 s against swap's 0.31 s with its 96 MiB of column indices there);
* every limited device (the fast ones) gets `lock = true`, so the hot data the solver
  chose stays resident however much the rest is swapped; unless the model keeps it all in
  memory anyway (hit ratio at least RESIDENT), where there is nothing to protect and a
  locked page costs more to fault in (spmv at 100%: 1.7-2.1 s locked, 1.3-1.4 unlocked).

And when the model keeps everything in memory and the devices left holding sites are the
memory malloc uses anyway (`system_memory`: a numa device, unlocked, not interleaved, over
every node with memory; on a one-node machine node 0), the plan is the program as it is:
`default = "system"`, no devices, no rules (`identity`), which `memplace run` runs without
the runtime. A device on that memory gains nothing, and the runtime's own memory (arenas,
tables, 0.5-2 MiB) is what the limit does not have: at 100% of the plain run's peak the
placed run went over it and swapped (hotcold: 600 pages out, 63 major faults, 1.79 s
against swap's 1.64 s; spmv: 1.28 s against 0.86 s; docs/benchmarks.md).

    >>> from memplace.profiling.profile import Frame, Site
    >>> churns(Site((Frame("/app", None, 1),), allocations=40, bytes=400, peak_live_bytes=10))
    True
    >>> churns(Site((Frame("/app", None, 2),), allocations=1, bytes=10, peak_live_bytes=10, writes=10))
    False
"""

from __future__ import annotations

from memplace.advisor import solver as adv
from memplace.advisor.device_specs import DeviceSpec
from memplace.placement.sysfs import read_around as disk_read_around
from memplace.profiling.profile import Site
from memplace.units import format_size

CHURN = 2.0
RESIDENT = 0.95  # bench/capacity: the plans at 100% of the peak 0.99, at 75% and below 0.57 at most
SWAPPED = "system"


def churns(site: Site) -> bool:
    """Allocated, or (estimated) written, at least CHURN times its peak of live bytes."""
    peak = max(site.peak_live_bytes, 1)
    return site.bytes >= CHURN * peak or (site.writes or 0) >= CHURN * peak


def read_around(directory: str) -> int:
    """The read-ahead window (bytes) of the disk holding `directory`: what the kernel
    reads around a fault on a file mapping there. The kernel's default, 128 KiB, when /sys
    does not say (a filesystem on no block device, a directory that does not exist yet)."""
    found = disk_read_around(directory)
    return found[0] if found else 128 << 10


def small_blocks(site: Site, window: int) -> bool:
    """Blocks (bytes per allocation) smaller than two read-around windows."""
    return site.bytes < 2 * window * max(site.allocations, 1)


def memory_nodes() -> set[int] | None:
    """The machine's nodes with memory (/sys), None when it cannot be read."""
    from memplace.placement.devices import read_topology

    try:
        return {n.id for n in read_topology().nodes if n.mem_total > 0}
    except Exception:  # noqa: BLE001 - no /sys: nothing is known to be the same memory
        return None


def system_memory(d: DeviceSpec, nodes: set[int] | None) -> bool:
    """`d` is the memory malloc uses anyway: the built-in system device, or a numa device
    over every node with memory (`nodes`), unlocked and not interleaved (binding to all of
    them leaves the kernel's choice of node as it is)."""
    if d.builtin:
        return True
    t = d.table
    return (d.kind == "numa" and bool(nodes) and nodes <= set(t.get("nodes", ())) and not t.get("lock")
            and t.get("mode", "bind") in ("bind", "preferred", "preferred-many"))


def identity(advice: adv.Advice, specs: list[DeviceSpec], nodes: set[int] | None) -> bool:
    """When every site, spill and the default are on memory malloc uses anyway, make the
    plan the program as it is (module docstring): every site and the default on system,
    no devices. True when it did."""
    by_name = {d.name: d for d in specs}
    used = {advice.default} | {p.device for p in advice.placements} | \
           {p.spill.device for p in advice.placements if p.spill}
    if not all(name == SWAPPED or name in by_name and system_memory(by_name[name], nodes) for name in used):
        return False
    for p in advice.placements:
        p.device, p.spill = SWAPPED, None
        p.reason = "--swap: every site stays where malloc puts it (the plan is the program as it is)"
    advice.default = SWAPPED
    advice.default_cost = advice.cost  # the same memory: nothing to save over it
    specs[:] = [d for d in specs if d.builtin]
    advice.devices = [d for d in advice.devices if d.name == SWAPPED]  # none to show or write
    advice.peak = {}
    advice.notes.append(
        f"--swap: nothing to place: the page cache model keeps every site in memory and the devices holding them "
        f"({', '.join(sorted(used - {SWAPPED}))}) are the memory malloc uses anyway (every node with memory, "
        f"unlocked); the policy is the program as it is (default {SWAPPED}, no rules), and `memplace run` runs "
        f"it without the runtime, whose own memory the limit would have to hold")
    return True


def plan_for_swap(advice: adv.Advice, specs: list[DeviceSpec], nodes: set[int] | None = None) -> None:
    """Change `advice` and `specs` in place as the module docstring says; `nodes`: the
    machine's nodes with memory (default: read from /sys)."""
    windows = {d.name: read_around(d.table["path"]) for d in specs if d.kind == "file"}
    resident = advice.shared is not None and advice.shared.get("hit_ratio", 0.0) >= RESIDENT

    def why(p: adv.Placement) -> str | None:
        s = p.site
        if s.bytes >= CHURN * max(s.peak_live_bytes, 1):
            return f"allocated {s.bytes / max(s.peak_live_bytes, 1):.0f}x its peak"
        if churns(s):
            return "rewritten in place"
        if resident:
            return f"the page cache model keeps {advice.shared['hit_ratio']:.0%} of the file device in memory"
        if small_blocks(s, windows[p.device]):
            return (f"blocks of {format_size(s.bytes // max(s.allocations, 1))}, under two read-around windows "
                    f"({format_size(windows[p.device])} each)")
        return None

    if resident and advice.default in windows:  # what no rule matches: the same reason
        advice.default = SWAPPED
    moved = []
    for p in advice.placements:
        reason = why(p) if p.device in windows else None  # a spilled site: what does not fit goes there
        if reason:
            p.device = SWAPPED
            p.reason = (f"--swap: {reason}; on {SWAPPED} (anonymous memory, swapped page by page) rather than "
                        f"a file device, which writes back every page it dirties and frees")
            moved.append(p)
    locked = [] if resident else [d for d in specs if d.kind in ("numa", "hugepages") and d.model.capacity is not None]
    for d in locked:
        d.table["lock"] = True
    peak = sum(p.site.peak_live_bytes for p in moved)
    advice.notes.append(
        f"--swap: {len(moved):,} site(s) that churn, have small blocks{' or would stay in memory' if resident else ''} "
        f"({format_size(peak)} of site peaks) moved from the file device to "
        f"{SWAPPED}; locked: {', '.join(d.name for d in locked) or 'none'} (the modelled figures above are the "
        f"solver's plan before this)")
    if resident:
        identity(advice, specs, memory_nodes() if nodes is None else nodes)
