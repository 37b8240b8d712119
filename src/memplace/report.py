"""`memplace report`: what a profile and a run's statistics say, in the terminal or as a page.

    memplace report --profile profile.4242.json --policy app.toml --html report.html
    memplace report --stats memplace-stats.4242.json --json

The HTML page is one self-contained file (inline CSS and SVG, no scripts or fonts from
the network): bytes per device, top sites by accesses and by bytes, live bytes over
time, and fallbacks.

Run statistics are the JSON the runtime writes at exit::

    {"format": "memplace-stats", "version": 1, "pid": 4242, "rank": null,
     "command": ["./app"],
     "devices": [{"name": "hbm", "capacity": 2147483648, "allocations": 10,
                  "bytes": 1048576, "peak_bytes": 524288, "fallbacks": 2,
                  "fallback_bytes": 4096}],
     "sites": [{"frames": [{"module": "/app", "offset": "0x11a7"}], "rule": "hot",
                "device": "hbm", "allocations": 10, "bytes": 1048576,
                "fallbacks": 2, "fallback_bytes": 4096}]}
"""

from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import click

from memplace import profile as prof
from memplace.advisor import fmt_bytes
from memplace.errors import UserError

PALETTE = ["#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#c53030", "#319795", "#b7791f", "#4a5568"]
# Layers of the timeline: distinct from the device colours so the two never get confused.
LAYERS = ["#90cdf4", "#fbd38d", "#9ae6b4", "#d6bcfa", "#feb2b2", "#81e6d9", "#cbd5e0"]
STATS_FORMAT = "memplace-stats"


@dataclass
class DeviceUse:
    name: str
    capacity: int | None = None
    allocations: int = 0
    bytes: int = 0
    peak_bytes: int = 0
    fallbacks: int = 0
    fallback_bytes: int = 0


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


@dataclass
class Summary:
    sources: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    devices: list[DeviceUse] = field(default_factory=list)
    sites: list[SiteRow] = field(default_factory=list)
    device_origin: str = ""  # "run statistics" | "policy (modelled)" | ""
    clock_unit: str | None = None
    window: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": self.sources,
            "command": self.command,
            "device_origin": self.device_origin,
            "devices": [d.__dict__ for d in self.devices],
            "sites": [{k: v for k, v in s.__dict__.items() if k != "live"} for s in self.sites],
            "notes": self.notes,
        }


# ---- inputs -----------------------------------------------------------------------------


def load_stats(path: str) -> dict[str, Any]:
    """Read run statistics strictly: one UserError line for a bad file."""
    try:
        with open(path, "rb") as f:
            d = json.loads(f.read())
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: not memplace run statistics (not JSON, or truncated)") from None
    if not isinstance(d, dict) or d.get("format") != STATS_FORMAT:
        raise UserError(f"{path}: not memplace run statistics (no \"format\": \"{STATS_FORMAT}\")")
    if not isinstance(d.get("devices", []), list) or not isinstance(d.get("sites", []), list):
        raise UserError(f"{path}: 'devices' and 'sites' must be lists")
    return d


def _int(d: dict, k: str) -> int:
    v = d.get(k, 0)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _frame_text(fd: dict) -> str:
    off = fd.get("offset", 0)
    off = int(off, 0) if isinstance(off, str) else int(off)
    return f"{os.path.basename(fd.get('module', '?'))}+0x{off:x}"


