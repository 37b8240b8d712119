"""What a profile and a run's statistics say: a Summary, its JSON, and a self-contained HTML page.

    memplace report --profile profile.4242.json --policy app.toml --html report.html
    memplace report --stats stats.json --html report.html
    memplace report --stats stats.json --json

The HTML page is one self-contained file (inline CSS and SVG, no scripts or fonts from
the network): bytes per device, top sites by accesses and by bytes, live bytes over
time, fallbacks, and the policy's rules.

Run statistics are what `memplace run --policy P --stats OUT.json` writes (memplace.placement.stats):
the totals over all processes are read::

    {"version": 1, "command": ["./app"], "policy": "/abs/app.toml", "returncode": 0,
     "processes": [{"pid": 4242, "devices": [...], "rules": [...]}],
     "totals": {"devices": [{"name": "hbm", "allocations": 10, "bytes": 1048576, "peak": 524288,
                             "fallbacks": {"full": 2, "bind_failed": 0, "backing_failed": 0,
                                           "alignment": 0}}],
                "rules": [{"name": "hot", "hits": 10, "bytes": 1048576}]}}

Capacities and which device each rule names come from the policy (--policy, else the
one the statistics name, when it can still be read).
"""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from memplace.errors import UserError
from memplace.inputs import STATS_LIMIT, parse_json, read_bytes
from memplace.placement.stats import FALLBACK_REASONS
from memplace.profiling import profile as prof
from memplace.profiling.access_estimate import SCALE_NOTE, sampled_access_notes
from memplace.units import U64_MAX, format_ns, format_size

PALETTE = ["#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#c53030", "#319795", "#b7791f", "#4a5568"]
# Layers of the timeline: distinct from the device colours so the two never get confused.
LAYERS = ["#90cdf4", "#fbd38d", "#9ae6b4", "#d6bcfa", "#feb2b2", "#81e6d9", "#cbd5e0"]
STATS_VERSIONS = (1, 2)  # 2 adds each process's end and the programs the runtime stepped aside for


@dataclass
class DeviceUse:
    name: str
    capacity: int | None = None
    allocations: int = 0
    bytes: int = 0
    peak_bytes: int | None = 0  # None: not tracked (the next allocator's frees are not seen)
    fallbacks: int = 0  # allocations this device passed on, all reasons
    fallback_reasons: dict[str, int] = field(default_factory=dict)  # reason -> count (run statistics)


@dataclass
class RuleUse:
    name: str
    hits: int
    bytes: int
    device: str | None = None  # from the policy, when it can be read


@dataclass
class SiteRow:
    label: str
    frame: str
    function: str | None
    location: str | None
    device: str | None
    allocations: int
    bytes: int
    peak: int
    accessed: int | None
    fallbacks: int = 0
    live: list[int] | None = None
    caller: str = ""  # where it was called from (file:line): tells apart sites of one function and line


@dataclass
class Summary:
    sources: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    devices: list[DeviceUse] = field(default_factory=list)
    sites: list[SiteRow] = field(default_factory=list)
    rules: list[RuleUse] = field(default_factory=list)
    processes: int | None = None  # run statistics: processes that wrote statistics
    process_list: list[ProcessRow] = field(default_factory=list)
    stepped_aside: list[AsideRow] = field(default_factory=list)
    returncode: int | None = None
    device_origin: str = ""  # "run statistics" | "policy (modelled)" | ""
    clock_unit: str | None = None
    window: float | None = None
    notes: list[str] = field(default_factory=list)
    accesses_estimated: bool = False  # from the runtime engine's samples: time-weighted estimates
    device_timeline: list[tuple[str, list[int]]] = field(default_factory=list)  # device, live bytes per window

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": self.sources,
            "command": self.command,
            "device_origin": self.device_origin,
            "processes": self.processes,
            "returncode": self.returncode,
            "devices": [d.__dict__ for d in self.devices],
            "rules": [r.__dict__ for r in self.rules],
            "sites": [{k: v for k, v in s.__dict__.items() if k != "live"} for s in self.sites],
            "process_list": [p.__dict__ for p in self.process_list],
            "stepped_aside": [a.__dict__ for a in self.stepped_aside],
            "notes": self.notes,
            "accesses_estimated": self.accesses_estimated,
            "device_timeline": [{"device": d, "live": live} for d, live in self.device_timeline],
        }


# ---- inputs -----------------------------------------------------------------------------


@dataclass
class ProcessRow:
    """One process image of a run: who started it, how it ended."""

    pid: int
    parent: int | None
    began: str | None  # start, fork, exec
    exe: str | None
    ended: str  # 'exit 0', '_exit 3', 'exec PATH', or why there are no final counts
    complete: bool  # its final counts were written


@dataclass
class AsideRow:
    """A program the runtime stepped aside for (it could not host the runtime)."""

    pid: int
    path: str
    reason: str
    interpreter: str | None = None  # a script's interpreter, when the reason is its


@dataclass
class RunStats:
    """The totals of `memplace run --stats` (see memplace.placement.stats)."""

    command: list[str]
    policy: str | None
    returncode: int | None
    processes: int
    devices: list[DeviceUse]
    rules: list[RuleUse]
    process_list: list[ProcessRow] = field(default_factory=list)
    stepped_aside: list[AsideRow] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)  # processes placement did not start in
    unwinds: int | None = None  # allocations whose site took a whole stack walk (None: not recorded)


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= U64_MAX:
        raise ValueError(f"{where} must be an integer in 0..2^64-1")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string")
    return value


