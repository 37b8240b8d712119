"""`memplace devices`: the machine's memory devices as a table or JSON.

    $ memplace devices
    $ memplace devices --json --sysfs /path/to/fake/sys
    $ memplace devices --measure [--device scratch=file:/local/scratch] [--remeasure]
"""

from __future__ import annotations

import json

import click
from rich.table import Table

from memplace.placement.devices import Node, Topology, read_topology
from memplace.console import say, table_console as console
from memplace.units import format_ns, format_size


@click.command("devices")
@click.option("--json", "as_json", is_flag=True, help="Print every field as JSON.")
@click.option("--sysfs", default="/sys", show_default=True, metavar="ROOT",
              help="Read this sysfs tree instead of the machine's (for tests and other machines' dumps).")
@click.option("--measure", is_flag=True,
              help="Measure each device's latency and bandwidth (a few seconds each; cached per machine).")
@click.option("--device", "devices", multiple=True, metavar="NAME=SPEC",
              help="With --measure: measure this device instead of the machine's "
                   "(numa:N, file:DIR, hugepages[:SIZE|:transparent], system).")
@click.option("--remeasure", is_flag=True, help="With --measure: measure again, ignoring the cache.")
@click.option("--quick", is_flag=True, help="With --measure: smaller buffers, fewer passes (less precise).")
def devices_command(as_json: bool, sysfs: str, measure: bool, devices: tuple[str, ...], remeasure: bool,
                    quick: bool) -> None:
    """Show NUMA nodes (memory, CPUs or CPU-less, HMAT, tier, distances) and huge pages;
    with --measure, their latency and bandwidth as measured here."""
    from memplace.errors import UserError

    if (devices or remeasure or quick) and not measure:
        raise UserError("--device, --remeasure and --quick go with --measure")
    if measure and sysfs != "/sys":
        raise UserError(f"--measure measures this machine's memory: not with --sysfs {sysfs}")
    topo = read_topology(sysfs)
    measured, skipped = _measure(topo, devices, remeasure, quick) if measure else ([], [])
    if as_json:
        doc = topo.to_json()
        if measure:
            for m in measured:  # HMAT's figures beside the measured ones, where the firmware gives them
                node = topo.node(int(m["device"].split(":")[1])) if m["kind"] == "numa" else None
                m["hmat"] = doc["nodes"][topo.nodes.index(node)]["access"] or None if node else None
            doc["measured"] = measured
            doc["not_measured"] = skipped
        click.echo(json.dumps(doc, indent=2))
        return
    out = console()
    out.print(_node_table(topo))
    pools = ", ".join(f"{format_size(p.pagesize)}: {p.free}/{p.total} free" for p in topo.hugepages) or "none"
    out.print(f"Huge page pools: {pools}")
    out.print(f"Transparent huge pages: {topo.thp or 'not available'}")
    if topo.weighted_interleave:
        weights = ", ".join(f"node {n.id}: {n.interleave_weight}" for n in topo.nodes if n.interleave_weight)
        out.print(f"Weighted interleave: available ({weights or 'no weights set'})")
    else:
        out.print("Weighted interleave: not available (Linux 6.9+)")
    if measure:
        out.print(_measured_table(topo, measured))
        for line in skipped:
            out.print(f"Not measured: {line}")
        out.print("Single thread; latency: pointer chase over a random cycle (ns per dependent load, median); "
                  "bandwidth in GB/s (1e9 B/s); cold: a file device's pages read back from disk after eviction.")


def _measure(topo: Topology, devices: tuple[str, ...], remeasure: bool, quick: bool) -> tuple[list[dict], list[str]]:
    from memplace.advisor.device_specs import parse_device
    from memplace.placement import measure as ms

    if devices:
        targets = [ms.target_for(_spec_text(parse_device(text)), parse_device(text).name, topo) for text in devices]
        skipped: list[str] = []
    else:
        targets, skipped = ms.machine_targets(topo)
    return [ms.measure(t, quick=quick, remeasure=remeasure, say=lambda line: say(f"memplace: {line}"))
            for t in targets], skipped