def _policy_devices(profile: prof.Profile, policy_path: str) -> tuple[dict[tuple, str], list[DeviceUse], str]:
    """Which device each profiled site goes to under a policy (MODULE+0xOFF rules, first
    match wins), and the modelled peak bytes per device."""
    from memplace import policy as pol

    p = pol.load(policy_path)
    errors = [x for x in p.problems if x.level == "error"]
    if errors:
        raise UserError(errors[0].message)
    parsed = []
    for r in p.rules:
        frames = []
        for f in r.site:
            m = re.fullmatch(r"(.+)\+0x([0-9a-fA-F]+)", f)
            frames.append((m.group(1), int(m.group(2), 16)) if m else None)
        parsed.append((r, frames))
    assign: dict[tuple, str] = {}
    for s in profile.sites:
        dev = p.default
        size = s.bytes // max(s.allocations, 1)
        for r, frames in parsed:
            if r.size is not None and not r.size[0] <= size <= r.size[1]:
                continue
            if any(f is None for f in frames) or len(frames) > len(s.frames):
                continue
            if all(
                (mod == sf.module or os.path.basename(mod) == os.path.basename(sf.module)
                 or mod == f"build-id:{sf.build_id}") and off == sf.offset
                for (mod, off), sf in zip(frames, s.frames)
            ):
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
    if policy_path and not profile_path:
        raise UserError("--policy needs --profile (it places the profile's sites)")
    sm = Summary()
    profile = None
    if profile_path:
        profile = prof.load(profile_path)
        from memplace.symbolize import symbolize_profile

        symbolize_profile(profile)
        sm.sources.append(profile_path)
        sm.command = profile.command
        sm.clock_unit, sm.window = profile.clock_unit, profile.window
    assign: dict[tuple, str] = {}
    if policy_path and profile is not None:
        assign, sm.devices, _ = _policy_devices(profile, policy_path)
        sm.device_origin = f"policy {policy_path} (modelled from the profile)"
        sm.sources.append(policy_path)
    stats = load_stats(stats_path) if stats_path else None
    stat_sites: dict[str, dict] = {}
    if stats is not None:
        sm.sources.append(stats_path)
        sm.command = sm.command or [str(a) for a in stats.get("command", [])]
        sm.devices = [
            DeviceUse(str(d.get("name", "?")), d.get("capacity") if isinstance(d.get("capacity"), int) else None,
                      _int(d, "allocations"), _int(d, "bytes"), _int(d, "peak_bytes"),
                      _int(d, "fallbacks"), _int(d, "fallback_bytes"))
            for d in stats.get("devices", []) if isinstance(d, dict)
        ]
        sm.device_origin = "run statistics"
        for sd in stats.get("sites", []):
            if isinstance(sd, dict) and isinstance(sd.get("frames"), list) and sd["frames"]:
                stat_sites[" ".join(_frame_text(f) for f in sd["frames"] if isinstance(f, dict))] = sd
    if profile is not None:
        for s in profile.sites:
            key = " ".join(str(f) for f in s.frames)
            sd = next((v for k, v in stat_sites.items() if key.startswith(k)), None)
            sm.sites.append(SiteRow(s.label, str(s.frames[0]), s.function, s.location,
                                    (sd or {}).get("device") or assign.get(s.identity),
                                    s.allocations, s.bytes, s.peak_live_bytes, s.accesses,
                                    _int(sd, "fallbacks") if sd else 0, s.live))
    else:
        for key, sd in stat_sites.items():
            sm.sites.append(SiteRow(str(sd.get("rule") or key), key.split()[0], None, None, sd.get("device"),
                                    _int(sd, "allocations"), _int(sd, "bytes"), _int(sd, "peak_bytes"), None,
                                    _int(sd, "fallbacks")))
    if profile is not None and not any(s.accessed for s in sm.sites):
        sm.notes.append("this profile has no access counts (profile with --engine dhat to get them)")
    return sm


# ---- SVG --------------------------------------------------------------------------------


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


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


