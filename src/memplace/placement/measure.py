"""Measured latency and bandwidth of memory devices (`memplace devices --measure`).

The measuring is done by `memplace-measure` (tools/measure.c, installed beside the
runtime): one device per run, one JSON document. Results are cached per machine
(/etc/machine-id, else the boot id) and device, under the cache root, so the advisor can
read them on a machine whose firmware gives no HMAT figures.

>>> t = target_for("numa:0")                                        # doctest: +SKIP
>>> m = measure(t)                                                  # doctest: +SKIP
>>> m["latency_ns"], m["bandwidth_gbps"]["read"]                    # doctest: +SKIP
(141.2, 34.77)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass

from memplace.cache import cache_root, make_dir, write_atomic
from memplace.errors import UserError
from memplace.placement.sysfs import read_around

FORMAT = 2  # of the cache file; a different one is ignored (2: file devices with read-around)
TOOL = "memplace-measure"


@dataclass(frozen=True)
class Target:
    """One device to measure: its name in tables, the tool's device text, the cache key."""

    name: str
    spec: str  # numa:N | file:DIR | hugepages[:SIZE|:transparent] | anonymous
    identity: str


def machine_id() -> str:
    """What tells this machine from others sharing a cache directory (a cluster's home)."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id", "/proc/sys/kernel/random/boot_id"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text:
            return text.replace("-", "")
    return "unknown"


def tool_path() -> str:
    from memplace.launch.runtime_path import runtime_path

    path = os.path.join(os.path.dirname(runtime_path()), TOOL)
    if not os.access(path, os.X_OK):
        raise UserError(f"{path}: the measuring program is not installed; reinstall memplace with `pip install .`")
    return path


def target_for(spec: str, name: str | None = None, topology=None) -> Target:
    """A device text (numa:N, file:DIR, hugepages[:SIZE|:transparent], system) -> Target;
    UserError naming the device when it does not exist here."""
    kind, _, arg = spec.partition(":")
    name = name or spec
    if kind == "numa":
        if not arg.isdigit():
            raise UserError(f"{name}: measuring needs a single node (numa:N), not {spec!r}")
        from memplace.placement.devices import read_topology

        topo = topology or read_topology()
        if topo.node(int(arg)) is None:
            raise UserError(f"{name}: no NUMA node {arg} on this machine "
                            f"(nodes: {', '.join(str(n.id) for n in topo.nodes)})")
        return Target(name, f"numa:{int(arg)}", f"numa:{int(arg)}")
    if kind == "file":
        if not os.path.isabs(arg):
            raise UserError(f"{name}: file devices need an absolute directory (file:/mnt/pmem0)")
        if not os.path.isdir(arg):
            raise UserError(f"{name}: {arg}: {'not a directory' if os.path.exists(arg) else 'no such directory'}")
        real = os.path.realpath(arg)
        return Target(name, f"file:{real}", file_identity(real))
    if kind == "hugepages":
        return Target(name, spec, hugepages_identity(arg, what=name))
    if kind == "system":
        return Target(name, "anonymous", "anonymous")
    raise UserError(f"{name}: cannot measure {spec!r} (numa:N, file:DIR, hugepages[:SIZE|:transparent], system)")


def file_identity(real: str) -> str:
    """A file device's cache key: the directory, its filesystem (a directory remounted on
    another disk is another device) and the disk's read-around, which sets the cold
    figures (bench/capacity's file device: 3-4x between 8 MiB and 128 KiB)."""
    around = read_around(real)
    return f"file:{real}@{os.stat(real).st_dev}" + (f"@ra{around[0] // 1024}k" if around else "")


def machine_targets(topology) -> tuple[list[Target], list[str]]:
    """Every NUMA node with memory, transparent huge pages, a huge page pool with room for
    the buffer; and a line for each device left out."""
    targets = [Target(f"node{n.id}", f"numa:{n.id}", f"numa:{n.id}") for n in topology.nodes if n.mem_total]
    skipped = []
    if topology.thp in ("always", "madvise"):
        targets.append(Target("thp", "hugepages:transparent", "hugepages:transparent"))
    for pool in topology.hugepages:
        size = f"{pool.pagesize // 1024}KiB"
        if pool.free * pool.pagesize >= 256 << 20:
            targets.append(Target(f"hugepages-{size}", f"hugepages:{size}", f"hugepages:{pool.pagesize}"))
        else:
            skipped.append(f"hugepages {size}: {pool.free} page(s) free, too few to measure (256 MiB needed)")
    return targets, skipped


def hugepages_identity(arg: str, *, what: str) -> str:
    """hugepages, hugepages:2MiB, hugepages:2048KiB -> one key per page size (the default
    size is /proc/meminfo's Hugepagesize); hugepages:transparent is its own."""
    if arg == "transparent":
        return "hugepages:transparent"
    if arg:
        from memplace.units import parse_size

        return f"hugepages:{parse_size(arg, what=what)}"
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("Hugepagesize:"))
        return f"hugepages:{kb * 1024}"
    except (OSError, StopIteration, ValueError, IndexError):
        return "hugepages:default"


