"""`memplace devices` and `memplace policy ...` as a user runs them: bad input is one line on
stderr and exit status 2, never a traceback; good input gives tables or JSON."""

import json

import pytest

from memplace.placement.policy_compile import decode
from support import assert_one_line_error as one_line_error

GOOD = """\
default = "dram"
[devices.dram]
kind = "numa"
nodes = [0]
capacity = "1GiB"
[[rules]]
name = "plugin"
site = ["libplugin.so+0x40"]
device = "dram"
"""


@pytest.fixture
def files(tmp_path):
    def make(name, content):
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        return path
    return make


def test_devices_bad_input(cli, tmp_path, files):
    one_line_error(cli("devices", "--sysfs", tmp_path / "nowhere"), "no NUMA nodes found")
    one_line_error(cli("devices", "--bogus"), "No such option")
    node = tmp_path / "junk/devices/system/node/node0"
    node.mkdir(parents=True)
    (node / "cpulist").write_text("x-y\n")
    one_line_error(cli("devices", "--sysfs", tmp_path / "junk"), "cpulist", "unexpected contents")


def test_policy_check_bad_input(cli, tmp_path, files, sys1):
    one_line_error(cli("policy", "check", tmp_path / "none.toml"), "none.toml", "cannot read")
    one_line_error(cli("policy", "check", files("bad.toml", "[devices\n")), "bad.toml: not valid TOML")
    one_line_error(cli("policy", "check", files("bin.toml", b"\xff\xfe\x00"), "--sysfs", sys1), "not UTF-8")
    one_line_error(cli("policy", "check", files("ok.toml", GOOD), "--exe", tmp_path / "noprog", "--sysfs", sys1),
                   "noprog: no such program")
    one_line_error(cli("policy", "check"), "Missing argument")
    one_line_error(cli("policy", "check", files("ok2.toml", GOOD), "--sysfs", tmp_path), "no NUMA nodes")


def test_policy_check_reports_every_problem_and_exits_2(cli, files, sys1):
    p = files("p.toml", '[devices.a]\nkind = "numa"\nnodes = [3]\n[devices.b]\nkind = "numa"\nnodes = [0]\n'
                        'fallback = "b"\n[[rules]]\nsize = "1KiB"\ndevice = "c"\n')
    r = cli("policy", "check", p, "--sysfs", sys1)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == f"{p}: 3 errors, 0 warnings"
    assert all(line.startswith(f"error: {p}: ") for line in lines[:-1]) and len(lines) == 4
    j = cli("policy", "check", p, "--sysfs", sys1, "--json")
    assert j.returncode == 2
    data = json.loads(j.stdout)
    assert data["ok"] is False and data["errors"] == 3 and len(data["problems"]) == 3


def test_policy_check_good_policy_exits_0_with_warnings(cli, files, sys1):
    p = files("good.toml", GOOD)
    r = cli("policy", "check", p, "--sysfs", sys1)
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stdout and "libplugin.so" in r.stdout and "0 errors, 1 warning" in r.stdout
    clean = files("clean.toml", '[[rules]]\nsize = "..1KiB"\ndevice = "system"\n')
    r = cli("policy", "check", clean, "--sysfs", sys1, "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {
        "file": str(clean), "ok": True, "errors": 0, "warnings": 0, "problems": []}


def test_policy_compile_bad_input(cli, tmp_path, files, sys1):
    good = files("good.toml", GOOD)
    one_line_error(cli("policy", "compile", good), "Missing option", "-o")
    one_line_error(cli("policy", "compile", good, "-o", tmp_path / "no/dir/out.mpc", "--sysfs", sys1),
                   "does not exist")
    bad = files("bad.toml", '[devices.a]\nkind = "numa"\nnodes = [9]\n[devices.b]\nkind = "tape"\n')
    one_line_error(cli("policy", "compile", bad, "-o", tmp_path / "x.mpc", "--sysfs", sys1),
                   "bad.toml", "and 1 more: run memplace policy check")
    assert not (tmp_path / "x.mpc").exists()
    one_line_error(cli("policy", "compile", tmp_path / "none.toml", "-o", tmp_path / "y.mpc"), "cannot read")


def test_policy_compile_writes_a_file_the_decoder_reads(cli, tmp_path, files, sys1):
    out = tmp_path / "p.mpc"
    r = cli("policy", "compile", files("good.toml", GOOD), "-o", out, "--sysfs", sys1)
    assert r.returncode == 0, r.stderr
    assert "memplace: warning:" in r.stderr and "libplugin.so" in r.stderr
    assert r.stdout.startswith(f"wrote {out}: ") and "2 devices, 1 modules, 1 rules" in r.stdout
    c = decode(out.read_bytes())
    assert c.devices[0].capacity == 1 << 30 and c.modules[0].path == "libplugin.so"
    j = cli("policy", "compile", files("good2.toml", GOOD), "-o", out, "--sysfs", sys1, "--json")
    data = json.loads(j.stdout)
    assert j.returncode == 0 and data["rules"] == 1 and data["size"] == out.stat().st_size
    assert len(data["warnings"]) == 1


def test_policy_show_bad_input(cli, tmp_path, files):
    one_line_error(cli("policy", "show", tmp_path / "none"), "cannot read")
    one_line_error(cli("policy", "show", files("trunc.mpc", b"MPLCPOL\0\x01\0\0\0")), "trunc.mpc", "truncated")
    one_line_error(cli("policy", "show", files("text.toml", "this is = = not toml")), "not valid TOML")
    one_line_error(cli("policy", "show", files("bad.toml", '[[rules]]\ndevice = "x"\n')), "bad.toml: rule 1")


def test_policy_show_toml_and_compiled(cli, tmp_path, files, sys1):
    good = files("good.toml", GOOD)
    r = cli("policy", "show", good)
    assert r.returncode == 0 and "libplugin.so+0x40" in r.stdout and "1GiB" in r.stdout
    data = json.loads(cli("policy", "show", good, "--json").stdout)
    assert data["devices"][0]["capacity"] == 1 << 30 and data["rules"][0]["site"] == ["libplugin.so+0x40"]
    out = tmp_path / "p.mpc"
    assert cli("policy", "compile", good, "-o", out, "--sysfs", sys1).returncode == 0
    r = cli("policy", "show", out)
    assert r.returncode == 0 and "plugin" in r.stdout and "1:0x40" not in r.stdout and "0:0x40" in r.stdout
    data = json.loads(cli("policy", "show", out, "--json").stdout)
    assert [d["name"] for d in data["devices"]] == ["dram", "system"]
    assert data["rules"][0]["frames"] == [{"module": 0, "lo": 0x40, "hi": 0x40}]
