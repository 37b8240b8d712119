"""The runtime cross-built for i386 (tools/cross_runtime.py) runs a 32-bit program in
transparent mode with its output and status unchanged. Placement, call sites and access
sampling are not there yet on i386 (docs/profiles.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cross_support import bare_and_transparent, cross_compile  # noqa: E402

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    long s = 0;
    for (int i = 0; i < 50000; i++) { char *p = malloc(i % 5000 + 1); memset(p, i, i % 5000 + 1); s += p[i % 5000]; free(p); }
    char *c = calloc(1, 3 << 20); void *r = realloc(malloc(10), 1 << 20);
    FILE *f = fopen("/proc/self/maps", "r"); int lines = 0; char l[512];
    while (fgets(l, sizeof l, f)) lines++;
    fclose(f);
    printf("sum %ld %d %d\n", s, c[4096], r != NULL && lines > 0);
    fprintf(stderr, "to stderr\n");
    return 5;
}
"""


@pytest.mark.slow
def test_i386_runtime_runs_a_program_transparently(tmp_path):
    if not os.path.exists("/lib/ld-linux.so.2"):
        pytest.skip("libc6-i386 not installed")
    exe = cross_compile("i386", tmp_path, "prog32", PROGRAM)
    bare, under = bare_and_transparent("i386", tmp_path, exe)
    assert bare.returncode == 5 and bare.stdout.startswith("sum ")
    assert (under.returncode, under.stdout, under.stderr) == (5, bare.stdout, bare.stderr)
