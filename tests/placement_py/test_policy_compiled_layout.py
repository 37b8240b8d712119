"""The compiled policy, byte by byte, as docs/policy.md specifies it (offsets written out here
independently of memplace's own layout tables), and its decoder."""

import os
import re
import shutil
import struct
import subprocess
import textwrap
import zlib

import pytest

from fakesys import make_sysfs
from memplace.placement.devices import read_topology
from memplace.errors import UserError
from memplace.placement.policy_compile import CompiledPolicyError, decode, prepare

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (Debian package gcc)")

PROG = """\
#include <stdlib.h>
__attribute__((noinline)) char *make(unsigned long n) {
    char *p = malloc(n);  /* MAKE */
    p[0] = 1;
    return p;
}
int main(void) {
    char *v[4];
    for (int i = 0; i < 4; i++)   /* LOOP */
        v[i] = make(16);
    return v[3][0] != 1;
}
"""
MAKE_LINE, LOOP_LINE = 3, 9
GiB, MiB = 1 << 30, 1 << 20
U64_MAX = (1 << 64) - 1


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "prog.c").write_text(PROG)
    exe = tmp_path / "prog"
    subprocess.run(["gcc", "-g", "-O0", "-o", exe, tmp_path / "prog.c"], check=True)
    sysfs = make_sysfs(tmp_path / "sys", [
        dict(id=0, total_kb=4 << 20, free_kb=1 << 20, cpulist="0-1", distance="10 20 30"),
        dict(id=2, total_kb=8 << 20, free_kb=8 << 20, cpulist="", distance="20 10 30"),
        dict(id=70, total_kb=8 << 20, free_kb=8 << 20, cpulist="", distance="30 30 10"),
    ], pools={2048: (512, 512)}, online="0,2,70")
    pmem = tmp_path / "pmem"
    pmem.mkdir()
    policy = tmp_path / "policy.toml"
    policy.write_text(textwrap.dedent(f"""\
        version = 1
        default = "dram"
        [devices.dram]
        kind = "numa"
        nodes = [0]
        capacity = "50%"
        fallback = "far"
        [devices.far]
        kind = "numa"
        nodes = [70, 2]
        mode = "interleave"
        capacity = "1GiB"
        [devices.pmem]
        kind = "file"
        path = "{pmem}"
        capacity = "256MiB"
        fallback = "dram"
        [devices.huge]
        kind = "hugepages"
        pagesize = "2MiB"
        nodes = [0]
        mode = "preferred"
        capacity = "64MiB"
        fallback = "far"
        [devices.thp]
        kind = "hugepages"
        pagesize = "transparent"
        [[rules]]
        name = "hot"
        site = ["make+0x10", "prog.c:{MAKE_LINE}"]
        size = "1MiB..64MiB"
        device = "huge"
        [[rules]]
        site = ["libplug.so+0x40"]
        device = "pmem"
        [[rules]]
        name = "gone"
        site = ["nosuchfunction+0x1"]
        device = "far"
        [[rules]]
        name = "tiny"
        size = "..4KiB"
        device = "system"
        [[rules]]
        name = "loop"
        site = ["prog.c:{LOOP_LINE}"]
        device = "thp"
        """))
    out = tmp_path / "policy.mpc"
    warnings = prepare(policy, exe, out, read_topology(sysfs))
    return exe, pmem, out.read_bytes(), warnings


def cstr(data, strtab_off, off):
    start = strtab_off + off
    return data[start: data.index(b"\0", start)].decode()


def test_header(setup):
    _, _, data, _ = setup
    (magic, version, header_size, ndevices, nmodules, nrules, default, devices_off, modules_off, rules_off,
     strtab_off, strtab_size, crc, file_size) = struct.unpack_from("<8s11IIQ", data, 0)
    assert magic == b"MPLCPOL\0" and version == 1 and header_size == 64
    assert ndevices == 6  # five named + the built-in "system", last
    assert nmodules == 2  # the program and libplug.so
    assert nrules == 1 + 1 + 1 + 2  # "gone" is left out; the loop line has two address ranges
    assert default == 0
    assert devices_off == 64 and modules_off == 64 + 6 * 160 and rules_off == modules_off + 2 * 16
    assert strtab_off == rules_off + 5 * 128 and strtab_off % 8 == 0
    assert file_size == len(data) == strtab_off + strtab_size and data[-1] == 0 and data[strtab_off] == 0
    assert crc == zlib.crc32(data[64:])


