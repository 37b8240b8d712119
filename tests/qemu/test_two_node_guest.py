"""Placement on a machine with two NUMA nodes: a QEMU guest with a CPU-less node 1.

This machine has one node, so node 1 is only testable in a guest (tests/qemu/guest.py).
Two boots: the first copies the guest's sysfs out and checks that plain mbind puts pages
on node 1; the second runs a program under libmemplace.so with a policy compiled here
against the guest's topology, and checks with move_pages where each object landed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from guest import HMAT, NODE_MEMORY_MIB, Boot, Guest, GuestUnavailable, Step, sysfs_dump_step, write_sysfs_dump

pytestmark = pytest.mark.slow

PROGRAMS = Path(__file__).parent / "programs"
SRC = Path(__file__).resolve().parents[2] / "src"
RUNTIME_GUEST = "/lib/memplace/libmemplace.so"
POLICY_GUEST = "/policy.mpc"


def _guest(workdir: Path) -> Guest:
    try:
        return Guest.find(workdir)
    except GuestUnavailable as e:
        pytest.skip(str(e))


def _compile(out_dir: Path, name: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (Debian package gcc)")
    out = out_dir / name
    # -O0: every malloc call stays a call in its own function, at the line that says so.
    subprocess.run(["gcc", "-O0", "-g", "-Wall", "-I", str(PROGRAMS), "-o", str(out), str(PROGRAMS / f"{name}.c")],
                   check=True, capture_output=True, text=True)
    return out



def _objects(output: str) -> dict[str, dict[str, int]]:
    """'object A addr=0x.. pages=1024 node0=1024 node1=0 other=0' lines -> {"A": {...}}."""
    out = {}
    for m in re.finditer(r"^object (\S+) addr=\S+ ((?:\w+=\d+ ?)+)$", output, re.M):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


def _kernel_reports_hmat(kernel: str) -> bool | None:
    """From the image's config file next to it: HMAT parsed and exported to sysfs? None if unknown."""
    config = Path(kernel).with_name(Path(kernel).name.replace("vmlinuz", "config", 1))
    if not config.is_file():
        return None
    text = config.read_text()
    return all(f"\n{opt}=y" in text for opt in ("CONFIG_ACPI_HMAT", "CONFIG_HMEM_REPORTING"))


# -- first boot: the guest's topology, and plain mbind ------------------------------------------


@pytest.fixture(scope="module")
def first_boot(tmp_path_factory):
    work = tmp_path_factory.mktemp("guest1")
    g = _guest(work)
    g.add_program(_compile(work, "mbind_node"), "/bin/mbind_node")
    boot = g.boot([
        sysfs_dump_step("sysfs"),
        Step("bind1", "/bin/mbind_node 1 64"),
        Step("bind0", "/bin/mbind_node 0 64"),
        Step("bind2", "/bin/mbind_node 2 1"),
    ])
    print(f"first guest boot: {boot.seconds:.1f} s")
    boot.require("sysfs", "bind1", "bind0", "bind2")
    return g, boot


@pytest.fixture(scope="module")
def guest_sysfs(first_boot, tmp_path_factory) -> Path:
    """The guest's node, memory tier and huge page files, recreated on the host."""
    return write_sysfs_dump(first_boot[1].steps["sysfs"].output, tmp_path_factory.mktemp("guest-sys") / "sys")


def test_guest_shows_node1_without_cpus(first_boot, guest_sysfs):
    g, _ = first_boot
    nodes = guest_sysfs / "devices/system/node"
    assert sorted(p.name for p in nodes.glob("node[0-9]*")) == ["node0", "node1"]
    assert (nodes / "node0/cpulist").read_text().strip() == "0-1"
    assert (nodes / "node1/cpulist").read_text().strip() == ""
    assert (nodes / "has_cpu").read_text().strip() == "0"
    assert (nodes / "has_memory").read_text().strip() == "0-1"
    if _kernel_reports_hmat(g.kernel) is False:
        pytest.skip(f"{g.kernel}: kernel built without CONFIG_ACPI_HMAT/CONFIG_HMEM_REPORTING; HMAT not checked")
    for h in HMAT:
        init = nodes / f"node{h.target}/access0/initiators"
        assert (init / "node0").is_dir(), f"node {h.target}: initiator node0 missing from {init}"
        assert int((init / "read_latency").read_text()) == h.latency_ns
        assert int((init / "write_bandwidth").read_text()) == h.bandwidth_mbps


