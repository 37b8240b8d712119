"""`memplace devices`: the machine's memory devices as a table or JSON.

    $ memplace devices
    $ memplace devices --json --sysfs /path/to/fake/sys
"""

from __future__ import annotations

import json

import click
from rich.table import Table

from memplace.placement.devices import Node, Topology, read_topology
from memplace.console import table_console as console
from memplace.units import format_size


@click.command("devices")
@click.option("--json", "as_json", is_flag=True, help="Print every field as JSON.")
@click.option("--sysfs", default="/sys", show_default=True, metavar="ROOT",
              help="Read this sysfs tree instead of the machine's (for tests and other machines' dumps).")
def devices_command(as_json: bool, sysfs: str) -> None:
    """Show NUMA nodes (memory, CPUs or CPU-less, HMAT, tier, distances) and huge pages."""
    topo = read_topology(sysfs)
    if as_json:
        click.echo(json.dumps(topo.to_json(), indent=2))
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
