"""Placement policies: the TOML file people write, loaded into dataclasses and checked.

`load` reads a file and validates what needs no machine (types, names, the
fallback graph, site syntax); `check` adds what depends on this machine (nodes,
capacities, directories, huge page pools) and on the program (call sites). Each
problem is one line naming the file, the device or rule, and what is wrong.

>>> policy = load("policy.toml")                                   # doctest: +SKIP
>>> for p in check(policy, read_topology(), SiteResolver("./a.out")):  # doctest: +SKIP
...     print(p)
error: policy.toml: device 'hbm': node 1 does not exist on this machine (nodes: 0)
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from memplace.placement.devices import Topology
from memplace.errors import UserError
from memplace.inputs import POLICY_LIMIT, parse_toml, read_text
from memplace.placement.sites import SiteResolver, parse_frame
from memplace.placement.sysfs import READ_AROUND_WARN, read_around
from memplace.units import Percent, format_size, parse_capacity, parse_size, parse_size_range

SYSTEM = "system"  # the built-in device: the next allocator
KINDS = ("numa", "file", "hugepages", "system")
MODES = ("bind", "preferred", "preferred-many", "interleave", "weighted-interleave")
MAX_DEVICES = 63  # the compiled table holds 64, one of them "system"
MAX_FRAMES = 4
MAX_NODE = 1023

# Keys each kind of device accepts (besides "kind"); anything else is a typo worth reporting.
DEVICE_KEYS = {
    "numa": {"nodes", "mode", "capacity", "scope", "fallback", "lock"},
    "file": {"path", "capacity", "scope", "fallback"},
    "hugepages": {"pagesize", "nodes", "mode", "capacity", "scope", "fallback", "lock"},
    "system": {"capacity", "scope", "fallback"},
}
# Whom a capacity is for: each process alone, or every process of the job on the node.
SCOPES = ("process", "node")
RULE_KEYS = {"name", "site", "size", "device"}
TOP_KEYS = {"version", "default", "devices", "rules"}


@dataclass(frozen=True)
class Problem:
    """One finding; `message` is a single line that names the file and what is wrong."""

    level: str  # "error" or "warning"
    message: str

    def __post_init__(self):
        # names come from the user's file: a newline in one must not make two lines
        if any(c in self.message for c in "\n\r\t\x00"):
            object.__setattr__(self, "message", self.message.encode("unicode_escape").decode("ascii"))

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


@dataclass
class Device:
    name: str
    kind: str
    nodes: list[int] = field(default_factory=list)
    mode: str = "bind"
    capacity: int | Percent | None = None  # None: no limit
    scope: str = "process"  # "node": one capacity for every process of the job on the node
    fallback: str = SYSTEM
    fallback_given: bool = False  # the policy says where to go when this device cannot serve
    path: str | None = None  # file devices: absolute directory
    pagesize: int | None = None  # hugepages: None = the default huge page size
    transparent: bool = False  # hugepages: madvise(MADV_HUGEPAGE) on normal pages
    lock: bool = False  # numa, hugepages: pages stay resident once touched (never swapped)
    valid: bool = True  # False when loading found an error in it (then it is not checked further)


@dataclass
class Rule:
    index: int  # 1-based position in the file
    name: str = ""
    site: list[str] = field(default_factory=list)  # innermost frame first
    size: tuple[int, int] | None = None  # inclusive
    device: str = SYSTEM
    valid: bool = True

    @property
    def label(self) -> str:
        return f"rule {self.index}" + (f" ({self.name!r})" if self.name else "")


@dataclass
class Policy:
    path: str
    version: int = 1
    default: str = SYSTEM
    devices: dict[str, Device] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # found while loading

    def device_names(self) -> list[str]:
        return [*self.devices, SYSTEM]


# -- loading ------------------------------------------------------------------


def load(path: str | os.PathLike) -> Policy:
    """Read and validate a policy file. UserError if it cannot be read or is not TOML;
    other problems are collected in `policy.problems`."""
    text = read_text(path, "policy", POLICY_LIMIT)
    return from_dict(parse_toml(text, os.fspath(path), "policy"), os.fspath(path))


def from_dict(table: dict, path: str) -> Policy:
    """Build a Policy from parsed TOML (also used by the advisor, which writes dicts)."""
    policy = Policy(path=path)
    base = os.path.dirname(os.path.abspath(path))
    err = _Reporter(policy)

    for key in table:
        if key not in TOP_KEYS:
            err(f"unknown key {key!r} (expected: {', '.join(sorted(TOP_KEYS))})")
    version = table.get("version", 1)
    if version != 1 or isinstance(version, bool):
        err(f"version {version!r} is not supported (this memplace reads version = 1)")
    default = table.get("default", SYSTEM)
    if not isinstance(default, str):
        err(f"default = {default!r} must be a device name")
        default = SYSTEM
    policy.default = default

    devices = table.get("devices", {})
    if not isinstance(devices, dict):
        err("[devices] must be a table of devices ([devices.NAME])")
        devices = {}
    for name, spec in devices.items():
        if name == SYSTEM:
            err('"system" is the built-in device (the next allocator) and cannot be redefined', "device 'system'")
            continue
        if not name or "\0" in name:
            err(f"device name {name!r} must be non-empty and without NUL characters")
            continue
        policy.devices[name] = _load_device(name, spec, base, err)
    if len(policy.devices) > MAX_DEVICES:
        err(f"{len(policy.devices)} devices; at most {MAX_DEVICES}")

    rules = table.get("rules", [])
    if not isinstance(rules, list):
        err("rules must be an array of tables ([[rules]])")
        rules = []
    for i, spec in enumerate(rules, 1):
        policy.rules.append(_load_rule(i, spec, err))

    _check_references(policy, err)
    return policy


def places_nothing(policy: Policy) -> bool:
    """Every allocation goes to `system`, the next allocator: a valid policy whose default and
    rules all name it (what `memplace advise --swap` writes when there is nothing to place).
    `memplace run` runs the program without the runtime then: it would only add its own
    memory and time."""
    return (not any(p.level == "error" for p in policy.problems) and policy.default == SYSTEM
            and all(r.device == SYSTEM for r in policy.rules))


class _Reporter:
    """Records error problems prefixed with the file name, optionally marking an item invalid."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def __call__(self, message: str, where: str = "", item: Device | Rule | None = None, level: str = "error"):
        prefix = f"{self.policy.path}: " + (f"{where}: " if where else "")
        self.policy.problems.append(Problem(level, prefix + message))
        if item is not None and level == "error":
            item.valid = False