def load_stats(path: str) -> RunStats:
    """Read run statistics strictly: one UserError line naming the file for a bad one.

    >>> load_stats("stats.json").devices[0].peak_bytes   # doctest: +SKIP
    1048576
    """
    data = read_bytes(path, "stats file", STATS_LIMIT)
    try:
        d = parse_json(data, path, "stats file")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: not memplace run statistics (not JSON, or truncated)") from None
    totals = d.get("totals") if isinstance(d, dict) else None
    if not isinstance(totals, dict) or not isinstance(totals.get("devices"), list) \
            or not isinstance(totals.get("rules"), list):
        raise UserError(f"{path}: not memplace run statistics (no totals of devices and rules; "
                        "they are written by memplace run --policy P --stats FILE)")
    if d.get("version") not in STATS_VERSIONS:
        raise UserError(f"{path}: run statistics version {d.get('version')!r}; "
                        f"this memplace reads versions {', '.join(map(str, STATS_VERSIONS))}")
    try:
        devices = []
        for i, x in enumerate(totals["devices"]):
            where = f"totals.devices[{i}]"
            if not isinstance(x, dict) or not isinstance(x.get("fallbacks"), dict):
                raise ValueError(f"{where} must be an object with fallbacks")
            unknown = sorted(set(x["fallbacks"]) - set(FALLBACK_REASONS))
            if unknown:
                raise ValueError(f"{where}.fallbacks: unknown reason {unknown[0]!r:.40} "
                                 f"(reasons: {', '.join(FALLBACK_REASONS)})")
            reasons = {k: _count(v, f"{where}.fallbacks.{k}") for k, v in x["fallbacks"].items()}
            devices.append(DeviceUse(_name(x.get("name"), f"{where}.name"), None,
                                     _count(x.get("allocations"), f"{where}.allocations"),
                                     _count(x.get("bytes"), f"{where}.bytes"),
                                     # frees of the next allocator's blocks pass unseen
                                     None if x.get("name") == "system" else _count(x.get("peak"), f"{where}.peak"),
                                     sum(reasons.values()), reasons))
        rules = []
        for i, x in enumerate(totals["rules"]):
            where = f"totals.rules[{i}]"
            if not isinstance(x, dict):
                raise ValueError(f"{where} must be an object")
            rules.append(RuleUse(_name(x.get("name"), f"{where}.name"), _count(x.get("hits"), f"{where}.hits"),
                                 _count(x.get("bytes"), f"{where}.bytes")))
        command = d.get("command", [])
        if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            raise ValueError("command must be a list of strings")
        policy = d.get("policy")
        if policy is not None and not isinstance(policy, str):
            raise ValueError("policy must be a file name")
        returncode = d.get("returncode")
        if returncode is not None and (not isinstance(returncode, int) or isinstance(returncode, bool)
                                       or not -255 <= returncode <= 255):
            raise ValueError("returncode must be an exit status (-255..255)")
        processes = d.get("processes", [])
        if not isinstance(processes, list):
            raise ValueError("processes must be a list")
        process_rows = [_process_row(x, f"processes[{i}]") for i, x in enumerate(processes)]
        aside = d.get("stepped_aside", [])
        if not isinstance(aside, list):
            raise ValueError("stepped_aside must be a list")
        aside_rows = [_aside_row(x, f"stepped_aside[{i}]") for i, x in enumerate(aside)]
        unwinds = totals.get("unwinds")
        unwinds = None if unwinds is None else _count(unwinds, "totals.unwinds")
        unplaced = [f"process {p.get('pid')}: placement did not start ({_name(p.get('reason'), 'reason')}); "
                    + ("it ran without placement" if p.get("ran") else "memplace run stopped it (status 2)")
                    for p in processes if isinstance(p, dict) and p.get("placing") is False]
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None
    return RunStats([str(a) for a in command], policy if isinstance(policy, str) else None,
                    returncode if isinstance(returncode, int) else None, len(processes), devices, rules,
                    process_rows, aside_rows, unplaced, unwinds)


def _process_row(x: Any, where: str) -> ProcessRow:
    from memplace.placement.stats import how_ended

    if not isinstance(x, dict):
        raise ValueError(f"{where} must be an object")
    pid = _count(x.get("pid"), f"{where}.pid")
    parent = x.get("parent")
    if "ended" not in x:  # version 1: written at exit, how is not known
        return ProcessRow(pid, None, None, None, "exit (version 1 statistics: no more known)", True)
    for key in ("began", "exe", "ended", "exec", "note"):
        if x.get(key) is not None and not isinstance(x[key], str):
            raise ValueError(f"{where}.{key} must be a string")
    return ProcessRow(pid, _count(parent, f"{where}.parent") if parent is not None else None,
                      x.get("began"), x.get("exe"), how_ended(x), bool(x.get("complete", True)))


def _aside_row(x: Any, where: str) -> AsideRow:
    if not isinstance(x, dict):
        raise ValueError(f"{where} must be an object")
    interp = x.get("interpreter")
    return AsideRow(_count(x.get("pid"), f"{where}.pid"), _name(x.get("path"), f"{where}.path"),
                    _name(x.get("reason"), f"{where}.reason"),
                    _name(interp, f"{where}.interpreter") if interp is not None else None)


