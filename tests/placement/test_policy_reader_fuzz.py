"""The runtime's compiled-policy reader (runtime/os/policy.c) under ASan and UBSan.

Thousands of damaged compiled files (tests/placement_py/fuzz_corpus.py) go through the
C reader in one harness process (programs/policy_fuzz.c): no crash and no sanitizer
report, and for every file the C reader and Python's reference `decode()` take the same
decision; when both accept, the harness prints every field the runtime will use and it
must equal what `decode()` read.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "placement_py"))
from fuzz_corpus import mutations_with_kind, reseal, sample_compiled  # noqa: E402

from memplace.placement.devices import Node, Topology  # noqa: E402
from memplace.placement.policy import from_dict  # noqa: E402
from memplace.placement.policy_compile import (DEVICE, HEADER, KIND_CODES, MODE_CODES, NO_STRING,  # noqa: E402
                                     CompiledPolicyError, compile_policy, decode)
from memplace.placement.sites import SiteResolver  # noqa: E402

PROGRAMS = Path(__file__).parent / "programs"
RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
INCLUDE = RUNTIME / "include"
READER = [str(RUNTIME / "os" / "policy.c"), str(RUNTIME / "util" / "crc32.c")]  # the runtime's own reader and crc32
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
SANITIZER_ENV = {"ASAN_OPTIONS": "abort_on_error=0:halt_on_error=1:detect_leaks=1",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
TOPO = Topology(sysfs="(test)", nodes=[Node(0, 8 << 30, 4 << 30, "0-1", [0, 1]), Node(1, 8 << 30, 8 << 30)],
                weighted_interleave=True)


@pytest.fixture(scope="module", params=["internal_alloc", "heap_tables"])
def harness(request, tmp_path_factory) -> Path:
    """The harness with the runtime's own table allocator, and with one heap block per table
    (so ASan also sees a write past the end of a table the reader fills)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (Debian package gcc)")
    out = tmp_path_factory.mktemp("harness") / f"policy_fuzz_{request.param}"
    sources = [str(PROGRAMS / "policy_fuzz.c"), *READER]
    sources += [str(RUNTIME / "os" / "internal_alloc.c")] if request.param == "internal_alloc" else ["-DHARNESS_HEAP_ALLOC"]
    subprocess.run(["gcc", *SANITIZE, "-g", "-O1", "-Wall", "-Werror", "-I", str(INCLUDE), "-o", str(out), *sources],
                   check=True, capture_output=True, text=True)
    return out


def run_harness(harness: Path, files: list[Path], *flags: str) -> dict[str, str]:
    """The harness's verdict line for each file (everything after the path)."""
    r = subprocess.run([str(harness), *flags], input="".join(f"{f}\n" for f in files), capture_output=True,
                       text=True, env=dict(os.environ, **SANITIZER_ENV), timeout=600)
    assert r.returncode == 0 and "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-4000:]
    lines = r.stdout.splitlines()
    assert lines[-1].startswith("total accepted "), lines[-3:]
    verdicts = dict(line.split(" ", 1) for line in lines[:-1])
    assert len(verdicts) == len(files)
    return verdicts


def _hex(s: str | None) -> str:
    if s is None:
        return "-"
    return s.encode().hex() or "_"


