"""FlexMalloc and ecoHMEM files <-> memplace policies (`memplace interop import|export`).

FlexMalloc's locations file has one call stack per line, innermost frame first, and the
allocator that serves it::

    /usr/bin/app!0x1a2b > /usr/lib/libfoo.so!0x33c0 @ memkind/hbwmalloc    (raw)
    stream.c:252 > libc-start.c:342 @ posix                                 (source)

Raw addresses are relative to the start of the module's executable mapping (FlexMalloc
adds the r-xp line of /proc/self/maps), or absolute for an old-style executable whose
first mapping is executable; memplace offsets are relative to the load bias, so the two
differ by the page-aligned address of the first executable segment. ecoHMEM's advisor
writes the same lines grouped under "# Memory configuration for NAME with size N bytes".
A file is either all raw or all source: FlexMalloc decides by looking for any '!' or ':'.

    >>> locs = parse_locations("a.c:1 > b.c:2 @ posix\\n", "x")
    >>> locs[0].frames, locs[0].allocator, locs[0].form
    (['a.c:1', 'b.c:2'], 'posix', 'source')
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction

from memplace.elf import elf_info
from memplace.errors import UserError
from memplace.inputs import LOCATIONS_LIMIT, read_text
from memplace.placement.sites import MAX_LINE
from memplace.profiling.profile import MAX_FRAMES
from memplace.units import U64_MAX, format_size

_GROUP_RE = re.compile(r"^#\s*Memory configuration for (.+?) with size ([\d.]+) bytes", re.IGNORECASE)
_DEF_HEADER_RE = re.compile(r"^#\s*Memory configuration for allocator (\S+)", re.IGNORECASE)
_DEF_SIZE_RE = re.compile(r"^\s*Size\s+([\d.]+)\s*([KMGT]?)Bytes", re.IGNORECASE)
_RAW_RE = re.compile(r"^(.+)!(?:0x)?([0-9a-fA-F]+)$")
_SRC_RE = re.compile(r"^(.+):(\d+)$")
_UNRESOLVED = ("Unresolved", "_NOT_Found")
_SITE_MODULE_RE = re.compile(r"^(.+)\+0x([0-9a-fA-F]+)$")

# Default allocator for each memplace device kind when exporting.
KIND_ALLOCATORS = {"system": "posix", "numa": "memkind/hbwmalloc", "file": "memkind/pmem", "hugepages": "posix"}


@dataclass
class Location:
    frames: list[str]  # memplace frame forms, innermost first
    allocator: str
    form: str  # raw | source
    line: int
    group: str | None = None  # ecoHMEM memory system name
    group_size: int | None = None
    notes: list[str] = field(default_factory=list)


def flexmalloc_base(module: str) -> int | None:
    """What FlexMalloc subtracts from a module-relative offset (None: file unreadable)."""
    info = elf_info(module)
    if info is None:
        return None
    if not info.pie_or_shared and info.first_load_executable:
        return 0  # old-style executable: FlexMalloc uses absolute addresses, bias is 0
    return info.exec_vaddr


def _amount(text: str, unit: int, what: str, base: int = 10, limit: int = U64_MAX) -> int:
    """A byte count, offset or line number of a locations or definitions file, in 0..limit."""
    try:
        value = int(text, 16) if base == 16 else int(Fraction(text) * unit)
    except (ValueError, ZeroDivisionError):
        raise UserError(f"{what}: {text[:40]!r} is not a number") from None
    if value > limit or len(text) > 40:
        raise UserError(f"{what}: {text[:40]!r} is out of range (0..{limit})")
    return value


def parse_locations(text: str, path: str) -> list[Location]:
    """Parse a FlexMalloc locations file or ecoHMEM advisor output."""
    locs: list[Location] = []
    group, group_size = None, None
    forms = set()
    for n, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        m = _GROUP_RE.match(line)
        if m:
            group, group_size = m.group(1).strip(), _amount(m.group(2), 1, f"{path}:{n}: size")
            continue
        if not line or line.startswith("#"):
            continue
        stack, at, allocator = line.rpartition("@")
        allocator = allocator.strip()
        if not at or not allocator or not stack.strip():
            raise UserError(f"{path}:{n}: not a location line (expected 'FRAME > FRAME ... @ ALLOCATOR')")
        frames_text = [f.strip() for f in stack.split(">")]
        # FlexMalloc drops trailing frames it could not resolve; so do we.
        while frames_text and frames_text[-1].split(":")[0] in _UNRESOLVED:
            frames_text.pop()
        if not frames_text or any(not f for f in frames_text):
            raise UserError(f"{path}:{n}: empty frame in the call stack")
        frames, notes = [], []
        form = "raw" if "!" in frames_text[0] else "source"
        forms.add(form)
        for f in frames_text[:MAX_FRAMES]:
            if form == "raw":
                m = _RAW_RE.match(f)
                if not m:
                    raise UserError(f"{path}:{n}: frame {f!r} is not MODULE!0xOFFSET")
                module, addr = m.group(1), _amount(m.group(2), 1, f"{path}:{n}: frame {f!r:.60}", base=16)
                base = flexmalloc_base(module)
                if base is None:
                    notes.append(f"{module} not readable here: its offsets are taken as they are")
                    base = 0
                if addr + base > U64_MAX:
                    raise UserError(f"{path}:{n}: frame {f!r:.60}: the offset is above 2^64-1")
                frames.append(f"{module}+0x{addr + base:x}")
            else:
                m = _SRC_RE.match(f)
                if not m:
                    raise UserError(f"{path}:{n}: frame {f!r} is not FILE:LINE")
                line_no = _amount(m.group(2), 1, f"{path}:{n}: frame {f!r:.60}", limit=MAX_LINE)
                if line_no == 0:
                    raise UserError(f"{path}:{n}: frame {f!r:.60}: line 0 is not a line")
                frames.append(f"{m.group(1)}:{line_no}")
        if len(frames_text) > MAX_FRAMES:
            notes.append(f"{len(frames_text)} frames cut to the innermost {MAX_FRAMES}")
        locs.append(Location(frames, allocator, form, n, group, group_size, notes))
    if not locs:
        raise UserError(f"{path}: no location lines (expected 'FRAME > FRAME ... @ ALLOCATOR')")
    if len(forms) > 1:
        raise UserError(f"{path}: mixes raw (MODULE!0xOFF) and source (FILE:LINE) frames; FlexMalloc reads one form per file")
    return locs


@dataclass
class Definition:
    """One allocator of a FlexMalloc memory-definitions file."""

    allocator: str
    size: int | None = None
    paths: list[str] = field(default_factory=list)


def parse_definitions(text: str, path: str) -> dict[str, Definition]:
    """'# Memory configuration for allocator X' blocks with 'Size N MBytes' or '@ /dir @ /dir'."""
    out: dict[str, Definition] = {}
    cur: Definition | None = None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        m = _DEF_HEADER_RE.match(line)
        if m:
            cur = out.setdefault(m.group(1), Definition(m.group(1)))
            continue
        if not line or line.startswith("#"):
            continue
        if cur is None:
            raise UserError(f"{path}:{n}: a setting before any '# Memory configuration for allocator NAME' line")
        m = _DEF_SIZE_RE.match(line)
        if m:
            unit = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
            cur.size = _amount(m.group(1), unit, f"{path}:{n}: Size")
        elif line.startswith("@"):
            cur.paths += [p.strip() for p in line.split("@") if p.strip()]
        else:
            raise UserError(f"{path}:{n}: {line!r} is neither 'Size N MBytes' nor '@ DIR'")
    return out


def _device_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "device"


def locations_to_policy(
    locs: list[Location],
    source: str,
    allocator_devices: dict[str, str] | None = None,
    device_specs: list | None = None,
    definitions: dict[str, Definition] | None = None,
) -> str:
    """A memplace policy (TOML text) with one rule per location, in file order."""
    from memplace.advisor.policy_writer import toml_str, toml_value

    allocator_devices = dict(allocator_devices or {})
    specs = {d.name: d for d in (device_specs or [])}
    definitions = definitions or {}
    devices: dict[str, dict] = {}  # name -> TOML table
    comments: dict[str, str] = {}

    def device_for(loc: Location) -> str:
        key = loc.allocator if loc.group is None else f"{loc.group}@{loc.allocator}"
        if loc.allocator in allocator_devices:
            return allocator_devices[loc.allocator]
        if loc.group and loc.allocator == "posix" and not loc.group_size and _device_name(loc.group) == "system":
            return "system"
        name = _device_name(loc.group) if loc.group else ("system" if loc.allocator == "posix" else _device_name(loc.allocator))
        if name in specs or name in devices or (name == "system" and not loc.group):
            return name
        d = definitions.get(loc.allocator)
        size = loc.group_size if loc.group_size else (d.size if d else None)
        if loc.allocator == "posix":
            table = {"kind": "system"}
        elif loc.allocator.startswith("memkind/pmem"):
            if not d or not d.paths:
                raise UserError(f"{source}: allocator {loc.allocator} needs a directory: give --definitions "
                                f"(with '@ /mnt/pmem0') or --allocator {loc.allocator}=NAME --device NAME=file:/DIR")
            table = {"kind": "file", "path": d.paths[0]}
        else:
            raise UserError(f"{source}: allocator {loc.allocator!r} ({key}) has no memplace device: give "
                            f"--allocator {loc.allocator}=NAME --device NAME=numa:N")
        if size:
            table["capacity"] = format_size(size)
        devices[name] = table
        comments[name] = f"from allocator {loc.allocator}" + (f" (ecoHMEM memory system {loc.group})" if loc.group else "")
        return name

    rules = []
    for loc in locs:
        rules.append((loc, device_for(loc)))
    for name, spec in specs.items():
        if not spec.builtin:
            t = dict(spec.table)
            if spec.model is not None and spec.model.capacity is not None:
                t["capacity"] = spec.capacity_text or format_size(spec.model.capacity)
            devices[name] = t
            comments[name] = "from --device"
    for dev in {d for _, d in rules}:
        if dev != "system" and dev not in devices:
            raise UserError(f"--allocator maps to device {dev!r}, which no --device describes")
    lines = [f"# Imported by `memplace interop import` from {source}.", "", "version = 1", 'default = "system"']
    for name, table in devices.items():
        lines += ["", f"# {comments[name]}", f"[devices.{toml_str(name)}]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    for loc, dev in rules:
        lines += ["", f"# {source} line {loc.line}: {loc.allocator}" + "".join(f"; {n}" for n in loc.notes),
                  "[[rules]]", f"name = {toml_str(f'line {loc.line}')}",
                  f"site = {toml_value(loc.frames)}", f"device = {toml_str(dev)}"]
    return "\n".join(lines) + "\n"


@dataclass
class Export:
    text: str
    skipped: list[str]
    definitions: str


def policy_to_locations(policy_path: str, form: str = "auto", allocators: dict[str, str] | None = None) -> Export:
    """A FlexMalloc locations file (and memory definitions) from a memplace policy."""
    from memplace.placement import policy as pol

    p = pol.load(policy_path)
    errors = [x for x in p.problems if x.level == "error"]
    if errors:
        raise UserError(errors[0].message)
    allocators = dict(allocators or {})

    def allocator(dev: str) -> str:
        if dev in allocators:
            return allocators[dev]
        kind = "system" if dev == "system" else p.devices[dev].kind
        return KIND_ALLOCATORS[kind]

    def convert(frame: str, want: str) -> str | None:
        m = _SITE_MODULE_RE.match(frame)
        if m and want == "raw":
            module, off = m.group(1), int(m.group(2), 16)
            base = flexmalloc_base(module)
            if base is None or module.startswith("build-id:") or off < base:
                return None
            return f"{module}!0x{off - base:x}"
        m = _SRC_RE.match(frame)
        if m and not _SITE_MODULE_RE.match(frame) and want == "source":
            return frame
        return None

    if form == "auto":
        raw_ok = sum(all(convert(f, "raw") for f in r.site) for r in p.rules if r.site)
        src_ok = sum(all(convert(f, "source") for f in r.site) for r in p.rules if r.site)
        form = "raw" if raw_ok >= src_ok else "source"
    if form not in ("raw", "source"):
        raise UserError(f"--form {form!r}: raw, source or auto")
    by_device: dict[str, list[str]] = {}
    skipped = []
    for r in p.rules:
        if not r.site:
            skipped.append(f"{r.label}: size-only rules have no FlexMalloc form")
            continue
        frames = [convert(f, form) for f in r.site]
        if not all(frames):
            bad = r.site[frames.index(None)]
            skipped.append(f"{r.label}: frame {bad!r} has no FlexMalloc {form} form")
            continue
        if r.size is not None:
            skipped.append(f"{r.label}: size range dropped (FlexMalloc matches stacks only)")
        by_device.setdefault(r.device, []).append(" > ".join(frames) + f" @ {allocator(r.device)}")
    out = []
    for dev, lines in by_device.items():
        # ecoHMEM's grouping header; it names the device so that an import gives it back.
        cap = p.devices[dev].capacity if dev in p.devices else None
        out.append(f"# Memory configuration for {_device_name(dev)} with size {cap if isinstance(cap, int) else 0} bytes")
        out += lines
    defs = []
    for name, d in p.devices.items():
        a = allocator(name)
        defs.append(f"# Memory configuration for allocator {a}")
        if d.kind == "file" and d.path:
            defs.append(f"@ {d.path}")
        elif isinstance(d.capacity, int):
            defs.append(f"Size {d.capacity // (1 << 20)} MBytes")
    return Export("\n".join(out) + "\n", skipped, "\n".join(defs) + ("\n" if defs else ""))


# ---- files ------------------------------------------------------------------------------


def parse_pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """`NAME=VALUE` option values -> dict (UserError naming the option)."""
    out = {}
    for v in values:
        k, eq, val = v.partition("=")
        if not eq or not k or not val:
            raise UserError(f"{option} {v!r}: expected NAME=VALUE")
        out[k] = val
    return out


def write_text(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise UserError(f"{path}: cannot write: {e.strerror or e}") from None


def import_locations(locations: str, output: str, definitions: str | None, allocators: tuple[str, ...],
                     devices: tuple[str, ...]) -> list[Location]:
    """Read a locations file (and definitions), write the checked policy to `output`."""
    from memplace.advisor.device_specs import parse_device
    from memplace.advisor.policy_writer import check_policy_text

    locs = parse_locations(read_text(locations, "locations file", LOCATIONS_LIMIT), locations)
    defs = parse_definitions(read_text(definitions, "definitions file", LOCATIONS_LIMIT), definitions) if definitions else {}
    specs = [parse_device(d) for d in devices]
    text = locations_to_policy(locs, locations, parse_pairs(allocators, "--allocator"), specs, defs)
    check_policy_text(text, output)
    write_text(output, text)
    return locs


def export_policy(policy: str, output: str, form: str, allocators: dict[str, str],
                  definitions_out: str | None) -> Export:
    """Write a policy's FlexMalloc locations file (and, if asked, memory definitions)."""
    ex = policy_to_locations(policy, form, allocators)
    write_text(output, ex.text)
    if definitions_out:
        write_text(definitions_out, ex.definitions)
    return ex