def device_bars_svg(devices: list[DeviceUse], colours: dict[str, str], width: int = 760) -> str:
    """Per device: peak use against capacity (a track when there is a limit)."""
    if not devices:
        return '<p class="empty">no devices (give --stats, or --policy with --profile)</p>'
    row, label_w = 54, 150
    bar_w = width - label_w - 20
    top = max([d.capacity or 0 for d in devices] + [d.peak_bytes for d in devices] + [d.bytes for d in devices]) or 1
    out = [f'<svg viewBox="0 0 {width} {row * len(devices) + 10}" width="100%" role="img" '
           f'xmlns="http://www.w3.org/2000/svg">']
    for i, d in enumerate(devices):
        y = 6 + i * row
        c = colours.get(d.name, PALETTE[-1])
        out.append(f'<text x="{label_w - 10}" y="{y + 20}" text-anchor="end" class="dev">{_esc(d.name)}</text>')
        if d.capacity:
            out.append(f'<rect x="{label_w}" y="{y + 6}" width="{bar_w * d.capacity / top:.1f}" height="20" rx="4" '
                       f'class="track"><title>capacity {_esc(fmt_bytes(d.capacity))}</title></rect>')
        w = bar_w * d.peak_bytes / top
        out.append(f'<rect x="{label_w}" y="{y + 6}" width="{max(w, 1.5 if d.peak_bytes else 0):.1f}" height="20" '
                   f'rx="4" fill="{c}"><title>peak {_esc(fmt_bytes(d.peak_bytes))}</title></rect>')
        cap = f" of {fmt_bytes(d.capacity)}" if d.capacity else " (no limit)"
        fb = f" · {d.fallbacks} fallback(s), {fmt_bytes(d.fallback_bytes)}" if d.fallbacks else ""
        out.append(f'<text x="{label_w}" y="{y + 44}" class="val">peak {_esc(fmt_bytes(d.peak_bytes))}{_esc(cap)} · '
                   f'{d.allocations} allocation(s), {_esc(fmt_bytes(d.bytes))} in all{_esc(fb)}</text>')
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
    layers = [(s.label, s.live + [0] * (n - len(s.live))) for s in top_sites]
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
                   f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" class="axis">{_esc(fmt_bytes(peak * frac))}</text>')
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
        from memplace.advisor import fmt_ns

        span = fmt_ns(window * n)
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


