"""The policy TOML `memplace advise` writes (and `memplace interop import` reuses): devices,
default, one commented rule per placed site, checked by the policy loader before it is written.
"""

from __future__ import annotations

import json
import os
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from memplace.advisor import solver as adv
from memplace.advisor.device_specs import DeviceSpec
from memplace.errors import UserError
from memplace.profiling import profile as prof
from memplace.profiling.symbolize import short_function
from memplace.units import format_ns, format_size


def toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def toml_value(v: Any) -> str:
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v)


def rule_frames(advice: adv.Advice) -> dict[int, list[prof.Frame]]:
    """For each placed site, the shortest frame prefix that no site on another device
    shares: short rules match the runtime's capture even when deep frames vary. Sites on
    the default device get a rule only where a shorter rule would otherwise take them.
    One pass per depth over every site (which devices each prefix leads to), so 17,000
    sites take a fraction of a second, not a comparison of every pair."""
    placements = advice.placements
    keys = [tuple(f.key for f in p.site.frames) for p in placements]
    depth = max((len(k) for k in keys), default=0)
    devices_of: list[dict[tuple, set[str]]] = [{} for _ in range(depth + 1)]
    for key, p in zip(keys, placements):
        for k in range(1, len(key) + 1):
            devices_of[k].setdefault(key[:k], set()).add(rule_device(p))
    def shortest(key: tuple, device: str) -> int:
        return next((k for k in range(1, len(key) + 1) if devices_of[k][key[:k]] == {device}), len(key))

    out: dict[int, list[prof.Frame]] = {}
    ambiguous: set[tuple] = set()  # whole keys that are also the start of other devices' sites
    for i, (key, p) in enumerate(zip(keys, placements)):
        if rule_device(p) == advice.default:
            continue
        k = shortest(key, rule_device(p))
        out[i] = list(p.site.frames[:k])
        if devices_of[k][key[:k]] != {rule_device(p)}:
            ambiguous.add(key[:k])
    # A site whose walk ended early (its caller could not be unwound) has a key that is the
    # start of deeper sites' keys, and a rule is a prefix: it would take those sites too.
    # They get rules of their own to their own device, written first (policy_text).
    if ambiguous:
        for i, (key, p) in enumerate(zip(keys, placements)):
            if i not in out and any(key[:k] in ambiguous for k in range(1, len(key))):
                out[i] = list(p.site.frames[:shortest(key, rule_device(p))])
    return out


def spill_device_name(spill: adv.Spill) -> str:
    return f"{spill.device}-spill"


def rule_device(p: adv.Placement) -> str:
    """The device a placement's rule names: its spill device when it has one."""
    return spill_device_name(p.spill) if p.spill else p.device


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
        f"# Modelled access cost {format_ns(advice.cost)}, against {format_ns(advice.default_cost)} with "
        f"everything on {advice.default} ({pct:.1f}% less).",
    ]
    lines += [f"# {n}" for n in advice.notes]
    lines += ["", "version = 1", f"default = {toml_str(advice.default)}"]
    planned = {d.name: d.capacity for d in advice.devices}  # the page cache model may lower one
    for d in specs:
        if d.builtin:
            continue
        lines += ["", f"[devices.{toml_str(d.name)}]"]
        peak = advice.peak.get(d.name, 0)
        for k, v in d.table.items():
            lines.append(f"{k} = {toml_value(v)}")
        capacity = planned.get(d.name, d.model.capacity)
        text = d.capacity_text if capacity == d.model.capacity else None  # else the advice chose it
        if capacity is not None and d.ranks > 1:
            node = capacity * d.ranks
            lines.append(f"capacity = {toml_value(text or format_size(node))}"
                         f"  # modelled peak use: {format_size(peak)} per rank, {d.ranks} ranks per node")
            lines.append('scope = "node"')
        elif capacity is not None:
            lines.append(f"capacity = {toml_value(text or format_size(capacity))}"
                         f"  # modelled peak use: {format_size(peak)}"
                         + (f"; chosen by the page cache model (given: {format_size(d.model.capacity)})"
                            if text is None and d.model.capacity is not None and capacity != d.model.capacity else ""))
        if d.name in fallbacks:
            lines.append(f"fallback = {toml_str(fallbacks[d.name])}")
    by_name = {d.name: d for d in specs}
    for p in advice.placements:
        if p.spill is None:
            continue
        d = by_name[p.spill.device]
        lines += ["", f"# the room {d.name} has left after its planned peak, for {p.site.label}: what does not",
                  f"# fit goes to {p.device}", f"[devices.{toml_str(spill_device_name(p.spill))}]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in d.table.items()]
        scope = d.ranks > 1
        lines.append(f"capacity = {toml_value(f'{p.spill.capacity * d.ranks >> 20}MiB')}")  # rounded down
        if scope:
            lines.append('scope = "node"')
        lines.append(f"fallback = {toml_str(p.device)}")
    frames = rule_frames(advice)
    seen: set[tuple] = set()
    names: dict[str, int] = {}
    # longer rules first: the first rule that matches decides, and a shorter rule whose
    # frames begin a longer one's must not take that one's sites
    for i in sorted(frames, key=lambda i: (-len(frames[i]), i)):
        p = advice.placements[i]
        key = (rule_device(p), tuple(f.key for f in frames[i]))
        if key in seen:  # another site with the same prefix and device: one rule serves both
            continue
        seen.add(key)
        if any(f.module.startswith("[") for f in frames[i]):
            lines += ["", f"# not written: {p.site.label} has a frame in no known module"]
            continue
        s = p.site
        name = _rule_name(s, len(frames[i]))
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:  # every rule its own name: stats and reports trace hits to it
            name = f"{name}#{names[name]}"
        accessed = f"{format_size(s.accesses)} read+written" if s.accesses is not None else "accesses not measured"
        lines += [
            "",
            f"# {s.label}: {format_size(s.peak_live_bytes)} peak live, {s.allocations} allocation(s),",
            f"#   {accessed}. {p.reason}",
            "[[rules]]",
            f"name = {toml_str(name)}",
            f"site = {toml_value([f'{f.module}+0x{f.offset:x}' for f in frames[i]])}",
            f"device = {toml_str(rule_device(p))}",
        ]
    return "\n".join(lines) + "\n"


def _rule_name(s: prof.Site, frames: int = 1) -> str:
    """function@file:line of each of the rule's frames, innermost first ("<" between)."""
    parts = []
    for i in range(frames):
        sym = s.symbol(i)
        function = short_function(sym.function) if sym and sym.function else None
        if function and sym.location:
            parts.append(f"{function}@{os.path.basename(sym.location)}")
        else:
            parts.append(function or str(s.frames[i]))
    return "<".join(parts)


def check_policy_text(text: str, path: str) -> None:
    """Parse what we wrote with the policy loader: an error here is memplace's own bug,
    reported rather than left for `memplace run` to find."""
    from memplace.placement import policy as pol

    p = pol.from_dict(tomllib.loads(text), path)
    errors = [x for x in p.problems if x.level == "error"]
    if errors:
        raise UserError(f"internal error: the written policy does not validate: {errors[0].message}")


def write_policy(advice: adv.Advice, specs: list[DeviceSpec], source: str, path: str) -> None:
    """The policy text, checked by the policy loader, written to `path` (UserError if it cannot be)."""
    text = policy_text(advice, specs, source)
    check_policy_text(text, path)
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise UserError(f"{path}: cannot write: {e.strerror or e}") from None