def devices(data):
    strtab_off = struct.unpack_from("<I", data, 44)[0]
    out = []
    for i in range(struct.unpack_from("<I", data, 16)[0]):
        kind, mode, capacity, fallback, name_off, path_off, flags = struct.unpack_from("<IIQiIII", data, 64 + i * 160)
        mask = struct.unpack_from("<16Q", data, 64 + i * 160 + 32)
        nodes = [w * 64 + b for w in range(16) for b in range(64) if mask[w] >> b & 1]
        path = None if path_off == 0xFFFFFFFF else cstr(data, strtab_off, path_off)
        out.append((cstr(data, strtab_off, name_off), kind, mode, capacity, fallback, path, flags, nodes))
    return out


def test_devices(setup):
    _, pmem, data, _ = setup
    assert devices(data) == [
        ("dram", 1, 0, 2 * GiB, 1, None, 0, [0]),            # 50% of node 0's 4 GiB; falls back to "far"
        ("far", 1, 2, 1 * GiB, -1, None, 0, [2, 70]),        # interleave; 70 is bit 6 of word 1
        ("pmem", 2, 0, 256 * MiB, 0, str(pmem), 0, []),
        ("huge", 3, 1, 64 * MiB, 1, None, 1 | 21 << 8, [0]),  # MAP_HUGETLB, log2(2 MiB) = 21
        ("thp", 3, 0, 0, -1, None, 2, []),                    # madvise(MADV_HUGEPAGE)
        ("system", 0, 0, 0, -1, None, 0, []),
    ]
    mask_far = struct.unpack_from("<16Q", data, 64 + 160 + 32)
    assert mask_far[0] == 1 << 2 and mask_far[1] == 1 << 6 and not any(mask_far[2:])


def build_id(path):
    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True, check=True).stdout
    return re.search(r"Build ID: ([0-9a-f]+)", out).group(1)


def test_modules(setup):
    exe, _, data, _ = setup
    modules_off, strtab_off = struct.unpack_from("<I", data, 36)[0], struct.unpack_from("<I", data, 44)[0]
    mods = [struct.unpack_from("<IIQ", data, modules_off + 16 * i) for i in range(2)]
    assert cstr(data, strtab_off, mods[0][0]) == ""  # the main executable
    assert cstr(data, strtab_off, mods[0][1]) == build_id(exe)
    assert cstr(data, strtab_off, mods[1][0]) == "libplug.so" and mods[1][1] == 0xFFFFFFFF
    assert mods[0][2] == mods[1][2] == 0


def nm_address(path, symbol):
    out = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    return int(re.search(rf"^([0-9a-f]+) [Tt] {symbol}$", out, re.M).group(1), 16)


def test_rules(setup):
    exe, _, data, _ = setup
    rules_off, strtab_off = struct.unpack_from("<I", data, 40)[0], struct.unpack_from("<I", data, 44)[0]
    rules = []
    for i in range(5):
        base = rules_off + 128 * i
        device, nframes, size_min, size_max = struct.unpack_from("<IIQQ", data, base)
        frames = [struct.unpack_from("<IIQQ", data, base + 24 + 24 * k) for k in range(4)]
        name_off, reserved = struct.unpack_from("<II", data, base + 120)
        assert reserved == 0 and all(f[1] == 0 for f in frames)
        assert all(f == (0, 0, 0, 0) for f in frames[nframes:])  # unused frames are zero
        rules.append((cstr(data, strtab_off, name_off), device, size_min, size_max, frames[:nframes]))
    make = nm_address(exe, "make")
    hot, plug, tiny, loop1, loop2 = rules
    assert hot[:4] == ("hot", 3, MiB, 64 * MiB)
    assert hot[4][0] == (0, 0, make + 0x10, make + 0x10)
    module, _, lo, hi = hot[4][1]
    assert module == 0 and make < lo <= hi < make + 0x40  # line 3 lies inside make()
    assert plug == ("", 2, 0, U64_MAX, [(1, 0, 0x40, 0x40)])
    assert tiny == ("tiny", 5, 0, 4096, [])
    assert loop1[:4] == loop2[:4] == ("loop", 4, 0, U64_MAX)
    assert loop1[4][0][3] < loop2[4][0][2]  # two disjoint ranges of the same line, in address order