def test_devices_reads_the_guest_topology(first_boot, guest_sysfs):
    from memplace.placement.devices import read_topology

    topo = read_topology(sysfs=guest_sysfs)
    assert [n.id for n in topo.nodes] == [0, 1]
    n0, n1 = topo.nodes
    assert n0.cpus == [0, 1] and not n0.cpu_less
    assert n1.cpus == [] and n1.cpu_less
    assert n0.distances == {0: 10, 1: 28} and n1.distances == {0: 28, 1: 10}
    for n in (n0, n1):  # each node's share of -m, less what firmware and the kernel keep
        assert 0.8 * (NODE_MEMORY_MIB << 20) < n.mem_total <= NODE_MEMORY_MIB << 20
    if _kernel_reports_hmat(first_boot[0].kernel) is not False:
        for h in HMAT:
            access = next(a for a in topo.node(h.target).access if a.klass == 0)
            assert access.initiators == [0]
            assert (access.read_latency_ns, access.write_latency_ns) == (h.latency_ns, h.latency_ns)
            assert (access.read_bandwidth_mbps, access.write_bandwidth_mbps) == (h.bandwidth_mbps, h.bandwidth_mbps)

    # The command line reads the same copy.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(SRC), os.environ.get("PYTHONPATH")))))
    r = subprocess.run([sys.executable, "-m", "memplace", "devices", "--json", "--sysfs", str(guest_sysfs)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    nodes = shown["nodes"] if isinstance(shown, dict) else shown
    assert [(n["id"], n["cpu_less"]) for n in nodes] == [(0, False), (1, True)]


def test_mbind_puts_pages_on_the_cpu_less_node(first_boot):
    _, boot = first_boot
    for node in (0, 1):
        step = boot.steps[f"bind{node}"]
        obj = _objects(step.output)["mapping"]
        assert obj["pages"] == (64 << 20) // 4096
        assert obj[f"node{node}"] == obj["pages"], step.output
        assert step.status == 0
    # A node the guest does not have is refused by the kernel, not silently ignored.
    bad = boot.steps["bind2"]
    assert bad.status == 1 and "Invalid argument" in bad.output, bad.output


# -- second boot: memplace places each call site on its node ----------------------------------


def _site_line(source: Path, marker: str) -> int:
    return next(i for i, line in enumerate(source.read_text().splitlines(), 1) if marker in line)


def _return_offset(exe: Path, function: str, callee: str = "malloc") -> int:
    """Offset into `function` of the instruction after its call to `callee`: that call's return address."""
    if shutil.which("objdump") is None:
        pytest.skip("objdump not installed (Debian package binutils)")
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--disassemble={function}", str(exe)],
                          check=True, capture_output=True, text=True).stdout
    start = int(re.search(rf"^([0-9a-f]+) <{function}>:", text, re.M).group(1), 16)
    insns = [(int(a, 16), rest) for a, rest in re.findall(r"^\s+([0-9a-f]+):\s+(.*)$", text, re.M)]
    for (addr, insn), (next_addr, _) in zip(insns, insns[1:]):
        if insn.startswith("call") and f"<{callee}@plt>" in insn:
            return next_addr - start
    raise AssertionError(f"no call to {callee} in {function}:\n{text}")


POLICY = """\
version = 1
default = "system"

[devices.near]
kind = "numa"
nodes = [0]
capacity = "256MiB"

[devices.far]
kind = "numa"
nodes = [1]
capacity = "256MiB"

[[rules]]
name = "A"
site = ["{site_a}"]
device = "near"

[[rules]]
name = "B"
site = ["{site_b}"]
device = "far"
"""

# (step name, under memplace?, process policy preferring this node or None)
RUNS = [("plain", False, None), ("plain-prefer1", False, 1),
        ("placed", True, None), ("placed-prefer1", True, 1)]


@pytest.fixture(scope="module")
def placement_boot(guest_sysfs, tmp_path_factory):
    from memplace.placement.devices import read_topology
    from memplace.placement.policy_compile import decode, prepare
    from memplace.launch.runtime_path import runtime_path

    work = tmp_path_factory.mktemp("guest2")
    g = _guest(work)
    exe = _compile(work, "two_sites")
    site_a = f"two_sites.c:{_site_line(PROGRAMS / 'two_sites.c', 'SITE A')}"
    site_b = f"alloc_b+{_return_offset(exe, 'alloc_b'):#x}"
    policy_toml = work / "policy.toml"
    policy_toml.write_text(POLICY.format(site_a=site_a, site_b=site_b))
    # This machine has one node: compile against the guest's topology.
    compiled = work / "policy.mpc"
    warnings = prepare(policy_toml, exe, compiled, topology=read_topology(sysfs=guest_sysfs))
    assert not warnings, [w.message for w in warnings]
    policy = decode(compiled.read_bytes())
    assert {r.name for r in policy.rules} == {"A", "B"}
    assert [d.nodes for d in policy.devices[:2]] == [(0,), (1,)]

    g.add_program(exe, "/bin/two_sites")
    g.add_program(runtime_path(), RUNTIME_GUEST)
    g.add_file(POLICY_GUEST, compiled)
    steps = []
    for name, placed, prefer in RUNS:
        env = (f"LD_PRELOAD={RUNTIME_GUEST} MEMPLACE_POLICY={POLICY_GUEST} "
               f"MEMPLACE_STATUS=/tmp/status-{name} MEMPLACE_STATS=/tmp/stats-{name} ") if placed else ""
        cmd = f"mkdir -p /tmp/stats-{name}; {env}/bin/two_sites {'' if prefer is None else prefer}"
        if placed:  # what the runtime said about itself, for the failure message
            cmd += f"; s=$?; cat /tmp/status-{name}; cat /tmp/stats-{name}/* 2>/dev/null; exit $s"
        steps.append(Step(name, cmd))
    boot = g.boot(steps)
    print(f"second guest boot: {boot.seconds:.1f} s; policy sites A={site_a} B={site_b}")
    boot.require(*(name for name, _, _ in RUNS))
    return boot, site_a, site_b


def _where(boot: Boot, name: str) -> dict[str, dict[str, int]]:
    step = boot.steps[name]
    objs = _objects(step.output)
    assert step.status == 0 and set(objs) == {"A", "B", "C"}, f"{name}: exit {step.status}\n{step.output}"
    return objs


def _all_on(obj: dict[str, int], node: int) -> bool:
    return obj["pages"] > 0 and obj[f"node{node}"] == obj["pages"]


def test_without_memplace_objects_follow_the_process_policy(placement_boot):
    """The control: with no runtime, every object lands where the process policy says."""
    boot = placement_boot[0]
    for name, prefer in (("plain", 0), ("plain-prefer1", 1)):
        objs = _where(boot, name)
        assert all(_all_on(o, prefer) for o in objs.values()), f"{name}: {objs}"


def test_policy_rules_put_objects_on_their_nodes(placement_boot):
    """Rule A (node 0) and rule B (node 1) hold whatever the process policy prefers;
    site C has no rule and goes to the next allocator, so it follows the process policy."""
    boot, site_a, site_b = placement_boot
    for name, prefer in (("placed", 0), ("placed-prefer1", 1)):
        objs = _where(boot, name)
        detail = f"{name} (A={site_a} -> node 0, B={site_b} -> node 1): {objs}\n{boot.steps[name].output}"
        assert "mode=placing" in boot.steps[name].output, detail  # the runtime took the policy
        assert _all_on(objs["A"], 0), detail
        assert _all_on(objs["B"], 1), detail
        assert _all_on(objs["C"], prefer), detail
