"""The compiled policy: the small binary file the runtime reads (docs/policy.md).

Layouts are declared once, as tables, below; `compile_policy` writes them and
`decode` reads and validates them (the same checks runtime/os/policy.c makes).

>>> problems = prepare("policy.toml", "./a.out", "/tmp/p.mpc")   # doctest: +SKIP
>>> decode(open("/tmp/p.mpc", "rb").read()).devices[0].name       # doctest: +SKIP
'dram'
"""

from __future__ import annotations

import itertools
import os
import struct
import zlib
from dataclasses import dataclass

from memplace.placement.devices import Topology, read_topology
from memplace.errors import UserError
from memplace.placement.policy import SYSTEM, Policy, Problem, capacity_bytes, check, load, site_modules
from memplace.placement.sites import ResolvedFrame, SiteResolver
from memplace.units import U64_MAX

MAGIC = b"MPLCPOL\0"
VERSION = 1
NO_STRING = 0xFFFFFFFF
END_OF_CHAIN = -1  # fallback: the next allocator
MAX_DEVICES, MAX_MODULES, MAX_RULES, MAX_FRAMES = 64, 4096, 65536, 4
MAX_EXPANSION = 256  # compiled rules one TOML rule may become (lines with several ranges)

KIND_CODES = {"system": 0, "numa": 1, "file": 2, "hugepages": 3}
MODE_CODES = {"bind": 0, "preferred": 1, "interleave": 2, "weighted-interleave": 3, "preferred-many": 4}
FLAG_HUGETLB = 1 << 0  # mmap(MAP_HUGETLB)
FLAG_THP = 1 << 1  # madvise(MADV_HUGEPAGE)
FLAG_NODE_SCOPE = 1 << 2  # the capacity is shared by the job's processes on the node
FLAG_LOCK = 1 << 3  # mlock2(MLOCK_ONFAULT): touched pages stay resident, never swapped
FLAG_PAGESHIFT = 8  # bits 8..15: log2(huge page size), 0 = the default size
NODEMASK_WORDS = 16


class Layout:
    """A little-endian record declared as (field, struct code) pairs."""

    def __init__(self, name: str, fields: list[tuple[str, str]], size: int):
        self.name = name
        self.fields = fields
        self.struct = struct.Struct("<" + "".join(code for _, code in fields))
        assert self.struct.size == size, (name, self.struct.size)
        self.size = size

    def pack(self, **values) -> bytes:
        flat = []
        for name, code in self.fields:
            v = values[name]
            flat.extend(v if code[:-1].isdigit() and code[-1] != "s" else [v])
        return self.struct.pack(*flat)

    def unpack(self, data: bytes, offset: int = 0) -> dict:
        flat = list(self.struct.unpack_from(data, offset))
        out = {}
        for name, code in self.fields:
            n = int(code[:-1]) if code[:-1].isdigit() and code[-1] != "s" else 1
            out[name] = tuple(flat[:n]) if n > 1 else flat[0]
            del flat[:n]
        return out


# The file format, in one place (docs/policy.md shows the same tables).
HEADER = Layout("header", [
    ("magic", "8s"), ("version", "I"), ("header_size", "I"),
    ("ndevices", "I"), ("nmodules", "I"), ("nrules", "I"), ("default_device", "I"),
    ("devices_off", "I"), ("modules_off", "I"), ("rules_off", "I"),
    ("strtab_off", "I"), ("strtab_size", "I"), ("crc32", "I"), ("file_size", "Q"),
], 64)
DEVICE = Layout("device", [
    ("kind", "I"), ("mode", "I"), ("capacity", "Q"), ("fallback", "i"),
    ("name_off", "I"), ("path_off", "I"), ("flags", "I"), ("nodemask", f"{NODEMASK_WORDS}Q"),
], 160)
MODULE = Layout("module", [("path_off", "I"), ("build_id_off", "I"), ("reserved", "Q")], 16)
FRAME = Layout("frame", [("module", "I"), ("reserved", "I"), ("lo", "Q"), ("hi", "Q")], 24)
RULE = Layout("rule", [
    ("device", "I"), ("nframes", "I"), ("size_min", "Q"), ("size_max", "Q"),
    ("frames", f"{MAX_FRAMES * FRAME.size}s"), ("name_off", "I"), ("reserved", "I"),
], 128)


# -- decoded form ------------------------------------------------------------------


@dataclass(frozen=True)
class CDevice:
    name: str
    kind: str
    mode: str
    capacity: int
    fallback: int
    path: str | None
    flags: int
    nodes: tuple[int, ...]


@dataclass(frozen=True)
class CModule:
    path: str  # "" = the main executable
    build_id: str | None


