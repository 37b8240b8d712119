"""Mutated compiled policies, for fuzzing the runtime's reader (runtime/os/policy.c).

    from fuzz_corpus import mutations, sample_compiled
    for blob in mutations(sample_compiled(), n=1000, seed=1):
        ...  # feed to the C reader (libFuzzer corpus, or a harness under ASan/UBSan)

or write a libFuzzer corpus directory:

    python tests/placement_py/fuzz_corpus.py CORPUS_DIR [--n 2000] [--seed 1] [--from policy.mpc]

Each mutation is one of: a truncation, bit flips, a bad table count, a bad table
offset, a wrong version/magic/header size, a bad record field (device, module,
rule or frame: indices out of range, cycles, string offsets past the table, lo>hi,
nframes>4), a string table without its final NUL, a wrong file size. Most structural
mutations then re-seal the file (crc32 and file_size recomputed) so that they get
past the checksum and exercise the deeper checks.
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

# Header fields: name -> (offset, struct code), as in docs/policy.md.
HEADER = {"magic": (0, "8s"), "version": (8, "I"), "header_size": (12, "I"), "ndevices": (16, "I"),
          "nmodules": (20, "I"), "nrules": (24, "I"), "default_device": (28, "I"), "devices_off": (32, "I"),
          "modules_off": (36, "I"), "rules_off": (40, "I"), "strtab_off": (44, "I"), "strtab_size": (48, "I"),
          "crc32": (52, "I"), "file_size": (56, "Q")}
# Record fields worth breaking: (table, record size, [(offset in record, struct code)]).
RECORDS = {
    "devices": (160, [(0, "I"), (4, "I"), (8, "Q"), (16, "i"), (20, "I"), (24, "I"), (28, "I"), (32, "Q"), (152, "Q")]),
    "modules": (16, [(0, "I"), (4, "I"), (8, "Q")]),
    "rules": (128, [(0, "I"), (4, "I"), (8, "Q"), (16, "Q"), (24, "I"), (28, "I"), (32, "Q"), (40, "Q"),
                    (48, "I"), (96, "I"), (104, "Q"), (120, "I"), (124, "I")]),
}
COUNT_OF = {"devices": "ndevices", "modules": "nmodules", "rules": "nrules"}
INTERESTING_U32 = [0, 1, 2, 3, 4, 5, 7, 8, 63, 64, 65, 4096, 4097, 65536, 65537, 0x7FFFFFFF, 0x80000000,
                   0xFFFFFFFE, 0xFFFFFFFF]
INTERESTING_U64 = [0, 1, 0xFFFFFFFF, 1 << 32, 1 << 63, (1 << 64) - 2, (1 << 64) - 1]
KINDS = ("truncate", "bitflip", "count", "offset", "version", "field", "strtab_nul", "file_size")


def _get(data: bytearray, off: int, code: str) -> int:
    return struct.unpack_from("<" + code, data, off)[0]


def _put(data: bytearray, off: int, code: str, value: int) -> None:
    if code == "i":
        value = (value + (1 << 31)) % (1 << 32) - (1 << 31)
    elif code in "IQ":
        value %= 1 << (32 if code == "I" else 64)
    struct.pack_into("<" + code, data, off, value)


def reseal(data: bytearray) -> bytearray:
    """Make file_size and crc32 agree with the (mutated) contents."""
    if len(data) >= 64:
        _put(data, 56, "Q", len(data))
        _put(data, 52, "I", zlib.crc32(bytes(data[64:])))
    return data


def _near(rng: random.Random, value: int, interesting: list[int]) -> int:
    return rng.choice([*interesting, value - 1, value + 1, value - 8, value + 8, value * 2, rng.getrandbits(32)])


def _mutate(kind: str, rng: random.Random, data: bytearray) -> tuple[bytearray, bool]:
    """One mutation; returns the bytes and whether resealing makes sense afterwards."""
    size = len(data)
    if kind == "truncate":
        cuts = [0, 1, 8, 63, 64, 65, size - 1, size // 2, rng.randrange(size)]
        if size >= 64:
            cuts += [_get(data, HEADER[k][0], "I") + d for k in ("modules_off", "rules_off", "strtab_off")
                     for d in (-1, 0, 1)]
        cut = max(0, min(size - 1, rng.choice(cuts)))
        return data[:cut], rng.random() < 0.5
    if kind == "bitflip":
        for _ in range(rng.randint(1, 8)):
            bit = rng.randrange(size * 8)
            data[bit // 8] ^= 1 << (bit % 8)
        return data, rng.random() < 0.8
    if kind == "count":
        name = rng.choice(["ndevices", "nmodules", "nrules", "default_device"])
        off = HEADER[name][0]
        _put(data, off, "I", _near(rng, _get(data, off, "I"), INTERESTING_U32))
        return data, rng.random() < 0.9
    if kind == "offset":
        name = rng.choice(["devices_off", "modules_off", "rules_off", "strtab_off", "strtab_size"])
        off = HEADER[name][0]
        _put(data, off, "I", _near(rng, _get(data, off, "I"), [*INTERESTING_U32, size, size - 1, size + 1]))
        return data, rng.random() < 0.9
    if kind == "version":
        name = rng.choice(["version", "version", "header_size", "magic"])
        off, code = HEADER[name]
        if name == "magic":
            data[off + rng.randrange(8)] ^= 1 << rng.randrange(8)
        else:
            _put(data, off, code, rng.choice([0, 2, 3, 0xFFFFFFFF, 63, 65, 128, _get(data, off, code) + 1]))
        return data, rng.random() < 0.9
    if kind == "field":
        table = rng.choice([t for t in RECORDS if _get(data, HEADER[COUNT_OF[t]][0], "I")])
        record_size, fields = RECORDS[table]
        count = _get(data, HEADER[COUNT_OF[table]][0], "I")
        base = _get(data, HEADER[table + "_off"][0], "I") + record_size * rng.randrange(count)
        field_off, code = rng.choice(fields)
        if base + field_off + struct.calcsize(code) <= size:
            pool = INTERESTING_U64 if code == "Q" else INTERESTING_U32 + [-1, -2]
            if table == "devices" and field_off == 16:  # fallback: point into the chain (cycles)
                pool = [-2, -1, 0, 1, 2, count - 1, count, count + 1]
            _put(data, base + field_off, code, rng.choice(pool))
        return data, True
    if kind == "strtab_nul":
        data[-1] = rng.choice([ord("A"), 0xFF, 0x80])
        return data, True
    if kind == "file_size":
        if rng.random() < 0.5:
            data += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
        else:
            _put(data, 56, "Q", rng.choice(INTERESTING_U64 + [size - 1, size + 1]))
        return data, False
    raise ValueError(kind)


def mutations_with_kind(compiled: bytes, n: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """Like mutations(), with the name of the mutation each file got (and whether it was resealed)."""
    rng = random.Random(seed)
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        for _ in range(16):  # a mutation that changes nothing (a field set to its value) is retried
            data, seal = _mutate(kind, rng, bytearray(compiled))
            if seal and kind != "file_size":
                reseal(data)
            if data != compiled:
                break
        yield (kind + ("+sealed" if seal else "")), bytes(data)


def mutations(compiled_bytes: bytes, n: int, seed: int) -> Iterator[bytes]:
    """n deterministic mutations of a compiled policy (same seed, same files)."""
    for _, data in mutations_with_kind(compiled_bytes, n, seed):
        yield data


def sample_compiled() -> bytes:
    """A compiled policy with every device kind, modules with and without build-id, all rule shapes."""
    src = Path(__file__).resolve().parents[2] / "src"
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    from memplace.placement.devices import Node, Topology
    from memplace.placement.policy import from_dict
    from memplace.placement.policy_compile import compile_policy
    from memplace.placement.sites import SiteResolver

    topo = Topology(sysfs="(sample)", nodes=[Node(0, 8 << 30, 4 << 30, "0-1", [0, 1]), Node(1, 8 << 30, 8 << 30)])
    policy = from_dict({
        "version": 1, "default": "dram",
        "devices": {
            "dram": {"kind": "numa", "nodes": [0], "capacity": "50%", "fallback": "far"},
            "far": {"kind": "numa", "nodes": [0, 1], "mode": "weighted-interleave", "fallback": "pmem"},
            "pmem": {"kind": "file", "path": "/tmp", "capacity": "1GiB"},
            "huge": {"kind": "hugepages", "pagesize": "2MiB", "capacity": "64MiB", "fallback": "dram"},
            "thp": {"kind": "hugepages", "pagesize": "transparent", "nodes": [1], "mode": "preferred"},
        },
        "rules": [
            {"name": "hot", "site": ["libsolver.so+0x1234", "build-id:00112233445566778899aabbccddeeff00112233+0x40",
                                     "/opt/app/bin/app+0x99", "libsolver.so+0x10"], "size": "1MiB..64MiB",
             "device": "huge"},
            {"site": ["libmpi.so.40+0x777"], "device": "pmem"},
            {"name": "small", "size": "..4KiB", "device": "system"},
            {"name": "big", "size": "1GiB..", "device": "far"},
        ],
    }, "sample.toml")
    assert not policy.problems, policy.problems
    return compile_policy(policy, topo, SiteResolver(None))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write mutated compiled policies as a fuzzing corpus.")
    ap.add_argument("directory")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--from", dest="source", help="a compiled policy to mutate (default: a built-in sample)")
    args = ap.parse_args(argv)
    base = Path(args.source).read_bytes() if args.source else sample_compiled()
    os.makedirs(args.directory, exist_ok=True)
    Path(args.directory, "valid.mpc").write_bytes(base)
    for i, (kind, data) in enumerate(mutations_with_kind(base, args.n, args.seed)):
        Path(args.directory, f"{i:05d}-{kind}.mpc").write_bytes(data)
    print(f"wrote {args.n + 1} files to {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
