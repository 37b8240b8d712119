"""Policy validation: every kind of problem is one line naming the file, the device or rule, and the problem."""

import os
import shutil
import stat
import subprocess
import textwrap

import pytest

from memplace.placement.devices import read_topology
from memplace.errors import UserError
from memplace.placement.policy import check, load
from memplace.placement.sites import SiteResolver


@pytest.fixture(autouse=True)
def any_disk(monkeypatch):
    """The disk under tmp_path reads what it reads around a fault: a warning of its own
    (tests/placement_py/test_read_around.py), not what these tests check."""
    monkeypatch.setattr("memplace.placement.policy.read_around", lambda path: None)


@pytest.fixture
def write(tmp_path):
    def write(text: str, name: str = "policy.toml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path
    return write


def problems(path, sysfs, exe=None):
    policy = load(path)
    return check(policy, read_topology(sysfs), SiteResolver(exe) if exe else None)


def only(found, level, *needles, file=".toml"):
    """The one problem of `level`, checked to be one line naming the file and the needles."""
    hits = [p for p in found if p.level == level]
    assert len(hits) == 1, found
    msg = hits[0].message
    assert "\n" not in msg and msg.split(": ")[0].endswith(file), msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


GOOD = """
    version = 1
    default = "dram"
    [devices.dram]
    kind = "numa"
    nodes = [0]
    capacity = "50%"
    fallback = "system"
    [devices.big]
    kind = "numa"
    nodes = [3]
    mode = "preferred"
    capacity = "32GiB"
    fallback = "dram"
    [devices.spread]
    kind = "numa"
    nodes = [0, 1]
    mode = "weighted-interleave"
    [devices.huge]
    kind = "hugepages"
    pagesize = "2MiB"
    capacity = "64MiB"
    [devices.thp]
    kind = "hugepages"
    pagesize = "transparent"
    [[rules]]
    name = "small"
    size = "..4KiB"
    device = "system"
    [[rules]]
    site = ["libsolver.so+0x1234", "build-id:0123abcd+0x10"]
    device = "big"
"""


def test_a_good_policy_has_no_problems(write, sys4):
    found = problems(write(GOOD), sys4)
    # The two module frames are not loaded by any program given: warnings, not errors.
    assert [p.level for p in found] == ["warning", "warning"], found
    assert "libsolver.so" in found[0].message and "dlopen" in found[0].message


def test_toml_syntax_error_is_a_user_error_with_the_line(write):
    with pytest.raises(UserError, match=r"policy.toml: not valid TOML: .*line 2"):
        load(write('version = 1\n[devices.x\nkind="numa"\n'))


def test_unreadable_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nothere.toml: cannot read the policy"):
        load(tmp_path / "nothere.toml")


def test_unknown_device_in_a_rule(write, sys1):
    p = write('[[rules]]\nname = "hot"\nsize = "1MiB.."\ndevice = "hbm"\n')
    only(problems(p, sys1), "error", "rule 1 ('hot')", "device = 'hbm' is not a device")


def test_unknown_default_and_fallback(write, sys1):
    p = write('default = "fast"\n[devices.a]\nkind = "numa"\nnodes = [0]\nfallback = "slow"\n')
    found = problems(p, sys1)
    assert {p.level for p in found} == {"error"} and len(found) == 2
    assert any("default = 'fast' is not a device" in p.message for p in found)
    assert any("device 'a': fallback = 'slow' is not a device" in p.message for p in found)


def test_node_absent_is_an_error(write, sys1):
    p = write('[devices.hbm]\nkind = "numa"\nnodes = [1]\n')
    only(problems(p, sys1), "error", "device 'hbm'", "node 1 does not exist on this machine (nodes: 0)",
         'fallback = "system"')


def test_node_absent_with_a_fallback_is_a_warning(write, sys1):
    p = write('[devices.hbm]\nkind = "numa"\nnodes = [1]\nfallback = "system"\n')
    msg = only(problems(p, sys1), "warning", "device 'hbm'", "node 1 does not exist")
    assert "go to 'system'" in msg


def test_capacity_larger_than_the_node(write, sys4):
    p = write('[devices.hbm]\nkind = "numa"\nnodes = [2]\ncapacity = "9GiB"\n')
    only(problems(p, sys4), "error", "device 'hbm'", "capacity 9GiB is larger than node 2 (8GiB)")
    p = write('[devices.d]\nkind = "numa"\nnodes = [0, 1]\nmode = "interleave"\ncapacity = "33GiB"\n')
    only(problems(p, sys4), "error", "device 'd'", "larger than nodes 0, 1 together (32GiB)")


def test_percentage_above_100(write, sys1):
    p = write('[devices.d]\nkind = "numa"\nnodes = [0]\ncapacity = "150%"\n')
    only(problems(p, sys1), "error", "device 'd': capacity", "'150%'")


@pytest.mark.parametrize("chain, cycle", [
    ({"a": "b", "b": "a"}, "a -> b -> a"),
    ({"a": "a"}, "a -> a"),
    ({"a": "b", "b": "c", "c": "b"}, "b -> c -> b"),
])
def test_fallback_cycle(write, sys1, chain, cycle):
    text = "".join(f'[devices.{d}]\nkind = "numa"\nnodes = [0]\nfallback = "{f}"\n' for d, f in chain.items())
    only(problems(write(text), sys1), "error", f"fallback cycle: {cycle}")


def test_file_device_directory_missing(write, sys1, tmp_path):
    p = write(f'[devices.pmem]\nkind = "file"\npath = "{tmp_path}/nope"\n')
    only(problems(p, sys1), "error", "device 'pmem'", f"directory {tmp_path}/nope does not exist")


def test_file_device_path_is_not_a_directory(write, sys1, tmp_path):
    (tmp_path / "afile").write_text("")
    p = write(f'[devices.pmem]\nkind = "file"\npath = "{tmp_path}/afile"\n')
    only(problems(p, sys1), "error", "is not a directory")


def test_file_device_directory_not_writable(write, sys1, tmp_path):
    if os.geteuid() == 0:
        directory = "/sys"  # root may write anywhere on a normal filesystem, but not in sysfs
    else:
        directory = tmp_path / "ro"
        directory.mkdir()
        directory.chmod(stat.S_IRUSR | stat.S_IXUSR)
    p = write(f'[devices.pmem]\nkind = "file"\npath = "{directory}"\n')
    only(problems(p, sys1), "error", "device 'pmem'", f"cannot create a file in {directory}")


def test_file_device_relative_path_is_relative_to_the_policy(write, sys1, tmp_path):
    (tmp_path / "pool").mkdir()
    p = write('[devices.pmem]\nkind = "file"\npath = "pool"\ncapacity = "1MiB"\n')
    assert load(p).devices["pmem"].path == str(tmp_path / "pool")
    assert problems(p, sys1) == []


def test_system_cannot_be_redefined(write, sys1):
    only(problems(write('[devices.system]\nkind = "numa"\nnodes = [0]\n'), sys1), "error",
         "device 'system'", "built-in")


@pytest.mark.parametrize("text, needles", [
    ('version = 2\n', ["version 2 is not supported"]),
    ('colour = "red"\n', ["unknown key 'colour'"]),
    ('[devices.d]\nkind = "numa"\nnodes = [0]\ncapcity = "1GiB"\n', ["device 'd'", "unknown key 'capcity'"]),
    ('[devices.d]\nkind = "dimm"\n', ["device 'd'", "kind = 'dimm' is not one of"]),
    ('[devices.d]\nkind = "numa"\n', ["device 'd'", "needs nodes"]),
    ('[devices.d]\nkind = "numa"\nnodes = []\n', ["device 'd'", "non-empty list of node ids"]),
    ('[devices.d]\nkind = "numa"\nnodes = [0]\nmode = "spread"\n', ["device 'd'", "mode = 'spread'"]),
    ('[devices.d]\nkind = "numa"\nnodes = [0, 1]\nmode = "preferred"\n', ["takes one node"]),
    ('[devices.d]\nkind = "numa"\nnodes = [0]\ncapacity = 0\n', ["capacity must be above 0"]),
    ('[devices.d]\nkind = "numa"\nnodes = [0]\ncapacity = "lots"\n', ["device 'd': capacity", "'lots'"]),
    ('[devices.d]\nkind = "file"\n', ["device 'd'", "needs path"]),
    ('[devices.d]\nkind = "hugepages"\npagesize = "3MiB"\n', ["device 'd'", "power of two"]),
    ('[[rules]]\nname = "r"\ndevice = "system"\n', ["rule 1 ('r')", "needs a site, a size, or both"]),
    ('[[rules]]\nsite = []\ndevice = "system"\n', ["rule 1", "1 to 4 frames"]),
    ('[[rules]]\nsite = ["a.c:1","a.c:2","a.c:3","a.c:4","a.c:5"]\ndevice = "system"\n', ["1 to 4 frames"]),
    ('[[rules]]\nsite = ["solve"]\ndevice = "system"\n', ["rule 1", "'solve' is not MODULE+0xOFFSET"]),
    ('[[rules]]\nsite = ["build-id:zz+0x1"]\ndevice = "system"\n', ["build-id:HEX+0xOFFSET"]),
    ('[[rules]]\nsize = "64MiB..1MiB"\ndevice = "system"\n', ["rule 1: size", "empty range"]),
    ('[[rules]]\nsize = "..4KiB"\n', ["rule 1", "needs device"]),
    ('[[rules]]\nname = "a\\u0000b"\nsize = "1"\ndevice = "system"\n', ["rule 1", "without NUL"]),
    ('[[rules]]\nsize = "..4KiB"\ndevice = "system"\nweight = 3\n', ["rule 1", "unknown key 'weight'"]),
])
def test_schema_errors(write, sys1, text, needles):
    only(problems(write(text), sys1), "error", *needles)


def test_weighted_interleave_needs_the_kernel(write, sys1, sys4):
    text = '[devices.w]\nkind = "numa"\nnodes = [0]\nmode = "weighted-interleave"\n'
    only(problems(write(text), sys1), "error", "device 'w'", "no weighted interleave")
    assert problems(write(text), sys4) == []


def test_huge_page_pools(write, sys1):
    only(problems(write('[devices.h]\nkind = "hugepages"\npagesize = "1GiB"\n'), sys1), "warning",
         "device 'h'", "1GiB huge page pool is empty")
    only(problems(write('[devices.h]\nkind = "hugepages"\npagesize = "16GiB"\n'), sys1), "error",
         "no 16GiB pool on this machine (pools: 2MiB, 1GiB)")
    only(problems(write('[devices.h]\nkind = "hugepages"\ncapacity = "1GiB"\n'), sys1), "warning",
         "capacity 1GiB is larger than the 2MiB huge page pool (32MiB)")


def test_transparent_huge_pages_disabled(write, tmp_path):
    from fakesys import make_sysfs
    root = make_sysfs(tmp_path / "s", [dict(id=0, total_kb=1024, free_kb=1, cpulist="0", distance="10")],
                      thp="always madvise [never]")
    only(problems(write('[devices.h]\nkind = "hugepages"\npagesize = "transparent"\n'), root), "warning",
         "transparent huge pages are disabled")


@pytest.fixture
def program(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (Debian package gcc)")
    src = tmp_path / "tiny.c"
    src.write_text("#include <stdlib.h>\nint main(void) {\n  return malloc(4) == 0;\n}\n")
    exe = tmp_path / "tiny"
    subprocess.run(["gcc", "-g", "-O0", "-o", exe, src], check=True)
    return exe


@pytest.mark.parametrize("frame, needle", [
    ("nosuchfunction+0x10", "symbol 'nosuchfunction' is not among tiny and its libraries"),
    ("tiny.c:1", "no code at tiny.c:1 (nearest lines with code: 2)"),
    ("other.c:3", "no debug line information for 'other.c'"),
    ("libplugin.so+0x40", "module 'libplugin.so' is not among tiny and its libraries (it may be dlopen'ed later)"),
])
def test_unresolvable_sites_are_warnings(write, sys1, program, frame, needle):
    p = write(f'[[rules]]\nname = "r"\nsite = ["{frame}"]\ndevice = "system"\n')
    only(problems(p, sys1, exe=program), "warning", "rule 1 ('r')", frame, needle)


def test_resolvable_sites_are_fine(write, sys1, program):
    p = write('[[rules]]\nsite = ["tiny.c:3", "main+0x4", "libc.so.6+0x100"]\ndevice = "system"\n')
    assert problems(p, sys1, exe=program) == []


def test_sites_without_a_program_are_warnings(write, sys1):
    p = write('[[rules]]\nsite = ["solve+0x10"]\ndevice = "system"\n')
    only(problems(p, sys1), "warning", "give --exe PROGRAM")


def test_a_32_bit_program_is_an_error(write, sys1, tmp_path):
    src = tmp_path / "t32.c"
    src.write_text("int main(void) { return 0; }\n")
    # The i686 cross gcc coexists with the aarch64 one on Debian; gcc -m32 (gcc-multilib) does not.
    cc = ["i686-linux-gnu-gcc"] if shutil.which("i686-linux-gnu-gcc") else ["gcc", "-m32"]
    if subprocess.run([*cc, "-o", tmp_path / "t32", src], capture_output=True).returncode:
        pytest.skip("no i386 compiler links here (Debian packages gcc-i686-linux-gnu and libc6-dev-i386-cross)")
    p = write('[[rules]]\nsize = "..4KiB"\ndevice = "system"\n')
    only(problems(p, sys1, exe=tmp_path / "t32"), "error", "32-bit program", file="t32")


def test_names_that_are_not_unicode_text_are_errors_not_tracebacks():
    """A dict built in Python (the advisor's, an API user's) can hold a lone surrogate,
    which TOML cannot: check reports it, so compile never meets it."""
    from memplace.placement.policy import from_dict

    policy = from_dict({"version": 1, "default": "fast",
                        "devices": {"fast": {"kind": "numa", "nodes": [0]},
                                    "\ud800": {"kind": "numa", "nodes": [0]}},
                        "rules": [{"device": "fast", "name": "\udfff", "size": "1..2"}]}, "p")
    errors = [p.message for p in check(policy, read_topology()) if p.level == "error"]
    assert any("device '\\ud800': the name must be Unicode text" in e for e in errors), errors
    assert any("name = '\\udfff' must be a string of Unicode text" in e for e in errors), errors
