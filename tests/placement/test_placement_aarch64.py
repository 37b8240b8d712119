"""The runtime cross-built for aarch64 (tools/cross_runtime.py), run under qemu-aarch64:
transparent mode leaves a program's output and status alone; a one-frame rule and
two-frame rules (the aarch64 call-site walk) put blocks on file devices. qemu-user does not
implement mbind (ENOSYS), so NUMA devices fall back there, and these tests use file
devices only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from placement_support import PROGRAMS, line_of, where

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cross_support import (  # noqa: E402
    bare_and_transparent, cross_compile, cross_runtime_for, run_in_guest, unwind_tables,
)

pytestmark = pytest.mark.slow

EXIT_STATUS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    long s = 0;
    for (int i = 0; i < 20000; i++) { char *p = malloc(i % 3000 + 1); memset(p, i, i % 3000 + 1); s += p[i % 3000]; free(p); }
    char *big = calloc(1, 8 << 20); void *q = realloc(malloc(10), 1 << 20);
    printf("sum %ld %d %p\n", s, big[12345], q != NULL ? (void *)1 : NULL);
    fprintf(stderr, "to stderr\n");
    return 7;
}
"""


def program(tmp_path: Path, name: str) -> Path:
    (tmp_path / "where.h").write_text((PROGRAMS / "where.h").read_text())  # beside the source
    return cross_compile("aarch64", tmp_path, name, (PROGRAMS / f"{name}.c").read_text())


def placed(tmp_path: Path, exe: Path, policy_text: str) -> tuple:
    from memplace.placement.policy_compile import prepare_inputs

    runtime = cross_runtime_for("aarch64")
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text)
    mpc = tmp_path / "policy.mpc"
    prepare_inputs(str(policy), str(exe), str(mpc))
    stats = tmp_path / "stats"
    stats.mkdir()
    r = run_in_guest("aarch64", exe, [], {"MEMPLACE_POLICY": str(mpc), "MEMPLACE_STATS": str(stats),
                                         "MEMPLACE_UNWIND": unwind_tables("aarch64", exe, runtime, tmp_path / "unwind")},
                     runtime)
    [text] = [p.read_text() for p in stats.iterdir()]
    devices = {w[-1]: [int(x) for x in w[2:-1]] for w in (line.split() for line in text.splitlines())
               if w[0] == "device"}
    rules = {w[-1]: [int(x) for x in w[2:-1]] for w in (line.split() for line in text.splitlines()) if w[0] == "rule"}
    return r, devices, rules


def file_devices(tmp_path: Path, *names: str) -> str:
    out = "version = 1\n"
    for n in names:
        (tmp_path / n).mkdir()
        out += f'[devices.{n}]\nkind = "file"\npath = "{tmp_path / n}"\ncapacity = "256MiB"\n'
    return out


def test_transparent_runtime_leaves_output_and_status_alone(tmp_path):
    exe = cross_compile("aarch64", tmp_path, "status", EXIT_STATUS)
    bare, under = bare_and_transparent("aarch64", tmp_path, exe)
    assert bare.returncode == 7 and (under.returncode, under.stdout, under.stderr) == (7, bare.stdout, bare.stderr)


def test_one_frame_rule_puts_its_block_on_the_file_device(tmp_path):
    exe = program(tmp_path, "sites")
    r, devices, rules = placed(tmp_path, exe, file_devices(tmp_path, "pmem") + f"""
[[rules]]
name = "hot"
site = ["sites.c:{line_of('sites.c', 'hot')}"]
device = "pmem"
""")
    assert r.returncode == 0, r.stderr
    w = where(r.stdout)
    assert w["hot"]["file"].startswith(str(tmp_path / "pmem") + "/") and w["hot"]["file"].endswith("(deleted)")
    for other in ("cold", "helper", "strdup"):
        assert w[other]["file"] == "-", w
    assert rules["hot"][0] == 1 and rules["hot"][1] == 1 << 20, rules
    assert devices["pmem"][1] == 1 << 20, devices


def test_two_frame_rules_tell_callers_apart(tmp_path):
    """The second frame comes from the aarch64 call-site walk (unwind tables of the guest's
    modules): alternating callers each take their own rule."""
    exe = program(tmp_path, "two_callers")
    site = f"two_callers.c:{line_of('two_callers.c', 'tc_alloc')}"
    r, devices, rules = placed(tmp_path, exe, file_devices(tmp_path, "one", "two") + f"""
[[rules]]
name = "first"
site = ["{site}", "two_callers.c:{line_of('two_callers.c', 'tc_first')}"]
device = "one"
[[rules]]
name = "second"
site = ["{site}", "two_callers.c:{line_of('two_callers.c', 'tc_second')}"]
device = "two"
""")
    assert r.returncode == 0 and r.stdout == "done\n", r.stderr
    assert rules["first"][0] == 5000 and rules["second"][0] == 5000, rules
    assert devices["one"][0] == 5000 and devices["two"][0] == 5000, devices
