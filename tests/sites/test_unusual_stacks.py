"""Call sites where the stack is unusual: a function run as a coroutine's entry (a walk
from it finds its return address alone), a thread whose first allocation runs on a
coroutine's stack, and a signal handler that allocates while the thread is filling its
site cache (a fill may hold the loader's lock). Each must leave placement exact."""

from __future__ import annotations

import json
import subprocess

import pytest

import sites_support as support
from sites_support import memplace

ROUNDS = 1000


def run_stats(tmp_path, policy: str, argv: list[str], timeout: int = 120) -> dict:
    path = tmp_path / "policy.toml"
    path.write_text(policy)
    stats = tmp_path / "stats.json"
    r = memplace("run", "--policy", str(path), "--stats", str(stats), "--", *argv, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(stats.read_text())["totals"]


@pytest.mark.parametrize("attach_first", [1, 0], ids=["thread-attached-on-its-stack",
                                                      "first-allocation-on-the-coroutine"])
@pytest.mark.parametrize("flags", [["-O2"], ["-O2", "-fno-omit-frame-pointer"]],
                         ids=["no-fp", "fp"])
def test_a_coroutine_entry_does_not_turn_off_deeper_rules(tmp_path, flags, attach_first):
    source = support.PROGRAMS / "coroutine.c"
    exe = support.build(tmp_path, source, flags)
    pmem = tmp_path / "pmem"
    pmem.mkdir()
    site = [f"coroutine.c:{support.marker_line(source, 'SITE', 'work')}",
            f"coroutine.c:{support.marker_line(source, 'CALLER', 'main')}"]
    policy = (f'version = 1\n[devices.pmem]\nkind = "file"\npath = "{pmem}"\n'
              f'[[rules]]\nname = "from-main"\nsite = ["{site[0]}", "{site[1]}"]\ndevice = "pmem"\n')
    for coroutine_first in (0, 1):
        totals = run_stats(tmp_path, policy, [str(exe), str(ROUNDS), str(coroutine_first), str(attach_first)])
        hits = {r["name"]: r["hits"] for r in totals["rules"]}
        devices = {d["name"]: d["allocations"] for d in totals["devices"]}
        # the coroutine's own call has no caller frame: it is not the rule's
        assert hits == {"from-main": ROUNDS}, (coroutine_first, hits)
        assert devices["pmem"] == ROUNDS, (coroutine_first, devices)


FUNCTIONS = 600


def many_sites_program(tmp_path):
    """FUNCTIONS allocating functions, one line each (more than a thread's site cache holds,
    so allocations keep filling it), and a timer's handler that allocates."""
    lines = ["#include <signal.h>", "#include <stdio.h>", "#include <stdlib.h>",
             "#include <sys/time.h>", "void *volatile sink; volatile long signals;",
             "__attribute__((noinline)) static void in_handler(void) { sink = malloc(24); free(sink); }",
             "static void on_alarm(int s) { (void)s; signals++; in_handler(); }"]
    handler_line = 6
    first = len(lines) + 1
    lines += [f"__attribute__((noinline)) static void f{i}(void) {{ sink = malloc(16); free(sink); }}"
              for i in range(FUNCTIONS)]
    lines += ["static void (*const fns[])(void) = {" + ",".join(f"f{i}" for i in range(FUNCTIONS)) + "};",
              "int main(int argc, char **argv) {",
              "    long rounds = atol(argv[1]);",
              "    struct sigaction sa = {0}; sa.sa_handler = on_alarm; sa.sa_flags = SA_RESTART;",
              "    sigaction(SIGALRM, &sa, 0);",
              "    struct itimerval every = {{0, 20}, {0, 20}}, off = {{0, 0}, {0, 0}};",
              "    setitimer(ITIMER_REAL, &every, 0);",
              f"    for (long r = 0; r < rounds; r++) for (int i = 0; i < {FUNCTIONS}; i++) fns[i]();",
              "    setitimer(ITIMER_REAL, &off, 0);",
              '    printf("signals=%ld\\n", signals); return 0; }']
    source = tmp_path / "many_sites.c"
    source.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "many_sites"
    subprocess.run(["gcc", "-O2", "-g", "-o", str(exe), str(source)], check=True)
    return exe, handler_line, first


def test_a_handler_allocating_during_a_fill_neither_hangs_nor_misplaces(tmp_path):
    exe, handler_line, first = many_sites_program(tmp_path)
    pmem = tmp_path / "pmem"
    pmem.mkdir()
    rules = [f'[[rules]]\nname = "handler"\nsite = ["many_sites.c:{handler_line}"]\ndevice = "pmem"\n']
    rules += [f'[[rules]]\nname = "f{i}"\nsite = ["many_sites.c:{first + i}"]\ndevice = "fast"\n'
              for i in range(FUNCTIONS)]
    policy = (f'version = 1\n[devices.fast]\nkind = "numa"\nnodes = [0]\n'
              f'[devices.pmem]\nkind = "file"\npath = "{pmem}"\n' + "".join(rules))
    rounds = 1500
    # before the fix this hung (the handler waited for the loader's lock its own thread
    # held in the middle of a fill), so a timeout is a failure
    totals = run_stats(tmp_path, policy, [str(exe), str(rounds)], timeout=180)
    hits = {r["name"]: r["hits"] for r in totals["rules"]}
    assert all(hits[f"f{i}"] == rounds for i in range(FUNCTIONS)), \
        {k: v for k, v in hits.items() if k != "handler" and v != rounds}
    devices = {d["name"]: d["allocations"] for d in totals["devices"]}
    assert devices["fast"] == rounds * FUNCTIONS
    assert hits["handler"] > 0 and devices["pmem"] == hits["handler"], (hits["handler"], devices)