def rendering(data: bytes) -> str:
    """What the harness prints for `data`, per the reference decoder ("reject ..." if it refuses)."""
    try:
        c = decode(data)
    except CompiledPolicyError as e:
        return f"reject ({e})"
    parts = [f"accept {c.default_device}"]
    for d in c.devices:
        mask = [0] * 16
        for n in d.nodes:
            mask[n // 64] |= 1 << (n % 64)
        parts.append(f"D {KIND_CODES[d.kind]},{MODE_CODES[d.mode]},{d.capacity},{d.fallback},{d.flags},"
                     f"{_hex(d.name)},{_hex(d.path)},{':'.join(f'{w:x}' for w in mask)}")
    parts += [f"M {_hex(m.path)},{_hex(m.build_id)}" for m in c.modules]
    parts += [f"R {r.device},{r.size_min},{r.size_max},{_hex(r.name)}"
              + "".join(f",{f.module}:{f.lo}:{f.hi}" for f in r.frames) for r in c.rules]
    return " ".join(parts)


def minimal_compiled() -> bytes:
    """Only the built-in system device: no modules, no rules (empty tables at one offset)."""
    return compile_policy(from_dict({"version": 1}, "minimal.toml"), TOPO, SiteResolver(None))


def random_valid_policy(rng: random.Random) -> dict:
    """A well-formed policy: fallbacks only to earlier devices, so never a cycle."""
    names = rng.sample(["a", "b", "c", "d", "e", "f"], rng.randint(0, 6))
    devices = {}
    for i, name in enumerate(names):
        kind = rng.choice(["numa", "numa", "file", "hugepages"])
        dev: dict = {"kind": kind}
        if kind == "numa":
            dev["nodes"] = rng.sample([0, 1], rng.randint(1, 2))
            dev["mode"] = rng.choice(["bind", "interleave", "preferred-many", "weighted-interleave"])
        elif kind == "file":
            dev["path"] = rng.choice(["/tmp", "/var/tmp", "/dev/shm/x"])
        else:
            dev["pagesize"] = "transparent"
        if rng.random() < 0.5:
            dev["capacity"] = rng.choice([4096, "1GiB", "3MiB", "50%" if kind == "numa" else "2GiB"])
        if i and rng.random() < 0.6:
            dev["fallback"] = rng.choice(names[:i] + ["system"])
        devices[name] = dev
    rules = []
    for _ in range(rng.randint(0, 8)):
        rule: dict = {"device": rng.choice(names + ["system"])}
        if rng.random() < 0.8:
            rule["site"] = [rng.choice([f"libm{rng.randint(0, 3)}.so+{rng.getrandbits(rng.choice([8, 40, 64])):#x}",
                                        f"build-id:{rng.getrandbits(160):040x}+{rng.getrandbits(20):#x}",
                                        f"/opt/app/lib{rng.randint(0, 2)}.so+0x10"])
                            for _ in range(rng.randint(1, 4))]
        if "site" not in rule or rng.random() < 0.3:
            lo = rng.getrandbits(20)
            rule["size"] = f"{lo}..{lo + rng.getrandbits(30)}"
        if rng.random() < 0.7:
            rule["name"] = rng.choice(["hot", "cold", "ünïcode", "x" * 40, ""])
        rules.append(rule)
    return {"version": 1, "default": rng.choice(names + ["system"]), "devices": devices, "rules": rules}


def write_cases(tmp_path: Path, blobs: list[tuple[str, bytes]]) -> list[Path]:
    files = []
    for i, (kind, data) in enumerate(blobs):
        f = tmp_path / f"{i:05d}-{kind}.mpc"
        f.write_bytes(data)
        files.append(f)
    return files


def test_valid_compiled_policies_are_read_field_for_field(harness, tmp_path):
    rng = random.Random(5)
    blobs = [("sample", sample_compiled()), ("minimal", minimal_compiled())]
    for i in range(60):
        policy = from_dict(random_valid_policy(rng), f"random{i}.toml")
        assert not policy.problems, policy.problems
        blobs.append(("random", compile_policy(policy, TOPO, SiteResolver(None))))
    files = write_cases(tmp_path, blobs)
    verdicts = run_harness(harness, files)
    for f, (_, data) in zip(files, blobs):
        assert verdicts[str(f)].startswith("accept"), (f.name, verdicts[str(f)])
        assert verdicts[str(f)] == rendering(data), f.name
    # the same through mp_policy_load (open + mmap), as the runtime reads it
    loaded = run_harness(harness, files[:5], "-l")
    assert all(loaded[str(f)] == verdicts[str(f)] for f in files[:5])


def test_load_refuses_missing_and_empty_files(harness, tmp_path):
    empty = tmp_path / "empty.mpc"
    empty.write_bytes(b"")
    v = run_harness(harness, [tmp_path / "absent.mpc", empty, tmp_path], "-l")
    assert v[str(tmp_path / "absent.mpc")] == "reject cannot open the compiled policy"
    assert v[str(empty)] == "reject empty or unreadable compiled policy"
    assert v[str(tmp_path)].startswith("reject ")  # a directory is not a policy


def mutated_corpus() -> list[tuple[str, bytes]]:
    """~5,000 damaged files: random mutations of two bases, every truncation of the minimal
    file, and every header field set to each interesting value (resealed)."""
    sample, minimal = sample_compiled(), minimal_compiled()
    blobs = [(k, b) for k, b in mutations_with_kind(sample, 3000, seed=1)]
    blobs += [(k, b) for k, b in mutations_with_kind(minimal, 600, seed=2)]
    blobs += [("prefix", minimal[:n]) for n in range(len(minimal))]
    offsets = {}
    at = 0
    for name, code in HEADER.fields:
        offsets[name] = (at, code)
        at += struct.calcsize("<" + code)
    for base in (sample, minimal):
        for name, (off, code) in offsets.items():
            if code != "I":
                continue
            for value in (0, 1, 2, 7, 8, 63, 64, 65, 72, 160, 224, 4096, 65536, len(base) - 1, len(base),
                          len(base) + 8, 0x7FFFFFFF, 0xFFFFFFFF):
                data = bytearray(base)
                struct.pack_into("<I", data, off, value)
                if bytes(data) != base:
                    blobs.append((f"header-{name}", bytes(data if name == "crc32" else reseal(data))))
    return blobs


def test_reader_survives_damaged_files_and_agrees_with_decode(harness, tmp_path):
    blobs = mutated_corpus()
    assert len(blobs) > 4000
    accepted, rejected = compare_with_decode(harness, tmp_path, blobs)
    assert rejected > 3000 and accepted > 200, (accepted, rejected)


def compare_with_decode(harness: Path, tmp_path: Path, blobs: list[tuple[str, bytes]]) -> tuple[int, int]:
    """Run every blob through the harness; assert every C verdict agrees with decode() (and
    every field, when both accept). Returns (accepted, rejected) by the C reader."""
    files = write_cases(tmp_path, blobs)
    verdicts = run_harness(harness, files)
    accepted = rejected = 0
    disagree = []
    for f, (_, data) in zip(files, blobs):
        c, ref = verdicts[str(f)], rendering(data)
        accepted += c.startswith("accept")
        rejected += c.startswith("reject")
        if c.startswith("reject") and ref.startswith("reject"):
            continue  # both refuse (the reasons are worded differently)
        if c != ref:
            disagree.append(f"{f.name}: C {c[:200]!r} vs decode {ref[:200]!r}")
    assert accepted + rejected == len(blobs)
    assert not disagree, "\n".join(disagree[:20])
    return accepted, rejected


@pytest.mark.slow
def test_libfuzzer_finds_no_crash_in_20_seconds(tmp_path):
    """Coverage-guided: libFuzzer mutates seeds for 20 s (the target also parses each input
    with its checksum fixed up, to get past it); then every input it kept, resealed, must get
    the same verdict from the C reader as from decode()."""
    if shutil.which("clang") is None:
        pytest.skip("clang not installed (Debian packages clang, libclang-rt-14-dev)")
    fuzzer = tmp_path / "policy_libfuzzer"
    build = subprocess.run(["clang", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all", "-g", "-O1",
                            "-DLIBFUZZER", "-DHARNESS_HEAP_ALLOC", "-I", str(INCLUDE), "-o", str(fuzzer),
                            str(PROGRAMS / "policy_fuzz.c"), *READER], capture_output=True, text=True)
    if build.returncode != 0 and "libclang_rt.fuzzer" in build.stderr + build.stdout:
        pytest.skip("libFuzzer runtime missing (Debian package libclang-rt-14-dev)")
    assert build.returncode == 0, build.stderr
    seeds, corpus = tmp_path / "seeds", tmp_path / "corpus"
    seeds.mkdir(), corpus.mkdir()
    for name, data in (("sample", sample_compiled()), ("minimal", minimal_compiled()), ("two", two_devices())):
        (seeds / f"{name}.mpc").write_bytes(data)
    r = subprocess.run([str(fuzzer), "-max_total_time=20", "-print_final_stats=1", "-rss_limit_mb=2048",
                        f"-artifact_prefix={tmp_path}/", str(corpus), str(seeds)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    runs = int(re.search(r"stat::number_of_executed_units:\s+(\d+)", r.stderr).group(1))
    assert runs > 10000, r.stderr[-2000:]
    kept = [bytes(reseal(bytearray(f.read_bytes()))) for f in sorted(corpus.iterdir())]
    assert len(kept) > 20
    harness_dir = tmp_path / "cases"
    harness_dir.mkdir()
    gcc_harness = tmp_path / "policy_fuzz"
    subprocess.run(["gcc", *SANITIZE, "-g", "-O1", "-I", str(INCLUDE), "-o", str(gcc_harness),
                    str(PROGRAMS / "policy_fuzz.c"), *READER, "-DHARNESS_HEAP_ALLOC"],
                   check=True, capture_output=True, text=True)
    compare_with_decode(gcc_harness, harness_dir, [("libfuzzer", k) for k in kept])


# ---- disagreements the fuzzing found (fixed in the runtime and decode()), as minimal files ----


def two_devices() -> bytes:
    """dram (numa node 0, bind, no capacity) + system; no modules, no rules."""
    policy = from_dict({"version": 1, "devices": {"dram": {"kind": "numa", "nodes": [0]}}}, "two.toml")
    return compile_policy(policy, TOPO, SiteResolver(None))


def header_set(data: bytes, **fields) -> bytes:
    h = HEADER.unpack(data)
    h.update(fields)
    return bytes(reseal(bytearray(HEADER.pack(**h) + data[HEADER.size:])))


def verdict_of(harness: Path, tmp_path: Path, data: bytes) -> str:
    f = tmp_path / "case.mpc"
    f.write_bytes(data)
    return run_harness(harness, [f])[str(f)]


def test_reader_rejects_overlapping_tables(harness, tmp_path):
    data = two_devices()
    assert decode(data).rules == ()
    # one rule whose record is the first device record (offset 64): decode() refuses
    bad = header_set(data, nrules=1, rules_off=HEADER.size)
    assert rendering(bad).startswith("reject (rules table at offset 64")
    assert verdict_of(harness, tmp_path, bad).startswith("reject")


def test_reader_rejects_devices_table_not_right_after_the_header(harness, tmp_path):
    data = two_devices()
    h = HEADER.unpack(data)
    shifted = {k: h[k] + 8 for k in ("devices_off", "modules_off", "rules_off", "strtab_off")}
    bad = header_set(data[:HEADER.size] + bytes(8) + data[HEADER.size:], **shifted)
    assert rendering(bad).startswith("reject (devices_off 72")
    assert verdict_of(harness, tmp_path, bad).startswith("reject")


def test_reader_rejects_strings_that_are_not_utf8(harness, tmp_path):
    data = bytearray(two_devices())
    h = HEADER.unpack(data)
    name_off = DEVICE.unpack(data, h["devices_off"])["name_off"]
    data[h["strtab_off"] + name_off] = 0xFF  # "dram" -> "\xffram"
    bad = bytes(reseal(data))
    assert rendering(bad) == "reject (device 0 name: string is not UTF-8)"
    assert verdict_of(harness, tmp_path, bad).startswith("reject")


@pytest.mark.parametrize("seq", [b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                 b"\xf0\x80\x80\x80", b"\xc1\xbf", b"\xf5\x80\x80\x80"],
                         ids=["overlong-3", "surrogate", "above-10ffff", "overlong-4", "overlong-2",
                              "f5-lead"])
def test_reader_rejects_utf8_that_python_rejects(harness, tmp_path, seq):
    """libFuzzer found names the C reader took and decode() refused: overlong forms,
    encoded surrogates and code points above U+10FFFF are not UTF-8 to either."""
    data = two_devices()
    h = HEADER.unpack(data)
    name_off = DEVICE.unpack(data, h["devices_off"])["name_off"]
    at = h["strtab_off"] + name_off
    bad = bytes(reseal(bytearray(data[:at] + seq + data[at + len(seq):])))  # over "dram"
    assert rendering(bad) == "reject (device 0 name: string is not UTF-8)"
    assert verdict_of(harness, tmp_path, bad).startswith("reject")


def test_reader_and_decode_agree_on_a_relative_file_directory(harness, tmp_path):
    policy = from_dict({"version": 1, "devices": {"pm": {"kind": "file", "path": "/tmp"}}}, "f.toml")
    data = bytearray(compile_policy(policy, TOPO, SiteResolver(None)))
    h = HEADER.unpack(data)
    path_off = DEVICE.unpack(data, h["devices_off"])["path_off"]
    assert path_off != NO_STRING
    data[h["strtab_off"] + path_off] = ord("t")  # "/tmp" -> "ttmp"
    bad = bytes(reseal(data))
    assert verdict_of(harness, tmp_path, bad) == "reject file device without an absolute directory"
    assert rendering(bad).startswith("reject")