def _policy_facts(policy_path: str) -> tuple[dict[str, int], dict[str, str]]:
    """Capacities in bytes (devices with a limit) and the device of each named rule."""
    from memplace.placement import policy as pol
    from memplace.placement.devices import read_topology

    p = pol.load(policy_path)
    if any(x.level == "error" for x in p.problems):
        raise UserError(next(x.message for x in p.problems if x.level == "error"))
    topo = read_topology()
    capacities = {name: pol.capacity_bytes(dev, topo) for name, dev in p.devices.items() if dev.capacity is not None}
    rule_devices: dict[str, str | None] = {}
    for r in p.rules:  # stats name rules by name; unnamed ones by compiled index, unknown here
        if r.name:
            rule_devices[r.name] = r.device if rule_devices.get(r.name, r.device) == r.device else None
    return capacities, {k: v for k, v in rule_devices.items() if v}


def _policy_devices(profile: prof.Profile, policy_path: str) -> tuple[dict[tuple, str], list[DeviceUse], str]:
    """Which device each profiled site goes to under a policy (MODULE+0xOFF rules, first
    match wins), and the modelled peak bytes per device."""
    from memplace.placement import policy as pol

    p = pol.load(policy_path)
    errors = [x for x in p.problems if x.level == "error"]
    if errors:
        raise UserError(errors[0].message)
    # Rules by their first frame's offset (a profile of 20,000 sites against 100 rules
    # compared every pair: 16 s), each frame as (module, its basename, offset); rules
    # with a frame that is not MODULE+0xOFF never match a profiled site. Rules of a size
    # alone (no frames) may match any site: they are in every list, in rule order.
    by_offset: dict[int, list[tuple[int, object, list]]] = {}
    anywhere: list[tuple[int, object, list]] = []
    for i, r in enumerate(p.rules):
        frames = []
        for f in r.site:
            m = re.fullmatch(r"(.+)\+0x([0-9a-fA-F]+)", f)
            if m is None:
                break
            frames.append((m.group(1), os.path.basename(m.group(1)), int(m.group(2), 16)))
        else:
            (by_offset.setdefault(frames[0][2], []) if frames else anywhere).append((i, r, frames))
    by_offset = {off: sorted(rules + anywhere, key=lambda x: x[0]) for off, rules in by_offset.items()}
    assign: dict[tuple, str] = {}
    for s in profile.sites:
        dev = p.default
        size = s.bytes // max(s.allocations, 1)
        names = [(sf.module, os.path.basename(sf.module), f"build-id:{sf.build_id}", sf.offset)
                 for sf in s.frames]
        for _, r, frames in by_offset.get(names[0][3], anywhere) if names else anywhere:  # in rule order
            if r.size is not None and not r.size[0] <= size <= r.size[1]:
                continue
            if len(frames) > len(names):
                continue
            if all((mod == module or base == module_base or mod == build_id) and off == offset
                   for (mod, base, off), (module, module_base, build_id, offset) in zip(frames, names)):
                dev = r.device
                break
        assign[s.identity] = dev
    uses = []
    for name in p.device_names():
        mine = [s for s in profile.sites if assign[s.identity] == name]
        d = p.devices.get(name)
        cap = d.capacity if d is not None and isinstance(d.capacity, int) else None
        uses.append(DeviceUse(name, cap, sum(s.allocations for s in mine), sum(s.bytes for s in mine),
                              prof.concurrent_peak(mine)))
    return assign, uses, p.default


def summarize(profile_path: str | None, stats_path: str | None, policy_path: str | None) -> Summary:
    if not (profile_path or stats_path):
        raise UserError("nothing to report: give --profile and/or --stats")
    if policy_path and not (profile_path or stats_path):
        raise UserError("--policy needs --profile (it places the profile's sites) or --stats")
    sm = Summary()
    profile = None
    if profile_path:
        profile = prof.load(profile_path)
        from memplace.profiling.symbolize import symbolize_profile

        symbolize_profile(profile)
        sm.sources.append(profile_path)
        sm.command = profile.command
        sm.clock_unit, sm.window = profile.clock_unit, profile.window
    assign: dict[tuple, str] = {}
    if policy_path:
        sm.sources.append(policy_path)
    if policy_path and profile is not None:
        assign, sm.devices, _ = _policy_devices(profile, policy_path)
        sm.device_origin = f"policy {policy_path} (modelled from the profile)"
    stats = load_stats(stats_path) if stats_path else None
    if stats is not None:
        sm.sources.append(stats_path)
        sm.command = sm.command or stats.command
        sm.devices, sm.rules = stats.devices, stats.rules
        sm.processes, sm.returncode = stats.processes, stats.returncode
        sm.process_list, sm.stepped_aside = stats.process_list, stats.stepped_aside
        cut = sum(not p.complete for p in stats.process_list)
        if cut:
            sm.notes.append(f"{cut} process(es) ended without final counts (killed by a signal?): "
                            "their allocations are not in the totals")
        sm.device_origin = "run statistics"
        sm.notes.extend(stats.unplaced)
        placed = sum(d.allocations for d in stats.devices)
        if stats.unwinds and stats.unwinds >= 1000 and stats.unwinds * 100 >= placed:
            sm.notes.append(f"{stats.unwinds:,} of {placed:,} allocations ({stats.unwinds / placed:.0%}) had "
                            "their call site found by a whole stack walk (the runtime's caches did not hold "
                            "their call chain): placed as the rules say, but each walk costs time; rules of "
                            "fewer frames need fewer walks")
        facts_from = policy_path or stats.policy
        if facts_from:
            try:
                capacities, rule_devices = _policy_facts(facts_from)
            except (UserError, OSError, ValueError) as e:
                sm.notes.append(f"capacities and rule devices not shown: {e}")
            else:
                for d in sm.devices:
                    d.capacity = capacities.get(d.name) or None
                for r in sm.rules:
                    r.device = rule_devices.get(r.name)
    if profile is not None:
        for s in profile.sites:
            sm.sites.append(SiteRow(s.label, str(s.frames[0]), s.function, s.location, assign.get(s.identity),
                                    s.allocations, s.bytes, s.peak_live_bytes, s.accesses, 0, s.heap_peak_live,
                                    caller_of(s)))
    if profile is not None and assign:
        from memplace.placement import policy as pol

        devices = pol.load(policy_path).devices
        capacity = {d.name: d.capacity for d in sm.devices if d.capacity}
        fallback = {name: dev.fallback for name, dev in devices.items() if getattr(dev, "fallback", None)}
        sm.device_timeline = device_timeline(profile, assign, [d.name for d in sm.devices], capacity, fallback)
    if profile is not None and not any(s.accessed for s in sm.sites):
        why = (profile.meta.get("access_sampling") or {}).get("why")
        sm.notes.append("this profile has no access counts" + (f" (access sampling: {why})" if why else "")
                        + " (profile with the runtime engine's access sampling or --engine dhat to get them)")
    if profile is not None:
        sm.notes += sampled_access_notes(profile.sites)
        sm.accesses_estimated = any(s.sampled is not None for s in profile.sites)
    return sm