def _spec_text(d) -> str:
    """A parsed --device back to the measuring program's device text."""
    if d.kind == "numa":
        nodes = d.table["nodes"]
        return f"numa:{nodes[0]}" if len(nodes) == 1 else "numa:" + "+".join(map(str, nodes))
    if d.kind == "file":
        return f"file:{d.table['path']}"
    if d.kind == "hugepages":
        return f"hugepages:{d.table['pagesize']}" if "pagesize" in d.table else "hugepages"
    return "system"


def _pages(m: dict) -> str:
    if "thp_bytes" in m:
        return f"{m['pages']}: {format_size(m['thp_bytes'])} of {format_size(m['buffer_bytes'])} in huge pages"
    if m.get("read_around") is not None:
        return f"{m['pages']} {format_size(m['read_around'])}"
    return m["pages"]


def _measured_table(topo: Topology, measured: list[dict]) -> Table:
    table = Table(title="Measured here (single thread)")
    for name, justify in (("Device", "left"), ("Measured", "left"), ("Latency", "right"), ("Read", "right"),
                          ("Write", "right"), ("Copy", "right"), ("HMAT read lat", "right"),
                          ("HMAT read BW", "right"), ("Pages", "left"), ("When", "left")):
        table.add_column(name, justify=justify)
    for m in measured:
        hmat = ["-", "-"]
        if m["kind"] == "numa":
            node = topo.node(int(m["device"].split(":")[1]))
            acc = node.access[0] if node and node.access else None
            if acc is not None:
                hmat = [f"{acc.read_latency_ns} ns" if acc.read_latency_ns else "-",
                        f"{acc.read_bandwidth_mbps / 1000:.3g} GB/s" if acc.read_bandwidth_mbps else "-"]
        when = f"{m['measured_at']}{' (cached)' if m['cached'] else ''}{' quick' if m.get('quick') else ''}"
        rows = [("resident", m)]
        if isinstance(m.get("cold"), dict):
            rows.append(("cold (evicted)", m["cold"]))
        elif m["kind"] == "file":
            rows.append(("cold", {"latency_ns": None, "bandwidth_gbps": {}, "note": m.get("cold_unavailable")}))
        for i, (label, r) in enumerate(rows):
            bw = r.get("bandwidth_gbps") or {}
            table.add_row(
                m["name"] if i == 0 else "", label,
                format_ns(r["latency_ns"]) if r.get("latency_ns") else "-",
                *(f"{bw[k]:.3g}" if bw.get(k) else "-" for k in ("read", "write", "copy")),
                *(hmat if i == 0 else ["", ""]),
                (_pages(m) if i == 0 else r.get("note") or "") or "",
                when if i == 0 else "",
            )
    return table


def _node_table(topo: Topology) -> Table:
    table = Table(title=f"Memory nodes ({topo.sysfs})")
    for name, justify in (("Node", "right"), ("CPUs", "left"), ("Total", "right"), ("Free", "right"),
                          ("Tier", "right"), ("Read lat", "right"), ("Write lat", "right"),
                          ("Read BW", "right"), ("Write BW", "right"), ("Distances", "left"),
                          ("Huge pages free/total", "left")):
        table.add_column(name, justify=justify)
    for node in topo.nodes:
        table.add_row(
            str(node.id),
            node.cpulist or "CPU-less",
            format_size(node.mem_total),
            format_size(node.mem_free),
            "-" if node.tier is None else str(node.tier),
            *_hmat(node),
            " ".join(str(d) for d in node.distances.values()),
            ", ".join(f"{format_size(p.pagesize)}: {p.free}/{p.total}" for p in node.hugepages) or "-",
        )
    return table


def _hmat(node: Node) -> list[str]:
    """HMAT figures for any initiator (access0), else for CPU initiators (access1)."""
    access = node.access[0] if node.access else None
    if access is None:
        return ["-"] * 4

    def show(value, unit):
        return "-" if value is None else f"{value} {unit}"

    return [show(access.read_latency_ns, "ns"), show(access.write_latency_ns, "ns"),
            show(access.read_bandwidth_mbps, "MB/s"), show(access.write_bandwidth_mbps, "MB/s")]