def _load_device(name: str, spec: object, base: str, err: _Reporter) -> Device:
    where = f"device {name!r}"
    if not isinstance(spec, dict):
        dev = Device(name, SYSTEM, valid=False)
        err("must be a table ([devices.NAME] with kind = ...)", where, dev)
        return dev
    kind = spec.get("kind")
    dev = Device(name, kind if kind in KINDS else SYSTEM)
    if not _is_text(name):
        err("the name must be Unicode text", where, dev)
        return dev
    if kind not in KINDS:
        err(f"kind = {kind!r} is not one of {', '.join(KINDS)}", where, dev)
        return dev
    for key in spec:
        if key != "kind" and key not in DEVICE_KEYS[kind]:
            err(f"unknown key {key!r} for kind {kind!r} (expected: {', '.join(sorted(DEVICE_KEYS[kind]))})", where, dev)

    def value(parse, key):
        try:
            return parse(spec[key], what=f"{err.policy.path}: {where}: {key}")
        except UserError as e:
            err.policy.problems.append(Problem("error", str(e)))
            dev.valid = False
            return None

    if "nodes" in spec:
        nodes = spec["nodes"]
        if (
            not isinstance(nodes, list)
            or not nodes
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_NODE for n in nodes)
        ):
            err(f"nodes = {nodes!r} must be a non-empty list of node ids (0..{MAX_NODE}), e.g. [0, 1]", where, dev)
        else:
            dev.nodes = sorted(set(nodes))
    elif kind == "numa":
        err("a numa device needs nodes = [...]", where, dev)
    if "mode" in spec:
        if spec["mode"] not in MODES:
            err(f"mode = {spec['mode']!r} is not one of {', '.join(MODES)}", where, dev)
        elif kind == "hugepages" and "nodes" not in spec:
            err("mode needs nodes = [...]", where, dev)
        else:
            dev.mode = spec["mode"]
            if dev.mode == "preferred" and len(dev.nodes) > 1:
                err("mode 'preferred' takes one node; use 'preferred-many' for several", where, dev)
    if "capacity" in spec:
        dev.capacity = value(parse_capacity, "capacity")
        if dev.capacity == 0:
            err("capacity must be above 0 (leave it out for no limit)", where, dev)
        if isinstance(dev.capacity, Percent) and kind == SYSTEM:
            err("a percentage capacity needs nodes, a directory or a huge page pool to be a share of", where, dev)
    if "scope" in spec:
        if spec["scope"] not in SCOPES:
            err(f"scope = {spec['scope']!r} is not one of {', '.join(SCOPES)}", where, dev)
        elif "capacity" not in spec:
            err("scope needs a capacity to apply to", where, dev)
        else:
            dev.scope = spec["scope"]
    if "fallback" in spec:
        if not isinstance(spec["fallback"], str):
            err(f"fallback = {spec['fallback']!r} must be a device name", where, dev)
        else:
            dev.fallback, dev.fallback_given = spec["fallback"], True
    if "lock" in spec:
        if not isinstance(spec["lock"], bool):
            err(f"lock = {spec['lock']!r} must be true or false", where, dev)
        else:
            dev.lock = spec["lock"]
    if kind == "file":
        path = spec.get("path")
        if not isinstance(path, str) or not path or "\0" in path:
            err('a file device needs path = "/a/directory"', where, dev)
        else:
            # Relative to the policy file, so a policy and its directories can move together.
            dev.path = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
    if kind == "hugepages" and "pagesize" in spec:
        if spec["pagesize"] == "transparent":
            dev.transparent = True
        else:
            size = value(parse_size, "pagesize")
            if size is not None and (size < 4096 or size & (size - 1)):
                err(f"pagesize = {spec['pagesize']!r} must be a power of two of at least 4KiB, or \"transparent\"", where, dev)
            else:
                dev.pagesize = size
    return dev