def device_timeline(profile: prof.Profile, assign: dict[tuple, str], names: list[str],
                    capacity: dict[str, int] | None = None,
                    fallback: dict[str, str] | None = None) -> list[tuple[str, list[int]]]:
    """Live bytes on each device in each window of the profile's timeline, its sites placed
    as `assign` says: what a placed run of the same program holds on each device over
    time (sites without a timeline count their peak in every window). What a limited
    device cannot hold in a window goes on to its fallback, as the runtime sends it.
    Devices that hold nothing are left out; empty when the profile has no timeline."""
    n = max((len(s.live) for s in profile.sites if s.live), default=0)
    if n == 0:
        return []
    live = {name: [0] * n for name in names}
    for s in profile.sites:
        name = assign.get(s.identity)
        if name not in live:
            continue
        series = s.heap_peak_live if s.live is not None else [s.peak_live_bytes] * n
        for i, v in enumerate(series):
            live[name][i] += v
    capacity, fallback = capacity or {}, fallback or {}
    for name in names:  # the overflow along each fallback chain (at most once per device)
        seen = {name}
        while name in capacity and fallback.get(name) in live and fallback[name] not in seen:
            nxt = fallback[name]
            for i in range(n):
                over = live[name][i] - capacity[name]
                if over > 0:
                    live[name][i] -= over
                    live[nxt][i] += over
            seen.add(nxt)
            name = nxt
    return [(name, live[name]) for name in names if any(live[name])]


# ---- SVG --------------------------------------------------------------------------------


RULES_CHARTED = 30  # bars in the rules chart (every rule is in the table below it)
SITES_LISTED = 40


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def reasons_text(d: DeviceUse) -> str:
    """'full 3, bind_failed 1': the reasons that occurred, in the runtime's order."""
    order = [*FALLBACK_REASONS, *sorted(set(d.fallback_reasons) - set(FALLBACK_REASONS))]
    return ", ".join(f"{k} {d.fallback_reasons[k]}" for k in order if d.fallback_reasons.get(k)) or "-"


def peak_text(d: DeviceUse) -> str:
    return "not tracked" if d.peak_bytes is None else format_size(d.peak_bytes)


def caller_of(site) -> str:
    """`< file:line` of the call that leads to a profile site (its second frame), or ""."""
    sym = site.symbol(1) if len(site.frames) > 1 else None
    return f"< {sym.location}" if sym and sym.location else ""


def unique_labels(labels: list[str], extra: list[str]) -> list[str]:
    """Labels that repeat (two sites of one function and line, told apart by their callers)
    get their `extra` (e.g. the site's frame) added, so no legend names two things alike."""
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    return [f"{label} [{x}]" if seen[label] > 1 else label for label, x in zip(labels, extra)]


