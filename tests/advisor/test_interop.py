"""FlexMalloc / ecoHMEM files <-> memplace policies."""

from __future__ import annotations

import pytest

from advisor_support import assert_one_line_error, memplace
from memplace.elf import elf_info
from memplace.interop import flexmalloc_base, parse_locations

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

PROG = "#include <stdlib.h>\nint main(void){ void *p = malloc(64); free(p); return 0; }\n"


def test_raw_round_trip(tmp_path, cc):
    exe = cc("app", PROG)
    info = elf_info(str(exe))
    assert info.pie_or_shared
    off = info.exec_vaddr + 0x1A7  # an offset inside the executable segment
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'version = 1\ndefault = "system"\n'
        '[devices.hbm]\nkind = "numa"\nnodes = [0]\ncapacity = "1GiB"\n'
        f'[[rules]]\nname = "hot"\nsite = ["{exe}+0x{off:x}", "{exe}+0x{off + 0x20:x}"]\ndevice = "hbm"\n'
        '[[rules]]\nsize = "1MiB.."\ndevice = "hbm"\n'
    )
    loc = tmp_path / "locations"
    r = memplace("interop", "export", str(policy), "-o", str(loc), check=True)
    assert "size-only" in r.stderr
    text = loc.read_text()
    # FlexMalloc's raw addresses count from the start of the executable mapping.
    assert f"{exe}!0x1a7 > {exe}!0x1c7 @ memkind/hbwmalloc" in text
    assert ":" not in text  # any ':' would make FlexMalloc read the file as source form
    back = tmp_path / "back.toml"
    memplace("interop", "import", str(loc), "-o", str(back), "--device", "hbm=numa:0,capacity=1GiB", check=True)
    doc = tomllib.loads(back.read_text())
    assert doc["rules"] == [{"name": "line 2", "site": [f"{exe}+0x{off:x}", f"{exe}+0x{off + 0x20:x}"], "device": "hbm"}]
    assert doc["devices"]["hbm"]["nodes"] == [0]
    assert memplace("policy", "check", str(back)).returncode == 0


def test_source_form_and_ecohmem_groups(tmp_path):
    loc = tmp_path / "advisor.out"
    loc.write_text(
        "# Memory configuration for DRAM with size 4294967296 bytes\n"
        "stream.c:252 > libc-start.c:342 @ posix\n"
        "# Memory configuration for PMEM with size 0 bytes\n"
        "stream.c:253 > a.c:1 > b.c:2 > c.c:3 > d.c:4 > Unresolved:0 @ memkind/pmem\n"
    )
    defs = tmp_path / "defs"
    defs.write_text("# Memory configuration for allocator posix\nSize 4096 MBytes\n"
                    f"# Memory configuration for allocator memkind/pmem\n@ {tmp_path} @ /mnt/pmem1\n")
    out = tmp_path / "p.toml"
    r = memplace("interop", "import", str(loc), "--definitions", str(defs), "-o", str(out), check=True)
    assert "cut to the innermost 4" in r.stderr
    doc = tomllib.loads(out.read_text())
    assert doc["devices"]["dram"] == {"kind": "system", "capacity": "4GiB"}
    assert doc["devices"]["pmem"] == {"kind": "file", "path": str(tmp_path)}
    assert [r["site"] for r in doc["rules"]] == [["stream.c:252", "libc-start.c:342"], ["stream.c:253", "a.c:1", "b.c:2", "c.c:3"]]
    assert [r["device"] for r in doc["rules"]] == ["dram", "pmem"]
    # And back out in source form.
    again = tmp_path / "again"
    memplace("interop", "export", str(out), "-o", str(again), "--form", "source", check=True)
    lines = [l for l in again.read_text().splitlines() if not l.startswith("#")]
    assert lines == ["stream.c:252 > libc-start.c:342 @ posix", "stream.c:253 > a.c:1 > b.c:2 > c.c:3 @ memkind/pmem"]


def test_old_style_executable_uses_absolute_addresses(cc):
    exe = cc("nopie", PROG, "-no-pie", "-Wl,-z,noseparate-code")
    info = elf_info(str(exe))
    if info.pie_or_shared or not info.first_load_executable:
        pytest.skip("this toolchain does not make an old-style executable")
    assert flexmalloc_base(str(exe)) == 0


def test_bad_locations(tmp_path):
    bad = tmp_path / "mixed"
    bad.write_text("a.c:1 @ posix\n/bin/x!0x10 @ posix\n")
    assert_one_line_error(memplace("interop", "import", str(bad), "-o", str(tmp_path / "o.toml")), "mixes raw")
    bad.write_text("no allocator here\n")
    assert_one_line_error(memplace("interop", "import", str(bad), "-o", str(tmp_path / "o.toml")), "mixed:1")
    bad.write_text("a.c:1 @ memkind/hbwmalloc\n")
    assert_one_line_error(memplace("interop", "import", str(bad), "-o", str(tmp_path / "o.toml")), "memkind/hbwmalloc")
    bad.write_text("a.c:1 @ memkind/hbwmalloc\n")
    p = memplace("interop", "import", str(bad), "-o", str(tmp_path / "o.toml"), "--allocator", "memkind/hbwmalloc=gpu")
    assert_one_line_error(p, "gpu")


def test_parse_locations_unit():
    locs = parse_locations("# comment\n/lib/x.so!1f0 > /lib/y.so!0x20 @ posix\n", "f")
    assert locs[0].form == "raw" and locs[0].allocator == "posix"
    assert locs[0].notes  # the modules do not exist here: offsets taken as they are
