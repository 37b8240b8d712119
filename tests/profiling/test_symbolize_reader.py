"""The symbolizer's own DWARF reader (memplace.dwarf_reader) gives the answers of the
pyelftools-based symbolizer it replaced (tests/profiling/pyelftools_symbols.py), address
by address: function, file:line and the chain of inlined calls, on programs compiled here
(C with nested inline functions, C++ with inlined std::vector and std::make_shared) and on
the dynamic loader's Debian debug file.

One difference, on purpose: an address outside every compilation unit (start-up code,
padding between functions, code without debug info, data) had the line of whatever row
came before it in the whole file, however far (the Python executable's one unit, main()
in python.c, named every address of the interpreter "python.c:15"; .rodata of the C++
program below got "stl_vector.h:1894"); it now has no line. Function names are the same.
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest
from pyelftools_symbols import ReferenceSymbols

from memplace.elf import elf_info, separate_debug_file
from memplace.profiling.symbolize import ModuleSymbols

HEADER = r"""
#include <stdlib.h>
static inline void *grab(size_t n) { void *p = malloc(n); if (p) ((char *)p)[0] = 1; return p; }
static inline void *grab_twice(size_t n) { void *a = grab(n); free(grab(n + 1)); return a; }
"""

C_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include "helper.h"
static inline void *outer(size_t n) { return grab_twice(n * 2); }
__attribute__((noinline)) void *direct(size_t n) { return calloc(1, n); }
int main(int argc, char **argv) {
    void *keep[8];
    for (int i = 0; i < 8; i++)
        keep[i] = (i & 1) ? outer((size_t)argc + i) : direct((size_t)i + 16);
    for (int i = 0; i < 8; i++) free(keep[i]);
    printf("%d\n", argc);
    return 0;
}
"""

CXX_SOURCE = r"""
#include <memory>
#include <string>
#include <vector>
struct Cell { double v[4]; };
__attribute__((noinline)) std::vector<int> fill(int n) {
    std::vector<int> v;
    for (int i = 0; i < n; i++) v.push_back(i);
    return v;
}
int main(int argc, char **) {
    auto cell = std::make_shared<Cell>();
    std::string name(40 + argc, 'x');
    return (int)fill(argc * 100).size() + (int)cell->v[0] + (int)name.size() - 141;
}
"""


def return_addresses(module: str) -> list[int]:
    """The address after every call instruction: what a site records."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", module], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    addrs = []
    for k, line in enumerate(out[:-1]):
        if re.match(r"\s*[0-9a-f]+:\s+call", line):
            after = re.match(r"\s*([0-9a-f]+):", out[k + 1])
            if after:
                addrs.append(int(after.group(1), 16))
    return addrs


def compare(module: str, offsets: list[int]) -> tuple[int, int, int]:
    """Checks every offset; returns (answered, with inlined calls, outside every unit)."""
    new, old = ModuleSymbols(module), ReferenceSymbols(module)
    new.inlined([o - 1 for o in offsets])
    old.inlined([o - 1 for o in offsets])
    answered = inlined = outside = 0
    for o in offsets:
        got, want = new.lookup(o), old.lookup(o)
        if not new._units_of(o - 1):
            outside += 1
            assert got is None or (got.file is None and got.inlined == ()), hex(o)
            assert got is None or got.function == (want.function if want else None), hex(o)
            assert want is None or want.function is None or got is not None, hex(o)
            continue
        assert got == want, (hex(o), got, want)
        answered += got is not None and got.file is not None
        inlined += bool(got and got.inlined)
    return answered, inlined, outside


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("symbolize")
    (tmp / "helper.h").write_text(HEADER)
    (tmp / "prog.c").write_text(C_SOURCE)
    (tmp / "prog.cc").write_text(CXX_SOURCE)
    subprocess.run(["gcc", "-O2", "-g", "-o", str(tmp / "prog"), str(tmp / "prog.c")], check=True)
    subprocess.run(["g++", "-O2", "-g", "-o", str(tmp / "progxx"), str(tmp / "prog.cc")], check=True)
    return tmp


@pytest.mark.parametrize("name", ["prog", "progxx"])
def test_same_answers_as_pyelftools_on_programs_built_here(programs, name):
    module = str(programs / name)
    info = elf_info(module)
    calls = return_addresses(module)
    every = list(range(info.lo + 1, info.hi))  # every byte: between functions too
    answered, inlined, outside = compare(module, sorted(set(calls + every)))
    assert answered > 100 and inlined > 10 and outside > 100


def test_inlined_calls_name_the_programs_own_lines(programs):
    """The C program's malloc called from grab(), inlined into grab_twice(), into outer(),
    into main(): the chain names them innermost first, with the lines in the sources."""
    module = str(programs / "prog")
    ms = ModuleSymbols(module)
    lines = C_SOURCE.splitlines()
    chains = [ms.lookup(o) for o in return_addresses(module)]
    chains = [s for s in chains if s and s.file == "helper.h" and len(s.inlined) >= 2]
    assert chains, "no call inlined through grab_twice()"
    for s in chains:
        fns = [f for f, _, _ in s.inlined]
        assert fns[-1] == "main" and "outer" in fns
        file, line = s.inlined[-1][1:]
        assert file == "prog.c" and "outer(" in lines[line - 1]


def test_same_answers_as_pyelftools_on_the_dynamic_loader():
    ld = str(Path("/lib64/ld-linux-x86-64.so.2").resolve())
    info = elf_info(ld)
    if info is None or separate_debug_file(info.build_id) is None:
        pytest.skip("needs Debian package libc6-dbg (the loader's debug file)")
    rng = random.Random(7)
    calls = return_addresses(ld)
    offsets = sorted(set(rng.sample(calls, min(1500, len(calls))) +
                         [rng.randrange(info.lo + 1, info.hi) for _ in range(1500)]))
    answered, inlined, outside = compare(ld, offsets)
    assert answered > 1000 and inlined > 50 and outside > 0


def test_answers_are_kept_per_build_id_and_made_again_when_the_module_changes(programs, tmp_path,
                                                                            monkeypatch):
    """symbolize_profile keeps each module's answers in the cache (symbols/<build-id>): a
    second profile is answered from there; a damaged entry, or a module whose file changed,
    is read again from the module."""
    import marshal
    import os
    import shutil

    from memplace.profiling import profile as prof
    from memplace.profiling.symbolize import symbolize_profile

    monkeypatch.setenv("MEMPLACE_CACHE", str(tmp_path / "cache"))
    module = tmp_path / "prog"
    shutil.copy(programs / "prog", module)
    offsets = return_addresses(str(module))

    def symbols() -> list:
        p = prof.Profile("runtime", ["prog"], [prof.Site((prof.Frame(str(module), None, o),), 1, 0, 1, 1)
                                               for o in offsets])
        symbolize_profile(p)
        return [s.symbol(0) for s in p.sites]

    first = symbols()
    assert first == [ModuleSymbols(str(module)).lookup(o) for o in offsets]
    entry, = (tmp_path / "cache" / "symbols").iterdir()
    assert entry.name.startswith(elf_info(str(module)).build_id)
    stamp, table = marshal.loads(entry.read_bytes())
    assert len(table) == len(set(offsets))
    # answered from the cache: an entry changed there shows
    table = {a: ("from_the_cache", None, None, ()) for a in table}
    entry.write_bytes(marshal.dumps((stamp, table)))
    assert {s.function for s in symbols()} == {"from_the_cache"}
    # the module's file changed (same build-id, new mtime): read again
    os.utime(module, (1, 1))
    assert symbols() == first
    entry.write_bytes(b"\x00damaged")
    assert symbols() == first