def hbar_svg(items: list[tuple[str, float, str, str]], fmt, width: int = 760) -> str:
    """Horizontal bars: (label, value, colour, tooltip) each; labels left, values right."""
    if not items:
        return '<p class="empty">nothing to show</p>'
    row, label_w, value_w = 26, 300, 90
    bar_w = width - label_w - value_w - 20
    top = max(v for _, v, _, _ in items) or 1
    h = row * len(items) + 8
    out = [f'<svg viewBox="0 0 {width} {h}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, v, colour, tip) in enumerate(items):
        y = 4 + i * row
        w = max(1.5, bar_w * v / top) if v else 0
        short = label if len(label) <= 44 else label[:43] + "…"
        out.append(f'<g><title>{_esc(tip)}</title>'
                   f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end" class="lbl">{_esc(short)}</text>'
                   f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" rx="3" fill="{colour}"/>'
                   f'<text x="{label_w + w + 6:.1f}" y="{y + 17}" class="val">{_esc(fmt(v))}</text></g>')
    out.append("</svg>")
    return "".join(out)


LINE_COLOURS = ("#c53030", "#2b6cb0", "#b7791f", "#2f855a", "#6b46c1", "#4a5568")


def line_chart_svg(series: list[tuple[str, list[tuple[float, float | None, str]]]], title: str,
                   x_label: str, y_label: str, width: int = 640, height: int = 380,
                   descending: bool = True, y_format=None, dots: bool = True, x_ticks: int = 12,
                   colours: dict[str, str] | None = None, dashed: frozenset[str] = frozenset()) -> str:
    """A standalone line chart: series of (name, [(x, y or None, status)]); a point whose y
    is None is drawn as a cross on the top edge labelled with its status (e.g. "OOM"),
    and breaks the line. With `descending` (the default) the x values are evenly spaced
    from the largest to the smallest (limits shrinking to the right); otherwise x is a
    linear axis from the smallest (time running to the right). The y axis runs from 0;
    `y_format` formats its labels; at most `x_ticks` x labels. `colours` names a series'
    colour (else the palette's next), `dashed` the series drawn dashed."""
    xs = sorted({x for _, pts in series for x, _, _ in pts}, reverse=descending)
    top = max((y for _, pts in series for _, y, _ in pts if y is not None), default=1.0) or 1.0
    top *= 1.1
    left, right, up, down = 64 if y_format is None else 80, 170, 40, 52
    pw, ph = width - left - right, height - up - down
    if descending or len(xs) < 2:
        X = {x: left + (pw * i / max(len(xs) - 1, 1)) for i, x in enumerate(xs)}
    else:
        X = {x: left + pw * (x - xs[0]) / (xs[-1] - xs[0]) for x in xs}
    Y = lambda y: up + ph - ph * y / top
    style = ('<style>text{font:12px system-ui,sans-serif;fill:#2d3748}.t{font-size:14px;font-weight:600}'
             '.a{fill:#718096;font-size:11px}.g{stroke:#e2e8f0}</style>')
    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg">', style,
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="{left}" y="22" class="t">{_esc(title)}</text>']
    for i in range(5):
        v = top * i / 4
        shown = y_format(v) if y_format else f"{v:.3g}"
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" class="g"/>'
                   f'<text x="{left - 6}" y="{Y(v) + 4:.1f}" text-anchor="end" class="a">{_esc(shown)}</text>')
    step = max(1, -(-len(xs) // max(x_ticks, 1)))
    for x in xs[::step]:
        out.append(f'<text x="{X[x]:.1f}" y="{up + ph + 18}" text-anchor="middle" class="a">{x:g}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 10}" text-anchor="middle" class="a">{_esc(x_label)}</text>'
               f'<text x="14" y="{up + ph / 2}" transform="rotate(-90 14 {up + ph / 2})" '
               f'text-anchor="middle" class="a">{_esc(y_label)}</text>')
    for k, (name, pts) in enumerate(series):
        colour = (colours or {}).get(name) or LINE_COLOURS[k % len(LINE_COLOURS)]
        dash = ' stroke-dasharray="6 4"' if name in dashed else ""
        segment: list[str] = []
        for x, y, status in sorted(pts, key=lambda p: -p[0] if descending else p[0]) + [(None, None, "")]:
            if y is None and len(segment) > 1:
                out.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
            if y is None:
                segment = []
                if x is not None:
                    cx, cy = X[x], up + 4 + 11 * k
                    out.append(f'<path d="M{cx - 4:.1f} {cy - 4} l8 8 m0 -8 l-8 8" stroke="{colour}" stroke-width="2"/>'
                               f'<text x="{cx + 7:.1f}" y="{cy + 4}" class="a">{_esc(status)}</text>')
                continue
            segment.append(f"{X[x]:.1f},{Y(y):.1f}")
            if dots:
                out.append(f'<circle cx="{X[x]:.1f}" cy="{Y(y):.1f}" r="3.5" fill="{colour}">'
                           f'<title>{_esc(name)}: {_esc(y_format(y) if y_format else f"{y:.3g}")} at {x:g}</title></circle>')
        ly = up + 10 + 20 * k
        out.append(f'<line x1="{left + pw + 16}" x2="{left + pw + 36}" y1="{ly}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="3"{dash}/><text x="{left + pw + 42}" y="{ly + 4}">{_esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def occupancy_svg(sm: Summary) -> str:
    """Each device's modelled live bytes over the run, with its capacity as a flat line."""
    if not sm.device_timeline:
        return '<p class="empty">no timeline (give --profile from the runtime engine with --policy)</p>'
    n = len(sm.device_timeline[0][1])
    scale, unit = (sm.window, sm.clock_unit) if sm.window and sm.clock_unit else (1.0, "window")
    if unit == "ns":
        scale, unit = scale / 1e9, "s"
    xs = [i * scale for i in range(n)]
    series = [(name, [(x, float(v), "") for x, v in zip(xs, live)]) for name, live in sm.device_timeline]
    caps = {d.name: d.capacity for d in sm.devices if d.capacity}
    shown = [name for name, _ in sm.device_timeline]
    series += [(f"{name} capacity", [(xs[0], float(c), ""), (xs[-1], float(c), "")]) for name, c in caps.items()
               if name in shown]
    colours = {name: LINE_COLOURS[k % len(LINE_COLOURS)] for k, name in enumerate(shown)}
    colours.update({f"{name} capacity": colours[name] for name in caps if name in shown})
    return line_chart_svg(series, title="Live bytes per device over the run (modelled from the profile)",
                          x_label=f"time ({unit}) since the program started", y_label="live bytes",
                          width=760, descending=False, y_format=format_size, dots=False, colours=colours,
                          dashed=frozenset(f"{name} capacity" for name in caps))


def device_bars_svg(devices: list[DeviceUse], colours: dict[str, str], width: int = 760) -> str:
    """Per device: peak use against capacity (a track when there is a limit)."""
    if not devices:
        return '<p class="empty">no devices (give --stats, or --policy with --profile)</p>'
    row, label_w = 54, 150
    bar_w = width - label_w - 20
    top = max([d.capacity or 0 for d in devices] + [d.peak_bytes or 0 for d in devices] + [d.bytes for d in devices]) or 1
    out = [f'<svg viewBox="0 0 {width} {row * len(devices) + 10}" width="100%" role="img" '
           f'xmlns="http://www.w3.org/2000/svg">']
    for i, d in enumerate(devices):
        y = 6 + i * row
        c = colours.get(d.name, PALETTE[-1])
        out.append(f'<text x="{label_w - 10}" y="{y + 20}" text-anchor="end" class="dev">{_esc(d.name)}</text>')
        if d.capacity:
            out.append(f'<rect x="{label_w}" y="{y + 6}" width="{bar_w * d.capacity / top:.1f}" height="20" rx="4" '
                       f'class="track"><title>capacity {_esc(format_size(d.capacity))}</title></rect>')
        w = bar_w * (d.peak_bytes or 0) / top
        out.append(f'<rect x="{label_w}" y="{y + 6}" width="{max(w, 1.5 if d.peak_bytes else 0):.1f}" height="20" '
                   f'rx="4" fill="{c}"><title>peak {_esc(peak_text(d))}</title></rect>')
        cap = f" of {format_size(d.capacity)}" if d.capacity else " (no limit)"
        fb = f" · {d.fallbacks} fallback(s): {reasons_text(d)}" if d.fallbacks else ""
        out.append(f'<text x="{label_w}" y="{y + 44}" class="val">peak {_esc(peak_text(d))}{_esc(cap)} · '
                   f'{d.allocations} allocation(s), {_esc(format_size(d.bytes))} in all{_esc(fb)}</text>')
    out.append("</svg>")
    return "".join(out)


def timeline_svg(sites: list[SiteRow], colours: dict[str, str], window: float | None, unit: str | None,
                 width: int = 760, height: int = 220) -> str:
    """Stacked live bytes over time of the biggest sites (the rest grouped)."""
    with_live = [s for s in sites if s.live]
    if not with_live:
        return '<p class="empty">no timeline in this profile (the DHAT engine records none)</p>'
    n = max(len(s.live) for s in with_live)
    top_sites = sorted(with_live, key=lambda s: -max(s.live))[:6]
    rest = [s for s in with_live if s not in top_sites]
    labels = unique_labels([s.label for s in top_sites], [s.caller or s.frame for s in top_sites])
    layers = [(lb, s.live + [0] * (n - len(s.live))) for lb, s in zip(labels, top_sites)]
    if rest:
        layers.append((f"{len(rest)} other site(s)", [sum(s.live[i] if i < len(s.live) else 0 for s in rest) for i in range(n)]))
    total = [sum(layer[1][i] for layer in layers) for i in range(n)]
    peak = max(total) or 1
    left, bottom = 70, 24
    pw, ph = width - left - 10, height - bottom - 10
    x = lambda i: left + pw * i / max(n - 1, 1)  # noqa: E731
    y = lambda v: 10 + ph * (1 - v / peak)  # noqa: E731
    out = [f'<svg viewBox="0 0 {width} {height + 22 * len(layers)}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg">']
    for frac in (0, 0.5, 1):
        yy = y(peak * frac)
        out.append(f'<line x1="{left}" x2="{width - 10}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" class="axis">{_esc(format_size(peak * frac))}</text>')
    base = [0] * n
    for k, (label, series) in enumerate(layers):
        upper = [b + v for b, v in zip(base, series)]
        pts = [f"{x(i):.1f},{y(upper[i]):.1f}" for i in range(n)] + [f"{x(i):.1f},{y(base[i]):.1f}" for i in reversed(range(n))]
        c = LAYERS[k % len(LAYERS)]
        out.append(f'<polygon points="{" ".join(pts)}" fill="{c}" stroke="#fff" stroke-width="0.6"><title>{_esc(label)}</title></polygon>')
        ly = height + 22 * k
        out.append(f'<rect x="{left}" y="{ly}" width="12" height="12" fill="{c}"/>'
                   f'<text x="{left + 18}" y="{ly + 11}" class="lbl">{_esc(label)}</text>')
        base = upper
    if window and unit == "ns":
        span = format_ns(window * n)
    else:
        span = f"{window * n:.3g} {unit}" if window and unit else f"{n} windows"
    out.append(f'<text x="{left}" y="{height - 4}" class="axis">start</text>'
               f'<text x="{width - 10}" y="{height - 4}" text-anchor="end" class="axis">{_esc(span)}</text></svg>')
    return "".join(out)


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f5f6f8;color:#1a202c}
header{background:#1a365d;color:#fff;padding:22px 36px}
header h1{margin:0;font-size:22px;font-weight:600} header p{margin:6px 0 0;opacity:.85;font-size:14px}
main{max-width:1000px;margin:0 auto;padding:18px 24px 40px}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin:4px 0 18px}
.card{background:#fff;border-radius:10px;padding:12px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08);min-width:150px}
.card b{display:block;font-size:22px} .card span{color:#4a5568;font-size:13px}
section{background:#fff;border-radius:10px;padding:16px 22px;margin:0 0 18px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
section h2{font-size:17px;margin:0 0 4px} section p.sub{margin:0 0 10px;color:#4a5568;font-size:13px}
svg .lbl{font-size:13px;fill:#2d3748} svg .val{font-size:12px;fill:#4a5568} svg .dev{font-size:14px;font-weight:600;fill:#1a202c}
svg .axis{font-size:11px;fill:#718096} svg .grid{stroke:#e2e8f0} svg .track{fill:#edf2f7;stroke:#a0aec0;stroke-dasharray:4 3}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{padding:5px 8px;border-bottom:1px solid #edf2f7;text-align:left}
th{color:#4a5568;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
.chip{display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;font-size:12px}
.empty{color:#718096;font-style:italic} .notes{color:#975a16;font-size:13px}
"""


def _bytes_cell(n: int | None) -> str:
    if n is None:
        return '<td class="n">–</td>'
    return f'<td class="n" data-bytes="{n}" title="{n} bytes">{_esc(format_size(n))}</td>'


def _table(headers, rows: str) -> str:
    """A table with these column headers over rows already made (<tr>...</tr> each)."""
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in headers) + f"</tr>{rows}</table>"


def devices_table(devices: list[DeviceUse]) -> str:
    """One row per device; exact numbers in data-* attributes (bytes) and cells (counts)."""
    head = ("device", "allocations", "bytes", "peak", "capacity", *FALLBACK_REASONS)
    rows = "".join(
        f'<tr data-device="{_esc(d.name)}"><td>{_esc(d.name)}</td><td class="n">{d.allocations}</td>'
        f"{_bytes_cell(d.bytes)}"
        + (_bytes_cell(d.peak_bytes) if d.peak_bytes is not None else '<td class="n">not tracked</td>')
        + f"{_bytes_cell(d.capacity)}"
        + "".join(f'<td class="n" data-reason="{k}">{d.fallback_reasons.get(k, 0)}</td>' for k in FALLBACK_REASONS)
        + "</tr>" for d in devices)
    return _table(head, rows)


def rules_table(rules: list[RuleUse], colours: dict[str, str]) -> str:
    rows = "".join(
        f'<tr data-rule="{_esc(r.name)}"><td>{_esc(r.name)}</td>'
        f"<td>{f'<span class=chip style=background:{colours.get(r.device, PALETTE[-1])}>{_esc(r.device)}</span>' if r.device else '–'}</td>"
        f'<td class="n">{r.hits}</td>{_bytes_cell(r.bytes)}</tr>' for r in rules)
    return _table(("rule", "device", "hits", "bytes"), rows)


def processes_table(rows: list[ProcessRow]) -> str:
    body = "".join(
        f'<tr data-pid="{p.pid}"><td class="n">{p.pid}</td><td class="n">{p.parent if p.parent is not None else "–"}</td>'
        f"<td>{_esc(p.began or '–')}</td><td><code>{_esc(p.exe or '?')}</code></td><td>{_esc(p.ended)}</td></tr>"
        for p in rows)
    return _table(("pid", "parent", "began", "program", "ended"), body)


def aside_table(rows: list[AsideRow]) -> str:
    body = "".join(
        f'<tr data-pid="{a.pid}"><td class="n">{a.pid}</td><td><code>{_esc(a.path)}</code></td>'
        f"<td>{_esc(a.reason)}{_esc(f' (its interpreter {a.interpreter})' if a.interpreter else '')}</td></tr>"
        for a in rows)
    return _table(("pid", "program", "why"), body)


def html_page(sm: Summary) -> str:
    names = [d.name for d in sm.devices] + sorted({s.device for s in sm.sites if s.device} - {d.name for d in sm.devices})
    colours = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    grey = "#a0aec0"

    def colour(s: SiteRow) -> str:
        return colours.get(s.device, grey) if s.device else PALETTE[0]

    def tip(s: SiteRow) -> str:
        return f"{s.label}{' ' + s.caller if s.caller else ''} — {s.frame}; device {s.device or '?'}; peak {format_size(s.peak)}; accessed {format_size(s.accessed or 0)}"

    by_acc = sorted([s for s in sm.sites if s.accessed], key=lambda s: -(s.accessed or 0))[:15]
    by_bytes = sorted(sm.sites, key=lambda s: -s.peak)[:15]
    acc_labels = unique_labels([s.label for s in by_acc], [s.caller or s.frame for s in by_acc])
    byte_labels = unique_labels([s.label for s in by_bytes], [s.caller or s.frame for s in by_bytes])
    top_rules = sorted(sm.rules, key=lambda r: -r.bytes)[:RULES_CHARTED]
    fallback_items = [(f"{d.name}: {reason}", n, colours.get(d.name, grey), f"{d.name}: {n} allocation(s) passed on ({reason})")
                      for d in sm.devices for reason, n in d.fallback_reasons.items() if n]
    total_peak = sum(s.peak for s in sm.sites)
    total_acc = sum(s.accessed or 0 for s in sm.sites)
    cards = []
    if sm.sites:
        cards += [(str(len(sm.sites)), "allocation sites"), (format_size(sum(s.bytes for s in sm.sites)), "allocated"),
                  (format_size(total_peak), "sum of site peaks")]
    if total_acc:
        cards.append((format_size(total_acc), "read + written" + (" (estimated)" if sm.accesses_estimated else "")))
    if sm.device_origin == "run statistics":
        placed = [d for d in sm.devices if d.name != "system"]
        cards += [(str(sum(d.allocations for d in placed)), "allocations on devices"),
                  (format_size(sum(d.bytes for d in placed)), "placed on devices")]
        if sm.processes is not None:
            cards.append((str(sm.processes), "processes"))
        if sm.returncode is not None:
            cards.append((str(sm.returncode), "exit status"))
    if sm.devices:
        cards.append((str(sum(d.fallbacks for d in sm.devices)), "fallbacks"))
    legend = " ".join(f'<span class="chip" style="background:{c}">{_esc(n)}</span>' for n, c in colours.items())
    rows = "".join(
        f"<tr><td>{i}</td><td>{_esc(s.function or '?')}</td><td>{_esc(s.location or '?')}</td><td><code>{_esc(s.frame)}</code></td>"
        f'<td class="n">{s.allocations}</td><td class="n">{_esc(format_size(s.peak))}</td>'
        f'<td class="n">{_esc(format_size(s.accessed) if s.accessed is not None else "–")}</td>'
        f"<td>{f'<span class=chip style=background:{colour(s)}>{_esc(s.device)}</span>' if s.device else '–'}</td></tr>"
        for i, s in enumerate(sorted(sm.sites, key=lambda s: (-(s.accessed or 0), -s.peak))[:SITES_LISTED], 1)
    )
    sections = [
        ("Bytes per device", f"Peak bytes on each device ({_esc(sm.device_origin or 'no device data')}); "
         "the dashed track is the capacity.", device_bars_svg(sm.devices, colours)),
    ]
    if sm.sites:
        if by_acc:
            sections.append(
                ("Top sites by accesses", "Bytes read and written through each site's objects"
                 + (f" ({_esc(SCALE_NOTE)})" if sm.accesses_estimated else "") + "; colour = device.",
                 hbar_svg([(lb, s.accessed or 0, colour(s), tip(s)) for lb, s in zip(acc_labels, by_acc)],
                          format_size)))
        sections += [
            ("Top sites by bytes", "Peak bytes live at once from each site; colour = device.",
             hbar_svg([(lb, s.peak, colour(s), tip(s)) for lb, s in zip(byte_labels, by_bytes)], format_size)),
            ("Live bytes over time", "Bytes each of the largest sites had live when the heap peaked in each window, stacked.",
             timeline_svg(sm.sites, colours, sm.window, sm.clock_unit)),
        ]
        if sm.device_timeline:
            sections.append(("Devices over time", "Live bytes each device holds in each window of the profile "
                             "when its sites are placed by the policy, against each limited device's capacity "
                             "(each site's bytes at the heap's peak in the window, summed).", occupancy_svg(sm)))
    sections.append(
        ("Fallbacks", "Allocations a device passed on to the next in its chain, by device and reason "
         "(full, bind_failed, backing_failed, alignment).",
         hbar_svg(fallback_items, lambda v: f"{v:.0f}") if fallback_items else
         f'<p class="empty">{"no fallbacks" if sm.device_origin == "run statistics" else "no run statistics given (--stats)"}</p>'))
    if sm.rules:
        shown = "" if len(sm.rules) <= RULES_CHARTED else \
            f" The chart shows the {RULES_CHARTED} rules with the most bytes of {len(sm.rules)}; the table lists all."
        sections.append(("Rules", "Allocations each rule of the policy matched, and their bytes; colour = its device."
                         + shown,
                         hbar_svg([(r.name, r.bytes, colours.get(r.device or "", grey),
                                    f"{r.name}: {r.hits} hit(s), {format_size(r.bytes)}") for r in top_rules],
                                  format_size) + rules_table(sm.rules, colours)))
    if sm.process_list:
        sections.append(("Processes", "Every process image of the run (an exec starts a new image of the same pid), "
                         "who started it and how it ended.", processes_table(sm.process_list)))
    if sm.stepped_aside:
        sections.append(("Stepped aside", "Programs the command started that cannot host the runtime: they ran "
                         "without it, exactly as they would without memplace.", aside_table(sm.stepped_aside)))
    if sm.devices:
        sections.insert(1, ("Devices", f"Exact counts ({_esc(sm.device_origin)}).", devices_table(sm.devices)))
    body = "".join(f"<section><h2>{t}</h2><p class=sub>{sub}</p>{svg}</section>" for t, sub, svg in sections)
    order = "accesses, then peak bytes" if any(s.accessed for s in sm.sites) else "peak bytes (no accesses measured)"
    sites = (f"<section><h2>Sites</h2><p class=sub>Ordered by {order} (first {SITES_LISTED}).</p><table><tr>"
             "<th>#</th><th>function</th><th>file:line</th><th>site</th><th>allocs</th><th>peak</th><th>accessed</th>"
             f"<th>device</th></tr>{rows}</table></section>") if sm.sites else ""
    notes = "".join(f'<p class="notes">{_esc(n)}</p>' for n in sm.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>memplace report — {_esc(" ".join(sm.command) or "profile")}</title><style>{CSS}</style></head>
<body><header><h1>memplace report</h1><p>{_esc(" ".join(sm.command))} · from {_esc(", ".join(sm.sources))}</p></header>
<main><div class="cards">{"".join(f'<div class="card"><b>{_esc(v)}</b><span>{_esc(k)}</span></div>' for v, k in cards)}</div>
{f'<p>{legend}</p>' if legend else ''}{notes}{body}{sites}
</main></body></html>
"""


def write_html(sm: Summary, path: str) -> None:
    """The self-contained page, written to `path` (UserError if it cannot be)."""
    try:
        with open(path, "w") as f:
            f.write(html_page(sm))
    except OSError as e:
        raise UserError(f"{path}: cannot write: {e.strerror or e}") from None
