"""The capacity benchmark on a machine with two NUMA nodes: the fast device on one node,
the slow device on the other.

No memory cgroup and no file device: the limit is the fast node's capacity, which the
runtime enforces (a policy device's `capacity`), at 100/75/50/30% of the heap's peak.
Variants, each a policy for the runtime:

  (b) slow       every heap object on the slow node
  (c) first-fit  the fast node up to the limit in allocation order, then the slow node
                 (what a process policy preferring the fast node gives when it fills up)
  (d) memplace   the advisor's plan: fast = the fast node with the limit as capacity,
                 slow = the slow node, figures from HMAT or `memplace devices --measure`

plus (a) plain malloc, unlimited (the kernel's first touch). The policies are made here
from the profile and the machine's topology (`topology`, so that a guest's copy of /sys
can stand in for it: tests/qemu/test_two_node_capacity.py makes them on a one-node host
and runs the programs in a two-node QEMU guest).

    nodes = fast_and_slow(read_topology())        # (0, 1) on the guest
    policies = two_node_policies(profile, nodes, capacity, out_dir, topology)
"""

from __future__ import annotations

from pathlib import Path

MIB = 1 << 20
VARIANTS = ("malloc", "slow", "first-fit", "memplace")
LABELS = {"malloc": "(a) malloc", "slow": "(b) slow node", "first-fit": "(c) first fit",
          "memplace": "(d) memplace"}


def fast_and_slow(topology) -> tuple[int, int] | None:
    """(fast node, slow node) when the machine has two or more nodes with memory: the fast
    one has the lowest HMAT read latency from node 0's CPUs (else: it has CPUs, the other
    none, else the lower id); the slow one the highest. None on a one-node machine."""
    nodes = [n for n in topology.nodes if n.mem_total]
    if len(nodes) < 2:
        return None

    def latency(n):
        a = next((a for a in n.access if a.read_latency_ns), None)
        return a.read_latency_ns if a is not None else None

    if all(latency(n) is not None for n in nodes):
        key = lambda n: (latency(n), n.id)
    else:
        key = lambda n: (n.cpu_less, n.id)
    ordered = sorted(nodes, key=key)
    return ordered[0].id, ordered[-1].id


def node_device(name: str, node: int, topology, capacity: int | None = None):
    """A DeviceSpec for one node, figures from the topology's HMAT, else from
    `memplace devices --measure` (as `memplace advise --device NAME=numa:N` takes them)."""
    from memplace.advisor import solver as adv
    from memplace.advisor.device_specs import DeviceSpec, fill_measured
    from memplace.units import format_size

    n = topology.node(node)
    acc = next((a for a in n.access if a.read_latency_ns), None)
    d = DeviceSpec(name=name, kind="numa", table={"kind": "numa", "nodes": [node], "mode": "bind"},
                   capacity_text=format_size(capacity) if capacity is not None else None)
    if acc is not None:
        bw = lambda mbps: mbps * 1e6 if mbps else None
        d.model = adv.Device(name, read_latency=acc.read_latency_ns, write_latency=acc.write_latency_ns or
                             acc.read_latency_ns, read_bandwidth=bw(acc.read_bandwidth_mbps),
                             write_bandwidth=bw(acc.write_bandwidth_mbps), capacity=capacity)
        d.notes.append(f"{name}: node {node}'s HMAT figures")
    else:
        d.model = adv.Device(name, capacity=capacity)
        if not fill_measured(d):
            raise SystemExit(f"node {node}: no HMAT figures and not measured: run "
                             f"`memplace devices --measure --device {name}=numa:{node}` first")
    return d


def two_node_policies(profile_path: Path, nodes: tuple[int, int], capacity: int, out: Path,
                      topology) -> dict[str, Path]:
    """The policies of (b), (c) and (d) for a fast-node capacity, written under `out`:
    variant -> policy TOML."""
    from memplace.advisor.advice import run_advice
    from memplace.advisor.policy_writer import write_policy
    from memplace.profiling import profile as prof

    fast, slow = nodes
    cap = f"{max(capacity // MIB, 1)}MiB"
    out.mkdir(parents=True, exist_ok=True)
    policies = {}
    policies["slow"] = out / "slow.toml"
    policies["slow"].write_text(f'version = 1\ndefault = "slow"\n\n[devices.slow]\nkind = "numa"\nnodes = [{slow}]\n'
                                'mode = "bind"\n')
    policies["first-fit"] = out / f"first-fit-{cap}.toml"
    policies["first-fit"].write_text(
        f'version = 1\ndefault = "fast"\n\n[devices.fast]\nkind = "numa"\nnodes = [{fast}]\nmode = "bind"\n'
        f'capacity = "{cap}"\nfallback = "slow"\n\n[devices.slow]\nkind = "numa"\nnodes = [{slow}]\n'
        'mode = "bind"\n')
    specs = [node_device("fast", fast, topology, max(capacity // MIB, 1) * MIB),
             node_device("slow", slow, topology)]
    advice = run_advice(prof.load(profile_path), specs, "latency", "auto", "slow", 3.0)
    policies["memplace"] = out / f"memplace-{cap}.toml"
    write_policy(advice, specs, str(profile_path), str(policies["memplace"]))
    return policies


def compile_policy(policy: Path, exe: str, out: Path, topology) -> Path:
    """The compiled policy for `exe` against `topology` (a guest's, for a guest run)."""
    from memplace.placement.policy_compile import prepare

    for w in prepare(policy, exe, out, topology=topology):
        print(f"  {policy.name}: {w.message}")
    return out


def timed_run(argv: list[str], env: dict, timeout: float, log_dir: Path):
    """Run argv (no cgroup: the limit is the policy's); a limits.Outcome."""
    from limits import run_logged

    run = run_logged(argv, env, timeout, log_dir)
    status = "timeout" if run.timed_out else "ok" if run.code == 0 else "failed"
    return run.outcome(status, 0)
