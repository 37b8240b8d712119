"""`memplace advise PROFILE --policy-out FILE`: a policy from a profile, with reasons.

    $ memplace advise profile.4242.json --policy-out app.toml \\
          --device hbm=numa:1,latency=80ns,capacity=2GiB \\
          --device ddr=numa:0,latency=140ns

Devices come from `--device NAME=SPEC` (SPEC: a kind — numa:N[+M|-K], file:DIR,
hugepages[:SIZE], system — then key=value items: latency, read-latency, write-latency
(ns), bandwidth, read-bandwidth, write-bandwidth (GB/s), capacity, mode, fallback), or,
without any, from the machine's NUMA nodes and their HMAT attributes.
"""

from __future__ import annotations

import json
import os
import re
import sys
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
from dataclasses import dataclass, field
from typing import Any

import click

from memplace import advisor as adv
from memplace import profile as prof
from memplace.errors import UserError
from memplace.units import Percent, format_size, parse_capacity

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

    @property
    def builtin(self) -> bool:
        """The built-in "system" device: never written under [devices]."""
        return self.name == "system"


def _number(text: str, units: dict[str, float], default_unit: str, what: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z/]*)\s*", text)
    unit = (m.group(2) or default_unit).lower() if m else ""
    if not m or unit not in units:
        raise UserError(f"{what}: {text!r} is not a number with a unit ({', '.join(units)})")
    return float(m.group(1)) * units[unit]


