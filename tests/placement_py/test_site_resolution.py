"""Site frames resolve to ranges that contain the real return address of a malloc call.

The test programs wrap malloc (ld --wrap) and print the return address of each call,
relative to the load bias of the module it lies in (dl_iterate_phdr): what the
runtime compares against a compiled frame's lo..hi.
"""

import os
import re
import shutil
import subprocess

import pytest

from memplace.placement.sites import SiteResolver, parse_frame

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (Debian package gcc)")

WRAP = r"""
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
void *__real_malloc(size_t);
uintptr_t last_ra;
void *__wrap_malloc(size_t n) { last_ra = (uintptr_t)__builtin_return_address(0); return __real_malloc(n); }
struct q { uintptr_t addr, bias; const char *name; };
static int find(struct dl_phdr_info *info, size_t size, void *data) {
    struct q *q = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && q->addr >= start && q->addr < start + ph->p_memsz) {
            q->bias = info->dlpi_addr; q->name = info->dlpi_name; return 1;
        }
    }
    return 0;
}
void report(const char *what) {
    struct q q = { last_ra, 0, "" };
    dl_iterate_phdr(find, &q);
    printf("%s %s %#lx\n", what, q.name && q.name[0] ? q.name : "main", (unsigned long)(q.addr - q.bias));
}
"""

MAIN = WRAP + r"""
void *lib_make(size_t n);
__attribute__((noinline)) char *make(size_t n) {
    char *p = malloc(n);  /* MAKE */
    p[0] = 1;
    return p;
}
__attribute__((noinline)) char *make_other(size_t n) {
    char *p = malloc(n + 1);  /* OTHER */
    p[1] = 2;
    return p;
}
int main(void) {
    volatile char *a = make(100); report("make");
    volatile char *b = make_other(10); report("make_other");
    volatile char *c = lib_make(50); report("lib_make");
    return a[0] + b[1] + c[2] != 6;
}
"""

LIB = r"""
#include <stdlib.h>
__attribute__((noinline)) char *lib_make(size_t n) {
    char *p = malloc(n);  /* LIB */
    p[2] = 3;
    return p;
}
"""


def line_of(source: str, marker: str) -> int:
    return next(i for i, text in enumerate(source.splitlines(), 1) if marker in text)


def nm_address(path, symbol) -> int:
    out = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    return int(re.search(rf"^([0-9a-f]+) [Tt] {re.escape(symbol)}$", out, re.M).group(1), 16)


def build_id(path) -> str:
    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True, check=True).stdout
    return re.search(r"Build ID: ([0-9a-f]+)", out).group(1)


@pytest.fixture(params=[["-O0"], ["-O2"], ["-O0", "-no-pie"]], ids=["O0", "O2", "O0-nopie"])
def built(request, tmp_path):
    """Program + library in tmp_path, run once; returns (exe, lib, {what: (module, ra_offset)})."""
    flags = request.param
    (tmp_path / "prog.c").write_text(MAIN)
    (tmp_path / "lib.c").write_text(LIB)
    lib = tmp_path / "libplace.so"
    exe = tmp_path / "prog"
    subprocess.run(["gcc", "-g", *[f for f in flags if f != "-no-pie"], "-shared", "-fPIC",
                    "-Wl,--wrap=malloc", "-o", lib, tmp_path / "lib.c"], check=True)
    subprocess.run(["gcc", "-g", *flags, "-o", exe, tmp_path / "prog.c", f"-L{tmp_path}", "-lplace",
                    "-Wl,-rpath,$ORIGIN", "-Wl,--wrap=malloc", "-ldl"], check=True)
    run = subprocess.run([exe], capture_output=True, text=True, check=True)
    seen = {}
    for line in run.stdout.splitlines():
        what, module, ra = line.split()
        seen[what] = (module, int(ra, 16))
    return exe, lib, seen