def html_page(sm: Summary) -> str:
    names = [d.name for d in sm.devices] + sorted({s.device for s in sm.sites if s.device} - {d.name for d in sm.devices})
    colours = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    grey = "#a0aec0"

    def colour(s: SiteRow) -> str:
        return colours.get(s.device, grey) if s.device else PALETTE[0]

    def tip(s: SiteRow) -> str:
        return f"{s.label} — {s.frame}; device {s.device or '?'}; peak {fmt_bytes(s.peak)}; accessed {fmt_bytes(s.accessed or 0)}"

    by_acc = sorted([s for s in sm.sites if s.accessed], key=lambda s: -(s.accessed or 0))[:15]
    by_bytes = sorted(sm.sites, key=lambda s: -s.peak)[:15]
    fallback_items = [(d.name, d.fallbacks, colours.get(d.name, grey), f"{d.fallbacks} fallback(s), {fmt_bytes(d.fallback_bytes)}")
                      for d in sm.devices if d.fallbacks]
    fallback_items += [(s.label, s.fallbacks, colour(s), tip(s)) for s in sm.sites if s.fallbacks][:10]
    total_peak = sum(s.peak for s in sm.sites)
    total_acc = sum(s.accessed or 0 for s in sm.sites)
    cards = [(str(len(sm.sites)), "allocation sites"), (fmt_bytes(sum(s.bytes for s in sm.sites)), "allocated"),
             (fmt_bytes(total_peak), "sum of site peaks")]
    if total_acc:
        cards.append((fmt_bytes(total_acc), "read + written"))
    if sm.devices:
        cards.append((str(sum(d.fallbacks for d in sm.devices)), "fallbacks"))
    legend = " ".join(f'<span class="chip" style="background:{c}">{_esc(n)}</span>' for n, c in colours.items())
    rows = "".join(
        f"<tr><td>{i}</td><td>{_esc(s.function or '?')}</td><td>{_esc(s.location or '?')}</td><td><code>{_esc(s.frame)}</code></td>"
        f'<td class="n">{s.allocations}</td><td class="n">{_esc(fmt_bytes(s.peak))}</td>'
        f'<td class="n">{_esc(fmt_bytes(s.accessed) if s.accessed is not None else "–")}</td>'
        f"<td>{f'<span class=chip style=background:{colour(s)}>{_esc(s.device)}</span>' if s.device else '–'}</td></tr>"
        for i, s in enumerate(sorted(sm.sites, key=lambda s: (-(s.accessed or 0), -s.peak))[:40], 1)
    )
    sections = [
        ("Bytes per device", f"Peak bytes on each device ({_esc(sm.device_origin or 'no device data')}); "
         "the dashed track is the capacity.", device_bars_svg(sm.devices, colours)),
        ("Top sites by accesses", "Bytes read and written through each site's objects; colour = device.",
         hbar_svg([(s.label, s.accessed or 0, colour(s), tip(s)) for s in by_acc], fmt_bytes)),
        ("Top sites by bytes", "Peak bytes live at once from each site; colour = device.",
         hbar_svg([(s.label, s.peak, colour(s), tip(s)) for s in by_bytes], fmt_bytes)),
        ("Live bytes over time", "Stacked peak live bytes per window of the largest sites.",
         timeline_svg(sm.sites, colours, sm.window, sm.clock_unit)),
        ("Fallbacks", "Allocations a device could not serve (full, or could not bind), by device and site.",
         hbar_svg(fallback_items, lambda v: f"{v:.0f}") if fallback_items else
         f'<p class="empty">{"no fallbacks" if sm.device_origin == "run statistics" else "no run statistics given (--stats)"}</p>'),
    ]
    body = "".join(f"<section><h2>{t}</h2><p class=sub>{sub}</p>{svg}</section>" for t, sub, svg in sections)
    notes = "".join(f'<p class="notes">{_esc(n)}</p>' for n in sm.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>memplace report — {_esc(" ".join(sm.command) or "profile")}</title><style>{CSS}</style></head>
<body><header><h1>memplace report</h1><p>{_esc(" ".join(sm.command))} · from {_esc(", ".join(sm.sources))}</p></header>
<main><div class="cards">{"".join(f'<div class="card"><b>{_esc(v)}</b><span>{_esc(k)}</span></div>' for v, k in cards)}</div>
{f'<p>{legend}</p>' if legend else ''}{notes}{body}
<section><h2>Sites</h2><p class=sub>Ordered by accesses, then peak bytes (first 40).</p>
<table><tr><th>#</th><th>function</th><th>file:line</th><th>site</th><th>allocs</th><th>peak</th><th>accessed</th><th>device</th></tr>{rows}</table></section>
</main></body></html>
"""


def print_summary(sm: Summary, top: int = 15) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 110)
    console.print(f"[bold]memplace report[/bold]: {' '.join(sm.command)}  [dim]({', '.join(sm.sources)})[/dim]")
    if sm.devices:
        t = Table(title=f"Devices ({sm.device_origin})", title_justify="left")
        for c in ("device", "allocations", "bytes", "peak", "capacity", "fallbacks"):
            t.add_column(c, justify="left" if c == "device" else "right")
        for d in sm.devices:
            t.add_row(d.name, str(d.allocations), fmt_bytes(d.bytes), fmt_bytes(d.peak_bytes),
                      fmt_bytes(d.capacity) if d.capacity else "-", str(d.fallbacks))
        console.print(t)
    t = Table(title=f"Top sites ({len(sm.sites)} in all)", title_justify="left")
    for c in ("function", "file:line", "site", "allocs", "peak", "accessed", "device"):
        t.add_column(c, justify="right" if c in ("allocs", "peak", "accessed") else "left")
    for s in sorted(sm.sites, key=lambda s: (-(s.accessed or 0), -s.peak))[:top]:
        t.add_row(s.function or "?", s.location or "?", s.frame, str(s.allocations), fmt_bytes(s.peak),
                  "-" if s.accessed is None else fmt_bytes(s.accessed), s.device or "-")
    console.print(t)
    for n in sm.notes:
        console.print(f"[yellow]note:[/yellow] {n}")


@click.command("report")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False), help="A profile (memplace profile).")
@click.option("--stats", "stats_path", type=click.Path(dir_okay=False), help="Run statistics (memplace run).")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), help="Place the profile's sites by this policy.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Write a self-contained HTML page here.")
@click.option("--top", type=int, default=15, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def report_command(profile_path, stats_path, policy_path, html_out, top, as_json):
    """Summarise a profile and/or a run's statistics; optionally as an HTML page."""
    sm = summarize(profile_path, stats_path, policy_path)
    if html_out:
        try:
            with open(html_out, "w") as f:
                f.write(html_page(sm))
        except OSError as e:
            raise UserError(f"{html_out}: cannot write: {e.strerror or e}") from None
    if as_json:
        click.echo(json.dumps({**sm.to_json(), "html": html_out}, indent=2))
    else:
        print_summary(sm, top)
        if html_out:
            click.echo(f"HTML report: {html_out}")