def test_warnings_name_the_left_out_rule(setup):
    *_, warnings = setup
    msgs = [w.message for w in warnings]
    assert any("rule 3 ('gone')" in m and "left out" in m for m in msgs)
    assert any("libplug.so" in m and "dlopen" in m for m in msgs)


def test_decode_round_trip(setup):
    exe, pmem, data, _ = setup
    c = decode(data)
    assert [d.name for d in c.devices] == ["dram", "far", "pmem", "huge", "thp", "system"]
    assert c.devices[1].nodes == (2, 70) and c.devices[2].path == str(pmem)
    assert c.modules[0].build_id == build_id(exe) and c.modules[1].path == "libplug.so"
    assert [r.name for r in c.rules] == ["hot", "", "tiny", "loop", "loop"]
    assert c.rules[0].frames[0].lo == nm_address(exe, "make") + 0x10


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d[:40], "truncated"),
    (lambda d: b"XPLCPOL\0" + d[8:], "bad magic"),
    (lambda d: d[:8] + struct.pack("<I", 2) + d[12:], "version 2"),
    (lambda d: d[:-1], "file_size says"),
    (lambda d: d[:100] + bytes([d[100] ^ 1]) + d[101:], "checksum"),
])
def test_decode_rejects_damage(setup, mutate, reason):
    with pytest.raises(CompiledPolicyError, match=reason):
        decode(mutate(setup[2]))


def test_prepare_raises_the_first_error_and_writes_nothing(tmp_path, sys1):
    policy = tmp_path / "bad.toml"
    policy.write_text('[devices.hbm]\nkind = "numa"\nnodes = [1]\n[devices.x]\nkind = "numa"\nnodes = [5]\n')
    out = tmp_path / "out.mpc"
    with pytest.raises(UserError, match=r"bad.toml: device 'hbm': node 1 does not exist.*\(and 1 more: run memplace policy check\)"):
        prepare(policy, None, out, read_topology(sys1))
    assert not out.exists()


def test_prepare_without_a_program(tmp_path, sys1):
    policy = tmp_path / "p.toml"
    policy.write_text('default = "d"\n[devices.d]\nkind = "numa"\nnodes = [0]\n'
                      '[[rules]]\nsite = ["libx.so+0x10"]\nsize = "1KiB.."\ndevice = "system"\n')
    out = tmp_path / "p.mpc"
    warnings = prepare(policy, None, out, read_topology(sys1))
    assert len(warnings) == 1 and "libx.so" in warnings[0].message
    c = decode(out.read_bytes())
    assert c.default_device == 0 and c.modules[0].path == "libx.so"
    assert (c.rules[0].device, c.rules[0].size_min) == (1, 1024)


def test_percentages_resolve_against_what_the_device_uses(tmp_path, sys4):
    """numa: its nodes' MemTotal; THP without nodes: all nodes; huge pages: the pool on its nodes."""
    policy = tmp_path / "p.toml"
    policy.write_text(textwrap.dedent(f"""\
        [devices.hbm]
        kind = "numa"
        nodes = [2]
        capacity = "25%"
        [devices.thp]
        kind = "hugepages"
        pagesize = "transparent"
        capacity = "10%"
        [devices.gig]
        kind = "hugepages"
        pagesize = "1GiB"
        nodes = [0]
        capacity = "50%"
        [devices.two]
        kind = "hugepages"
        pagesize = "2MiB"
        capacity = "100%"
        [devices.fs]
        kind = "file"
        path = "{tmp_path}"
        capacity = "1%"
        """))
    out = tmp_path / "p.mpc"
    prepare(policy, None, out, read_topology(sys4))
    caps = {d.name: d.capacity for d in decode(out.read_bytes()).devices}
    st = os.statvfs(tmp_path)
    assert caps == {"hbm": 2 * GiB, "thp": (16 + 16 + 8 + 64) * GiB // 10, "gig": 1 * GiB,
                    "two": 64 * 2 * MiB, "fs": st.f_blocks * st.f_frsize // 100, "system": 0}
