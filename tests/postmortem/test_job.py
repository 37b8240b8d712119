"""memplace tls on several cores at once (a crashed job): threads grouped by identical values."""

from __future__ import annotations

import re

from postmortem_support import crash, memplace_json, memplace_run, need

PROG = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
__thread int t_state;
static pthread_barrier_t ready;
static void *worker(void *arg)
{
    t_state = (long)arg == 2 ? 7 : 3;
    printf("%ld t_state %d\n", (long)syscall(SYS_gettid), t_state);
    fflush(stdout);
    pthread_barrier_wait(&ready);
    pause();
    return NULL;
}
int main(void)
{
    pthread_t t;
    t_state = 3;
    printf("%ld t_state %d\n", (long)syscall(SYS_gettid), t_state);
    pthread_barrier_init(&ready, NULL, 5);
    for (long i = 0; i < 4; i++)
        pthread_create(&t, NULL, worker, (void *)i);
    pthread_barrier_wait(&ready);
    abort();
}
"""


def _cores(tmp_path, n: int):
    import subprocess

    need("gcc", "gcc")
    (tmp_path / "job.c").write_text(PROG)
    exe = tmp_path / "job"
    subprocess.run(["gcc", "-g", "-pthread", "-o", str(exe), str(tmp_path / "job.c")], check=True)
    out = []
    for i in range(n):
        d = tmp_path / f"rank{i}"
        d.mkdir()
        core, printed = crash(d, exe)
        out.append((str(core), {int(ln.split()[0]): int(ln.split()[2]) for ln in printed.splitlines()}))
    return out


def test_several_cores_grouped_by_value(tmp_path):
    cores = _cores(tmp_path, 3)
    doc = memplace_json("tls", *(c for c, _ in cores), "t_state")
    assert doc["sources"] == [c for c, _ in cores] and doc["threads"] == 15
    (var,) = doc["variables"]
    groups = {g["value"]: {(t["source"], t["tid"]) for t in g["threads"]} for g in var["groups"]}
    want: dict[int, set] = {}
    for core, printed in cores:
        for tid, v in printed.items():
            want.setdefault(v, set()).add((core, tid))
    assert groups == want and len(want[7]) == 3 and len(want[3]) == 12
    text = memplace_run("tls", *(c for c, _ in cores), "t_state").stdout
    line = next(ln for ln in text.splitlines() if ln.startswith("job:t_state"))
    assert re.match(r"job:t_state \(int\) = 3 in 12 threads; = 7 in 3 threads: \S+ tid \d+, \S+ tid \d+, \S+ tid \d+$",
                    line), line
    assert text.splitlines()[0] == "3 cores, 15 threads, threads grouped by value"


def test_one_core_grouped_and_bad_core_is_one_line(tmp_path):
    (core, printed), = _cores(tmp_path, 1)
    text = memplace_run("tls", core, "t_state", "--group").stdout
    sevens = [t for t, v in printed.items() if v == 7]
    assert f"job:t_state (int) = 3 in 4 threads; = 7 in 1 thread: tid {sevens[0]}" in text
    bad = tmp_path / "notacore"
    bad.write_bytes(b"\x7fELF" + bytes(100))
    r = memplace_run("tls", core, str(bad), "t_state", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