def _is_text(s: str) -> bool:
    """Unicode scalar values only, as in TOML: a dict made in Python (the advisor's, or an
    API user's) may hold a lone surrogate, which the compiled file cannot encode."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _load_rule(index: int, spec: object, err: _Reporter) -> Rule:
    rule = Rule(index)
    if not isinstance(spec, dict):
        err("must be a table ([[rules]] with device = ...)", rule.label, rule)
        return rule
    name = spec.get("name", "")
    if not isinstance(name, str) or "\0" in name or not _is_text(name):
        err(f"name = {name!r} must be a string of Unicode text without NUL characters", rule.label, rule)
    else:
        rule.name = name
    where = rule.label
    for key in spec:
        if key not in RULE_KEYS:
            err(f"unknown key {key!r} (expected: {', '.join(sorted(RULE_KEYS))})", where, rule)
    device = spec.get("device")
    if not isinstance(device, str):
        err("needs device = \"NAME\"", where, rule)
    else:
        rule.device = device
    if "site" in spec:
        site = spec["site"]
        if isinstance(site, str):
            site = [site]
        if not isinstance(site, list) or not 1 <= len(site) <= MAX_FRAMES:
            err(f"site must be 1 to {MAX_FRAMES} frames, innermost first, e.g. [\"main.c:52\"]", where, rule)
        else:
            for frame in site:
                try:
                    parse_frame(frame)
                except ValueError as e:
                    err(str(e), where, rule)
            rule.site = [f.strip() if isinstance(f, str) else f for f in site]
    if "size" in spec:
        try:
            rule.size = parse_size_range(spec["size"], what=f"{err.policy.path}: {where}: size")
        except UserError as e:
            err.policy.problems.append(Problem("error", str(e)))
            rule.valid = False
    if "site" not in spec and "size" not in spec:
        err("needs a site, a size, or both", where, rule)
    return rule


def _check_references(policy: Policy, err: _Reporter) -> None:
    names = policy.device_names()
    if policy.default not in names:
        err(f"default = {policy.default!r} is not a device (devices: {', '.join(names)})")
    for dev in policy.devices.values():
        if dev.fallback not in names:
            err(f"fallback = {dev.fallback!r} is not a device (devices: {', '.join(names)})", f"device {dev.name!r}", dev)
    for rule in policy.rules:
        if rule.valid and rule.device not in names:
            err(f"device = {rule.device!r} is not a device (devices: {', '.join(names)})", rule.label, rule)
    for cycle in _fallback_cycles(policy):
        err(f"fallback cycle: {' -> '.join(cycle)}")
        for name in cycle:
            policy.devices[name].valid = False


def _fallback_cycles(policy: Policy) -> list[list[str]]:
    """Each cycle of the fallback graph once, as the path that closes it (a -> b -> a)."""
    cycles, done = [], set()
    for start in policy.devices:
        path: list[str] = []
        name = start
        while name in policy.devices and name not in done and name not in path:
            path.append(name)
            name = policy.devices[name].fallback
        if name in path:
            cycles.append(path[path.index(name):] + [name])
        done.update(path)
    return cycles


# -- checking against the machine and the program --------------------------------


def check(policy: Policy, topology: Topology, resolver: SiteResolver | None = None) -> list[Problem]:
    """All problems: those found while loading, those of this machine, those of the call sites.

    Without a resolver, sites are checked without a program (SYMBOL+0xOFF and
    FILE:LINE frames then cannot be resolved: warnings).
    """
    problems = list(policy.problems)
    for dev in policy.devices.values():
        if dev.valid:
            problems += _check_device(policy, dev, topology)
    if resolver is None:
        resolver = SiteResolver(None, extra_modules=site_modules(policy))
    problems += [Problem(level, msg) for level, msg in resolver.problems]
    for rule in policy.rules:
        if rule.valid:
            for frame in rule.site:
                res = resolver.resolve(frame)
                if res.warning:
                    problems.append(Problem("warning", f"{policy.path}: {rule.label}: {frame}: {res.warning}"))
    return problems


def site_modules(policy: Policy) -> list[str]:
    """Modules the policy names by absolute path: searched for symbols and lines too."""
    out = []
    for rule in policy.rules:
        for frame in rule.site:
            try:
                spec = parse_frame(frame)
            except ValueError:
                continue
            if spec.kind == "module" and os.path.isabs(spec.name) and spec.name not in out:
                out.append(spec.name)
    return out


def _check_device(policy: Policy, dev: Device, topo: Topology) -> list[Problem]:
    out: list[Problem] = []
    where = f"{policy.path}: device {dev.name!r}: "

    def unusable(message: str) -> None:
        # A device that cannot bind is an error unless the policy says where to fall back.
        if dev.fallback_given:
            out.append(Problem("warning", f"{where}{message}; its allocations go to {dev.fallback!r}"))
        else:
            out.append(Problem("error", f"{where}{message} (set fallback = \"system\" to fall back instead)"))

    present = [n for n in dev.nodes if topo.node(n) is not None]
    ids = ", ".join(str(n.id) for n in topo.nodes)
    for n in dev.nodes:
        node = topo.node(n)
        if node is None:
            unusable(f"node {n} does not exist on this machine (nodes: {ids})")
        elif node.mem_total == 0:
            unusable(f"node {n} has no memory")
    if dev.mode == "weighted-interleave" and not topo.weighted_interleave:
        unusable("this kernel has no weighted interleave (Linux 6.9 or later)")

    total = sum(topo.node(n).mem_total for n in present)
    what = f"node {present[0]}" if len(present) == 1 else f"nodes {', '.join(map(str, present))} together"
    if dev.kind == "numa" and isinstance(dev.capacity, int) and present == dev.nodes and dev.capacity > total:
        out.append(Problem("error", f"{where}capacity {format_size(dev.capacity)} is larger than {what} ({format_size(total)})"))

    if dev.kind == "hugepages":
        out += _check_hugepages(dev, topo, where, unusable)
    if dev.kind == "file" and dev.path:
        out += _check_directory(dev, where)
    return out


def _check_hugepages(dev: Device, topo: Topology, where: str, unusable) -> list[Problem]:
    out = []
    if dev.transparent:
        if topo.thp is None:
            out.append(Problem("warning", f"{where}this kernel has no transparent huge pages; normal pages are used"))
        elif topo.thp == "never":
            out.append(Problem("warning", f"{where}transparent huge pages are disabled (never); normal pages are used"))
        return out
    sizes = topo.hugepage_sizes()
    size = dev.pagesize or (sizes[0] if sizes else None)
    pool = next((p for p in topo.hugepages if p.pagesize == size), None)
    if pool is None:
        have = ", ".join(format_size(s) for s in sizes) or "none"
        unusable(f"no {format_size(size) if size else 'huge page'} pool on this machine (pools: {have})")
        return out
    pool_bytes = pool.total * pool.pagesize
    if pool.total == 0:
        out.append(Problem("warning", f"{where}the {format_size(pool.pagesize)} huge page pool is empty "
                                      f"(nr_hugepages = 0); its allocations go to {dev.fallback!r}"))
    elif isinstance(dev.capacity, int) and dev.capacity > pool_bytes:
        out.append(Problem("warning", f"{where}capacity {format_size(dev.capacity)} is larger than the "
                                      f"{format_size(pool.pagesize)} huge page pool ({format_size(pool_bytes)})"))
    return out


def _check_directory(dev: Device, where: str) -> list[Problem]:
    path = dev.path
    if not os.path.exists(path):
        return [Problem("error", f"{where}directory {path} does not exist")]
    if not os.path.isdir(path):
        return [Problem("error", f"{where}{path} is not a directory")]
    try:
        # What the runtime does: create a file there (then unlink it).
        fd, name = tempfile.mkstemp(dir=path, prefix=".memplace-check-")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        return [Problem("error", f"{where}cannot create a file in {path}: {e.strerror}")]
    st = os.statvfs(path)
    size, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    cap = dev.capacity.of(size) if isinstance(dev.capacity, Percent) else dev.capacity
    if cap and cap > size:
        return [Problem("error", f"{where}capacity {format_size(cap)} is larger than the filesystem of {path} ({format_size(size)})")]
    out = []
    if cap and cap > free:
        out.append(Problem("warning", f"{where}capacity {format_size(cap)} is more than the free space in {path} ({format_size(free)})"))
    around = read_around(path)
    if around and around[0] > READ_AROUND_WARN:
        out.append(Problem("warning", f"{where}the disk under {path} reads {format_size(around[0])} around every "
                                      f"page fault ({around[1]}): under memory pressure that evicts data the program "
                                      f"is using (docs/policy.md, 'Read-around'); the kernel's default, as root: "
                                      f"echo 128 > {around[1]}"))
    return out


def capacity_bytes(dev: Device, topo: Topology) -> int:
    """The device's capacity in bytes for the compiled policy; 0 = no limit.

    Percentages are of the nodes' MemTotal (numa; transparent huge pages, all nodes
    when none are named), of the huge page pool on the device's nodes or the whole
    machine (hugepages), or of the filesystem (file).
    """
    if dev.capacity is None:
        return 0
    if isinstance(dev.capacity, int):
        return dev.capacity
    if dev.kind == "file" and dev.path and os.path.isdir(dev.path):
        st = os.statvfs(dev.path)
        total = st.f_blocks * st.f_frsize
    elif dev.kind == "hugepages" and not dev.transparent:
        sizes = topo.hugepage_sizes()
        size = dev.pagesize or (sizes[0] if sizes else 0)
        nodes = [topo.node(n) for n in dev.nodes if topo.node(n)]
        pools = [p for node in nodes for p in node.hugepages] if dev.nodes else topo.hugepages
        total = sum(p.total * p.pagesize for p in pools if p.pagesize == size)
    else:
        # numa, and transparent huge pages (on their nodes, or anywhere when none are named)
        nodes = dev.nodes or [n.id for n in topo.nodes]
        total = sum(topo.node(n).mem_total for n in nodes if topo.node(n))
    # A share of nothing (absent nodes, empty pool) still must not read as "no limit".
    return max(dev.capacity.of(total), 1)