def parse_nodes(text: str, what: str) -> list[int]:
    """'0', '0-3', '0+2', '0-1+4' -> node ids."""
    nodes: list[int] = []
    for part in text.split("+"):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise UserError(f"{what}: {text!r} is not a node list (examples: 0, 0-3, 0+2)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        nodes.extend(range(lo, hi + 1))
    return nodes


def parse_device(text: str) -> DeviceSpec:
    """`NAME=numa:1,latency=80ns,capacity=2GiB` -> DeviceSpec (UserError naming the problem).

    >>> d = parse_device("hbm=numa:1,latency=80ns,capacity=2GiB")
    >>> d.kind, d.table["nodes"], d.model.read_latency, d.model.capacity
    ('numa', [1], 80.0, 2147483648)
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
    )
    return d


def _total_bytes(d: DeviceSpec, what: str) -> int:
    """What a percentage capacity is a share of: the nodes' memory."""
    if d.kind != "numa":
        raise UserError(f"{what}: a percentage capacity needs a numa device (give bytes, e.g. 2GiB)")
    from memplace.devices import read_topology

    topo = read_topology()
    total = sum(n.mem_total for n in topo.nodes if n.id in d.table["nodes"])
    if not total:
        raise UserError(f"{what}: node(s) {d.table['nodes']} not on this machine")
    return total


def devices_from_machine() -> list[DeviceSpec]:
    """One device per NUMA node, with HMAT latency/bandwidth; the nodes with CPUs take
    whatever does not fit, CPU-less ones (HBM, CXL) are limited to their memory."""
    from memplace.devices import read_topology

    topo = read_topology()
    out = []
    for n in topo.nodes:
        acc = next((a for a in n.access if a.read_latency_ns or a.read_bandwidth_mbps), None)
        if acc is None:
            raise UserError(
                f"node {n.id} has no HMAT latency/bandwidth on this machine: describe the devices with "
                f"--device NAME=numa:{n.id},latency=NS[,capacity=SIZE]"
            )
        d = DeviceSpec(name=f"node{n.id}", kind="numa", table={"kind": "numa", "nodes": [n.id], "mode": "bind"})
        cap = n.mem_total if n.cpu_less else None
        if cap is not None:
            d.capacity_text = format_size(cap)
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


# ---- the policy file --------------------------------------------------------------------


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def rule_frames(advice: adv.Advice) -> dict[int, list[prof.Frame]]:
    """For each placed site, the shortest frame prefix that no site on another device
    shares: short rules match the runtime's capture even when deep frames vary."""
    out: dict[int, list[prof.Frame]] = {}
    placements = advice.placements
    for i, p in enumerate(placements):
        if p.device == advice.default:
            continue
        frames = p.site.frames
        for k in range(1, len(frames) + 1):
            prefix = tuple(f.key for f in frames[:k])
            clash = any(
                q.device != p.device and tuple(f.key for f in q.site.frames[:k]) == prefix
                for q in placements
                if q is not p
            )
            if not clash:
                break
        out[i] = list(frames[:k])
    return out


def _fallbacks(specs: list[DeviceSpec], advice: adv.Advice, model: str) -> dict[str, str]:
    """Each limited device overflows to the next slower device, ending at the default."""
    order = sorted(specs, key=lambda d: sum(d.model.line_costs(model)))
    names = [d.name for d in order]
    out = {}
    for i, d in enumerate(order):
        if d.fallback:
            if d.fallback not in names and d.fallback != "system":
                raise UserError(f"--device {d.name}: fallback {d.fallback!r} is not a device")
            out[d.name] = d.fallback
        elif d.name != advice.default:
            slower = [n for n in names[i + 1 :] if n != d.name]
            out[d.name] = slower[0] if slower else advice.default
    return out


def policy_text(advice: adv.Advice, specs: list[DeviceSpec], source: str) -> str:
    """The policy TOML: devices, default, one commented rule per placed site."""
    fallbacks = _fallbacks(specs, advice, advice.model)
    saved = advice.default_cost - advice.cost
    pct = 100 * saved / advice.default_cost if advice.default_cost else 0.0
    gap = advice.gap
    lines = [
        f"# Written by `memplace advise` from {source}.",
        f"# Model: {advice.model}; solved by {advice.method}"
        + (" (optimal)" if advice.optimal else f" (within {100 * gap:.3g}% of optimal)" if gap is not None else "")
        + ".",
        f"# Modelled access cost {adv.fmt_ns(advice.cost)}, against {adv.fmt_ns(advice.default_cost)} with "
        f"everything on {advice.default} ({pct:.1f}% less).",
    ]
    lines += [f"# {n}" for n in advice.notes]
    lines += ["", "version = 1", f"default = {_toml_str(advice.default)}"]
    for d in specs:
        if d.builtin:
            continue
        lines += ["", f"[devices.{_toml_str(d.name)}]"]
        peak = advice.peak.get(d.name, 0)
        for k, v in d.table.items():
            lines.append(f"{k} = {_toml_value(v)}")
        if d.model.capacity is not None:
            lines.append(f"capacity = {_toml_value(d.capacity_text or format_size(d.model.capacity))}"
                         f"  # modelled peak use: {adv.fmt_bytes(peak)}")
        if d.name in fallbacks:
            lines.append(f"fallback = {_toml_str(fallbacks[d.name])}")
    frames = rule_frames(advice)
    seen: set[tuple] = set()
    for i, p in enumerate(advice.placements):
        if i not in frames:
            continue
        key = (p.device, tuple(f.key for f in frames[i]))
        if key in seen:  # another site with the same prefix and device: one rule serves both
            continue
        seen.add(key)
        if any(f.module.startswith("[") for f in frames[i]):
            lines += ["", f"# not written: {p.site.label} has a frame in no known module"]
            continue
        s = p.site
        lines += [
            "",
            f"# {s.label}: {adv.fmt_bytes(s.peak_live_bytes)} peak live, {s.allocations} allocation(s),",
            f"#   {adv.fmt_bytes(s.accesses or 0)} read+written. {p.reason}",
            "[[rules]]",
            f"name = {_toml_str(_rule_name(s))}",
            f"site = {_toml_value([f'{f.module}+0x{f.offset:x}' for f in frames[i]])}",
            f"device = {_toml_str(p.device)}",
        ]
    return "\n".join(lines) + "\n"


def _rule_name(s: prof.Site) -> str:
    if s.function and s.location:
        return f"{s.function.split('(')[0]}@{os.path.basename(s.location)}"
    return s.function or str(s.frames[0])


def check_policy_text(text: str, path: str) -> None:
    """Parse what we wrote with the policy loader: an error here is memplace's own bug,
    reported rather than left for `memplace run` to find."""
    from memplace import policy as pol

    p = pol.from_dict(tomllib.loads(text), path)
    errors = [x for x in p.problems if x.level == "error"]
    if errors:
        raise UserError(f"internal error: the written policy does not validate: {errors[0].message}")


# ---- the command ------------------------------------------------------------------------


def load_profiles(paths: tuple[str, ...]) -> prof.Profile:
    profiles = [prof.load(p) for p in paths]
    if len(profiles) == 1:
        return profiles[0]
    from memplace.profile_merge import merge

    return merge(profiles)


def run_advice(
    profile: prof.Profile, specs: list[DeviceSpec], model: str, method: str, default: str | None, time_limit: float
) -> adv.Advice:
    if not profile.sites:
        raise UserError("the profile has no allocation sites: nothing to advise")
    from memplace.symbolize import symbolize_profile

    symbolize_profile(profile)
    return adv.advise(profile.sites, [d.model for d in specs], model=model, method=method,
                      default=default, time_limit=time_limit)


def advice_json(advice: adv.Advice, policy_path: str | None) -> dict[str, Any]:
    return {
        "policy": policy_path,
        "model": advice.model,
        "method": advice.method,
        "optimal": advice.optimal,
        "gap": advice.gap,
        "seconds": advice.seconds,
        "cost_ns": advice.cost,
        "default_cost_ns": advice.default_cost,
        "default": advice.default,
        "devices": {
            d.name: {"capacity": d.capacity, "peak": advice.peak.get(d.name, 0),
                     "sites": len(advice.on(d.name))} for d in advice.devices
        },
        "notes": advice.notes,
        "placements": [
            {
                "site": p.site.site_spec,
                "function": p.site.function,
                "location": p.site.location,
                "allocations": p.site.allocations,
                "bytes": p.site.bytes,
                "peak_live_bytes": p.site.peak_live_bytes,
                "accessed_bytes": p.site.accesses,
                "density": p.density,
                "device": p.device,
                "cost_ns": p.cost,
                "default_cost_ns": p.default_cost,
                "reason": p.reason,
            }
            for p in advice.placements
        ],
    }


def print_table(advice: adv.Advice, top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 120)  # piped: do not fold paths into slivers
    t = Table(title="Placement advice", title_justify="left")
    for col, just in (("#", "right"), ("site", "left"), ("function", "left"), ("file:line", "left"),
                      ("peak bytes", "right"), ("accessed", "right"), ("density", "right"), ("device", "left")):
        t.add_column(col, justify=just, overflow="fold")
    for i, p in enumerate(advice.placements[:top], 1):
        style = "bold green" if p.device != advice.default else None
        fn = p.site.function or "?"
        t.add_row(str(i), str(p.site.frames[0]), fn if len(fn) <= 40 else fn[:39] + "…", p.site.location or "?",
                  adv.fmt_bytes(p.site.peak_live_bytes), adv.fmt_bytes(p.site.accesses or 0),
                  f"{p.density:.3g}", p.device, style=style)
    console.print(t)
    more = len(advice.placements) - top
    if more > 0:
        console.print(f"… and {more} more site(s) (--top N shows more; --json shows all)")
    for d in advice.devices:
        cap = f" of {adv.fmt_bytes(d.capacity)}" if d.capacity is not None else ""
        console.print(f"  {d.name}: {len(advice.on(d.name))} site(s), modelled peak {adv.fmt_bytes(advice.peak[d.name])}{cap}")
    saved = advice.default_cost - advice.cost
    pct = 100 * saved / advice.default_cost if advice.default_cost else 0.0
    gap = advice.gap
    how = "optimal" if advice.optimal else (f"within {100 * gap:.3g}% of optimal" if gap is not None else "heuristic")
    console.print(f"Modelled cost {adv.fmt_ns(advice.cost)} vs {adv.fmt_ns(advice.default_cost)} all on "
                  f"{advice.default} ({pct:.1f}% less); {advice.method}, {how}, {advice.seconds:.2f} s.")


@click.command("advise")
@click.argument("profiles", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--policy-out", "policy_out", type=click.Path(dir_okay=False), help="Write the policy TOML here.")
@click.option("--device", "devices", multiple=True, metavar="NAME=SPEC",
              help="A device: NAME=numa:N|file:DIR|hugepages|system[,latency=NS][,bandwidth=GB/s][,capacity=SIZE]...")
@click.option("--capacity", "capacities", multiple=True, metavar="NAME=SIZE", help="Set or override a device's capacity.")
@click.option("--default", "default", metavar="NAME", help="Device for everything not placed (default: cheapest unlimited).")
@click.option("--model", type=click.Choice(["latency", "bandwidth"]), default="latency", show_default=True)
@click.option("--method", type=click.Choice(["auto", "milp", "greedy"]), default="auto", show_default=True)
@click.option("--time-limit", type=float, default=3.0, show_default=True, help="Seconds the solver may take.")
@click.option("--top", type=int, default=25, show_default=True, help="Rows in the table.")
@click.option("--json", "as_json", is_flag=True, help="Print the advice as JSON.")
def advise_command(profiles, policy_out, devices, capacities, default, model, method, time_limit, top, as_json):
    """Assign a profile's allocation sites to devices and write the policy.

    Minimises modelled access cost (accesses x latency, or bytes / bandwidth) under the
    devices' capacities, counting only bytes that are live at the same time.
    """
    specs = [parse_device(t) for t in devices] if devices else devices_from_machine()
    names = [d.name for d in specs]
    if len(set(names)) != len(names):
        raise UserError(f"--device: a name is given twice ({', '.join(names)})")
    apply_capacities(specs, capacities)
    if default is not None and default not in names:
        raise UserError(f"--default {default!r}: no such device (devices: {', '.join(names)})")
    profile = load_profiles(profiles)
    advice = run_advice(profile, specs, model, method, default, time_limit)
    if policy_out:
        text = policy_text(advice, specs, ", ".join(profiles))
        check_policy_text(text, policy_out)
        try:
            with open(policy_out, "w") as f:
                f.write(text)
        except OSError as e:
            raise UserError(f"{policy_out}: cannot write: {e.strerror or e}") from None
    if as_json:
        click.echo(json.dumps(advice_json(advice, policy_out), indent=2))
    else:
        print_table(advice, top)
        if policy_out:
            click.echo(f"Policy written to {policy_out}")
        else:
            click.echo("(no --policy-out: nothing written)", err=True)