@dataclass(frozen=True)
class CFrame:
    module: int
    lo: int
    hi: int


@dataclass(frozen=True)
class CRule:
    device: int
    size_min: int
    size_max: int
    frames: tuple[CFrame, ...]
    name: str


@dataclass(frozen=True)
class CompiledPolicy:
    default_device: int
    devices: tuple[CDevice, ...]
    modules: tuple[CModule, ...]
    rules: tuple[CRule, ...]

    def to_json(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


class CompiledPolicyError(ValueError):
    """The bytes are not a valid compiled policy; the message says why."""


# -- writing -------------------------------------------------------------------------


class _Strings:
    """The string table: offset 0 is "", each string stored once, NUL-terminated."""

    def __init__(self):
        self.data = bytearray(b"\0")
        self.offsets = {"": 0}

    def add(self, s: str) -> int:
        if s not in self.offsets:
            self.offsets[s] = len(self.data)
            self.data += s.encode("utf-8") + b"\0"
        return self.offsets[s]


def _align8(n: int) -> int:
    return (n + 7) & ~7


def compile_policy(policy: Policy, topology: Topology, resolver: SiteResolver) -> bytes:
    """The compiled file for a policy without errors (run `check` first). UserError on limits."""
    strings = _Strings()
    names = [*policy.devices, SYSTEM]  # "system" always last: default/rules may name it
    index = {name: i for i, name in enumerate(names)}

    devices = []
    for name in names:
        dev = policy.devices.get(name)
        if dev is None:  # the built-in "system"
            devices.append(_device_record(strings, name, "system", "bind", 0, END_OF_CHAIN, None, 0, []))
            continue
        fallback = END_OF_CHAIN if dev.fallback == SYSTEM else index[dev.fallback]
        flags = 0
        if dev.kind == "hugepages":
            if dev.transparent:
                flags = FLAG_THP
            else:
                shift = dev.pagesize.bit_length() - 1 if dev.pagesize else 0
                flags = FLAG_HUGETLB | (shift << FLAG_PAGESHIFT)
        if dev.scope == "node":
            flags |= FLAG_NODE_SCOPE
        if dev.lock:
            flags |= FLAG_LOCK
        mode = dev.mode if dev.kind in ("numa", "hugepages") else "bind"
        devices.append(_device_record(strings, name, dev.kind, mode, capacity_bytes(dev, topology),
                                      fallback, dev.path if dev.kind == "file" else None, flags, dev.nodes))

    modules: dict[tuple[str, str | None], int] = {}

    def module_index(frame: ResolvedFrame) -> int:
        key = ("" if frame.module.main else frame.module.path, frame.module.build_id)
        return modules.setdefault(key, len(modules))

    rules = []
    for rule in policy.rules:
        alternatives = [resolver.resolve(f).frames for f in rule.site]
        if any(not alts for alts in alternatives):
            continue  # a frame that resolves nowhere: `check` warned, the rule is left out
        combos = list(itertools.islice(itertools.product(*alternatives), MAX_EXPANSION + 1))
        if len(combos) > MAX_EXPANSION:
            raise UserError(f"{policy.path}: {rule.label}: its site resolves to more than {MAX_EXPANSION} address "
                            f"combinations; name fewer or more precise frames")
        lo, hi = rule.size or (0, U64_MAX)
        for combo in combos:
            if any(f.hi > U64_MAX for f in combo):  # a symbol's address plus the frame's offset
                raise UserError(f"{policy.path}: {rule.label}: a frame's address is above 2^64-1")
            frames = b"".join(FRAME.pack(module=module_index(f), reserved=0, lo=f.lo, hi=f.hi) for f in combo)
            frames += bytes(FRAME.size * (MAX_FRAMES - len(combo)))
            rules.append(RULE.pack(device=index[rule.device], nframes=len(combo), size_min=lo, size_max=hi,
                                   frames=frames, name_off=strings.add(rule.name), reserved=0))

    module_records = [MODULE.pack(path_off=strings.add(path),
                                  build_id_off=strings.add(bid) if bid else NO_STRING, reserved=0)
                      for (path, bid) in modules]
    if len(devices) > MAX_DEVICES or len(modules) > MAX_MODULES or len(rules) > MAX_RULES:
        raise UserError(f"{policy.path}: too large to compile ({len(devices)} devices, {len(modules)} modules, "
                        f"{len(rules)} rules; at most {MAX_DEVICES}, {MAX_MODULES}, {MAX_RULES})")

    devices_off = HEADER.size
    modules_off = _align8(devices_off + DEVICE.size * len(devices))
    rules_off = _align8(modules_off + MODULE.size * len(module_records))
    strtab_off = _align8(rules_off + RULE.size * len(rules))
    body = bytearray(strtab_off - HEADER.size + len(strings.data))
    for off, records in ((devices_off, devices), (modules_off, module_records), (rules_off, rules)):
        blob = b"".join(records)
        body[off - HEADER.size: off - HEADER.size + len(blob)] = blob
    body[strtab_off - HEADER.size:] = strings.data
    header = HEADER.pack(
        magic=MAGIC, version=VERSION, header_size=HEADER.size,
        ndevices=len(devices), nmodules=len(module_records), nrules=len(rules),
        default_device=index[policy.default],
        devices_off=devices_off, modules_off=modules_off, rules_off=rules_off,
        strtab_off=strtab_off, strtab_size=len(strings.data),
        crc32=zlib.crc32(body), file_size=HEADER.size + len(body),
    )
    return header + bytes(body)


def _device_record(strings: _Strings, name, kind, mode, capacity, fallback, path, flags, nodes) -> bytes:
    mask = [0] * NODEMASK_WORDS
    for n in nodes:
        mask[n // 64] |= 1 << (n % 64)
    return DEVICE.pack(kind=KIND_CODES[kind], mode=MODE_CODES[mode], capacity=capacity, fallback=fallback,
                       name_off=strings.add(name), path_off=strings.add(path) if path else NO_STRING,
                       flags=flags, nodemask=mask)


# -- reading -------------------------------------------------------------------------


def decode(data: bytes) -> CompiledPolicy:
    """Parse and validate a compiled policy; CompiledPolicyError (a ValueError) says what is wrong."""
    def fail(msg: str):
        raise CompiledPolicyError(msg)

    if len(data) < HEADER.size:
        fail(f"truncated: {len(data)} bytes, the header alone is {HEADER.size}")
    h = HEADER.unpack(data)
    if h["magic"] != MAGIC:
        fail("not a compiled memplace policy (bad magic)")
    if h["version"] != VERSION:
        fail(f"version {h['version']}; this memplace reads version {VERSION}")
    if h["header_size"] != HEADER.size:
        fail(f"header_size {h['header_size']}, expected {HEADER.size}")
    if h["file_size"] != len(data):
        fail(f"file_size says {h['file_size']} bytes, the file has {len(data)}")
    if zlib.crc32(data[HEADER.size:]) != h["crc32"]:
        fail("checksum mismatch (corrupted)")
    if not 1 <= h["ndevices"] <= MAX_DEVICES:
        fail(f"ndevices {h['ndevices']} out of range 1..{MAX_DEVICES}")
    if h["nmodules"] > MAX_MODULES:
        fail(f"nmodules {h['nmodules']} out of range 0..{MAX_MODULES}")
    if h["nrules"] > MAX_RULES:
        fail(f"nrules {h['nrules']} out of range 0..{MAX_RULES}")
    if h["devices_off"] != HEADER.size:
        fail(f"devices_off {h['devices_off']}, expected {HEADER.size}")
    # Tables in order, aligned, inside the file and not overlapping.
    end = HEADER.size
    for name, off, count, layout in (("devices", h["devices_off"], h["ndevices"], DEVICE),
                                     ("modules", h["modules_off"], h["nmodules"], MODULE),
                                     ("rules", h["rules_off"], h["nrules"], RULE),
                                     ("strtab", h["strtab_off"], h["strtab_size"], None)):
        size = count * layout.size if layout else count
        if off % 8 or off < end or off + size > len(data):
            fail(f"{name} table at offset {off} (size {size}) is misplaced in a {len(data)}-byte file")
        end = off + size
    strtab = data[h["strtab_off"]: h["strtab_off"] + h["strtab_size"]]
    if not strtab or strtab[-1] != 0:
        fail("string table does not end with a NUL byte")

    def string(off: int, what: str, optional: bool = False) -> str | None:
        if optional and off == NO_STRING:
            return None
        if off >= len(strtab):
            fail(f"{what}: string offset {off} is outside the string table")
        try:
            return strtab[off: strtab.index(b"\0", off)].decode("utf-8")
        except UnicodeDecodeError:
            fail(f"{what}: string is not UTF-8")

    kinds = {v: k for k, v in KIND_CODES.items()}
    modes = {v: k for k, v in MODE_CODES.items()}
    ndev = h["ndevices"]
    if h["default_device"] >= ndev:
        fail(f"default_device {h['default_device']} is not a device (ndevices {ndev})")
    devices = []
    for i in range(ndev):
        d = DEVICE.unpack(data, h["devices_off"] + i * DEVICE.size)
        if d["kind"] not in kinds or d["mode"] not in modes:
            fail(f"device {i}: kind {d['kind']} or mode {d['mode']} unknown")
        if not -1 <= d["fallback"] < ndev:
            fail(f"device {i}: fallback {d['fallback']} is not a device")
        path = string(d["path_off"], f"device {i} path", optional=True)
        if kinds[d["kind"]] == "file" and not (path or "").startswith("/"):
            fail(f"device {i}: a file device without an absolute directory")
        nodes = tuple(w * 64 + b for w, word in enumerate(d["nodemask"]) for b in range(64) if word >> b & 1)
        devices.append(CDevice(string(d["name_off"], f"device {i} name"), kinds[d["kind"]], modes[d["mode"]],
                               d["capacity"], d["fallback"], path, d["flags"], nodes))
    for i in range(ndev):  # the fallback graph must end (acyclic)
        seen, j = set(), i
        while j != END_OF_CHAIN:
            if j in seen:
                fail(f"device {i}: fallback cycle")
            seen.add(j)
            j = devices[j].fallback
    modules = []
    for i in range(h["nmodules"]):
        m = MODULE.unpack(data, h["modules_off"] + i * MODULE.size)
        modules.append(CModule(string(m["path_off"], f"module {i} path"),
                               string(m["build_id_off"], f"module {i} build-id", optional=True)))
    rules = []
    for i in range(h["nrules"]):
        r = RULE.unpack(data, h["rules_off"] + i * RULE.size)
        if r["device"] >= ndev:
            fail(f"rule {i}: device {r['device']} is not a device")
        if r["nframes"] > MAX_FRAMES:
            fail(f"rule {i}: nframes {r['nframes']} > {MAX_FRAMES}")
        if r["size_min"] > r["size_max"]:
            fail(f"rule {i}: size_min above size_max")
        frames = []
        for k in range(r["nframes"]):
            f = FRAME.unpack(r["frames"], k * FRAME.size)
            if f["module"] >= len(modules):
                fail(f"rule {i} frame {k}: module {f['module']} is not a module")
            if f["lo"] > f["hi"]:
                fail(f"rule {i} frame {k}: lo above hi")
            frames.append(CFrame(f["module"], f["lo"], f["hi"]))
        rules.append(CRule(r["device"], r["size_min"], r["size_max"], tuple(frames),
                           string(r["name_off"], f"rule {i} name")))
    return CompiledPolicy(h["default_device"], tuple(devices), tuple(modules), tuple(rules))


# -- the launcher's entry point ----------------------------------------------------------


def prepare(policy_path: str | os.PathLike, exe_path: str | os.PathLike | None, out_path: str | os.PathLike,
            topology: Topology | None = None) -> list[Problem]:
    """Load, check and compile a policy for a program; return the warnings.

    UserError (one line: the first error, and how many more) if the policy has
    errors; nothing is written then. `exe_path` None: only MODULE+0xOFF and
    build-id frames can be compiled.
    """
    return prepare_inputs(policy_path, exe_path, out_path, topology).warnings


@dataclass
class Prepared:
    """What `prepare` compiled from: the cache of `memplace run` records these inputs."""

    warnings: list[Problem]
    policy: Policy
    resolver: SiteResolver  # its modules() are the program and the libraries read
    data: bytes = b""  # the compiled policy, as written


def prepare_inputs(policy_path: str | os.PathLike, exe_path: str | os.PathLike | None,
                   out_path: str | os.PathLike, topology: Topology | None = None) -> Prepared:
    """`prepare`, returning also the policy and the resolver it used."""
    policy = load(policy_path)
    topology = topology or read_topology()
    resolver = SiteResolver(exe_path, extra_modules=site_modules(policy))
    problems, data = validate(policy, topology, resolver)
    errors = [p for p in problems if p.level == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more: run memplace policy check)" if len(errors) > 1 else ""
        raise UserError(errors[0].message + more)
    from memplace.output_files import write_whole

    write_whole(out_path, data)  # whole or not at all: the runtime never sees half a policy
    return Prepared([p for p in problems if p.level == "warning"], policy, resolver, data)


def validate(policy: Policy, topology: Topology, resolver: SiteResolver) -> tuple[list[Problem], bytes | None]:
    """Every problem of the policy, and its compiled bytes when it has no error.

    The one validation of `policy check`, `policy compile` and `memplace run`: `check`'s
    problems, then the compiler's limits (rules after expanding lines and symbols, modules,
    addresses), so that check passes exactly the policies that compile."""
    problems = check(policy, topology, resolver)
    if any(p.level == "error" for p in problems):
        return problems, None
    try:
        return problems, compile_policy(policy, topology, resolver)
    except UserError as e:
        return [*problems, Problem("error", str(e))], None