# ---- the cache ------------------------------------------------------------------------------


def cache_path() -> str:
    return os.path.join(cache_root(), "measured", f"{machine_id()}.json")


def _load() -> dict:
    try:
        with open(cache_path()) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("devices"), dict):
        return {}
    return doc["devices"]


def cached(identity: str, *, quick_ok: bool = True) -> dict | None:
    """The cached measurement of a device on this machine, or None."""
    entry = _load().get(identity)
    if not isinstance(entry, dict) or (entry.get("quick") and not quick_ok):
        return None
    return entry


def _store(identity: str, result: dict) -> None:
    path = cache_path()
    if not make_dir(os.path.dirname(path)):
        return
    devices = _load()
    devices[identity] = result
    doc = {"format": FORMAT, "machine": machine_id(), "devices": devices}
    write_atomic(path, (json.dumps(doc, indent=1) + "\n").encode())


# ---- measuring ------------------------------------------------------------------------------


def measure(target: Target, *, quick: bool = False, remeasure: bool = False, say=None) -> dict:
    """The device's measurement (from the cache unless `remeasure`); "cached" tells which.
    `say(line)` receives a progress line. UserError (the tool's one line) when the device
    cannot be set up."""
    if not remeasure:
        hit = cached(target.identity, quick_ok=quick)
        if hit is not None:
            if say:
                say(f"{target.name} ({target.spec}): measured {hit.get('measured_at', '?')} (cached; "
                    f"--remeasure to measure again)")
            return {**hit, "cached": True}
    if say:
        say(f"measuring {target.name} ({target.spec}){' quickly' if quick else ''}: a few seconds…")
    cmd = [tool_path(), *(["--quick"] if quick else []), target.spec]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        line = (r.stderr.strip().splitlines() or [f"{TOOL} failed with status {r.returncode}"])[-1]
        raise UserError(f"{target.name}: {line.removeprefix(TOOL + ': ')}")
    try:
        result = json.loads(r.stdout)
    except ValueError:
        raise UserError(f"{target.name}: {TOOL} printed no JSON ({r.stdout[:60]!r})") from None
    if target.spec.startswith("file:"):  # what its cold figures were measured with
        around = read_around(target.spec[5:])
        result["read_around"] = around[0] if around else None
    result.update(
        name=target.name,
        identity=target.identity,
        quick=quick,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        wall_seconds=round(time.monotonic() - t0, 2),
    )
    _store(target.identity, result)
    return {**result, "cached": False}


def cached_for(kind: str, arg: str) -> dict | None:
    """The cached measurement of a device as a policy describes it (numa with one node,
    file, hugepages, system), or None: never an error (the device may be on another machine)."""
    try:
        if kind == "numa" and len(arg) == 1:
            return cached(f"numa:{arg[0]}")
        if kind == "file":
            return cached(file_identity(os.path.realpath(arg)))
        if kind == "hugepages":
            return cached(hugepages_identity(str(arg or ""), what="pagesize"))
        if kind == "system":
            return cached("anonymous")
    except (OSError, UserError):
        return None
    return None


def advisor_figures(result: dict) -> tuple[float, float | None, float | None, str]:
    """(latency ns, read and write bandwidth bytes/s, which figures) the advisor takes from
    a measurement: a file device's cold figures (what a capacity tier costs), else the
    figures of memory that stays resident."""
    cold = result.get("cold")
    src, which = (cold, "cold (after eviction)") if isinstance(cold, dict) else (result, "resident")
    bw = src.get("bandwidth_gbps") or {}
    read = bw.get("read")
    write = bw.get("write")
    return (float(src["latency_ns"]), read * 1e9 if read else None, write * 1e9 if write else None, which)