def test_symbol_plus_offset_is_the_return_address(built):
    exe, lib, seen = built
    r = SiteResolver(exe)
    for func, module in (("make", exe), ("make_other", exe), ("lib_make", lib)):
        where, ra = seen[func]
        assert where == "main" if module == exe else os.path.samefile(where, lib)
        off = ra - nm_address(module, func)
        res = r.resolve(f"{func}+{off:#x}")
        assert res.warning is None
        [frame] = res.frames
        assert (frame.lo, frame.hi) == (ra, ra)
        assert frame.module.main == (module == exe) and os.path.samefile(frame.module.path, module)
        assert frame.module.build_id == build_id(module)


def test_file_line_range_contains_the_return_address_and_only_its_line(built):
    exe, lib, seen = built
    r = SiteResolver(exe)
    cases = (("make", "prog.c", MAIN, "MAKE"), ("make_other", "prog.c", MAIN, "OTHER"), ("lib_make", "lib.c", LIB, "LIB"))
    for func, source, text, marker in cases:
        _, ra = seen[func]
        line = line_of(text, marker)
        res = r.resolve(f"{source}:{line}")
        assert res.warning is None and res.frames
        assert any(f.lo <= ra <= f.hi for f in res.frames), (func, ra, res.frames)
        # The neighbouring lines' ranges do not claim this return address.
        for other in (line - 1, line + 1):
            assert not any(f.lo <= ra <= f.hi for f in r.resolve(f"{source}:{other}").frames)
    # Relative paths match on trailing components, absolute paths exactly.
    exe_dir = os.path.dirname(exe)
    line = line_of(MAIN, "MAKE")
    assert r.resolve(f"{exe_dir}/prog.c:{line}").frames == r.resolve(f"prog.c:{line}").frames
    assert r.resolve(f"elsewhere/prog.c:{line}").frames == []


def test_module_plus_offset_by_basename_path_and_build_id(built):
    exe, lib, seen = built
    r = SiteResolver(exe)
    _, ra = seen["lib_make"]
    by_name = r.resolve(f"libplace.so+{ra:#x}")
    by_path = r.resolve(f"{lib}+{ra:#x}")
    by_id = r.resolve(f"build-id:{build_id(lib)}+{ra:#x}")
    for res in (by_name, by_path, by_id):
        assert res.warning is None
        [frame] = res.frames
        assert (frame.lo, frame.hi) == (ra, ra) and os.path.samefile(frame.module.path, lib)
        assert frame.module.build_id == build_id(lib)
    [main] = r.resolve(f"prog+{seen['make'][1]:#x}").frames
    assert main.module.main


def test_return_address_follows_a_call_to_malloc(built):
    """Cross-check with the disassembler: the instruction before each return address calls malloc."""
    if shutil.which("objdump") is None:
        pytest.skip("objdump not installed (Debian package binutils)")
    exe, lib, seen = built
    for func, module in (("make", exe), ("lib_make", lib)):
        _, ra = seen[func]
        dump = subprocess.run(["objdump", "-d", "--no-show-raw-insn", module], capture_output=True,
                              text=True, check=True).stdout
        insns = [(int(m.group(1), 16), m.group(2)) for m in re.finditer(r"^\s+([0-9a-f]+):\s+(.*)$", dump, re.M)]
        prev = next(text for (addr, text), (nxt, _) in zip(insns, insns[1:]) if nxt == ra)
        assert prev.startswith("call") and "malloc" in prev, prev


def test_the_loader_lists_the_program_libraries(built):
    exe, lib, _ = built
    r = SiteResolver(exe)
    paths = [m.path for m in r.modules()]
    assert paths[0] == str(exe) and r.modules()[0].main
    assert any(os.path.samefile(p, lib) for p in paths[1:])
    assert any(os.path.basename(p).startswith("libc.so") for p in paths)


def test_frame_syntax():
    assert parse_frame("libfoo.so+0x1234") == parse_frame("libfoo.so+0x1234")
    assert parse_frame("libfoo.so+0x1234").offset == 0x1234
    assert parse_frame("solve+64").offset == 64
    assert parse_frame("build-id:ABCD+0x10").name == "abcd"
    spec = parse_frame("src/main.c:52")
    assert (spec.kind, spec.name, spec.line) == ("line", "src/main.c", 52)
    for bad in ("", "solve", "main.c:0", "main.c:", "+0x10", "build-id:+0x1", "x+0xzz"):
        with pytest.raises(ValueError):
            parse_frame(bad)
