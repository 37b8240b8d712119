"""Fuzzing: the TOML loader never raises anything but UserError, the checker and compiler
never crash on what the loader accepts, and the decoder rejects every damaged file cleanly."""

import datetime
import struct
from collections import Counter

from hypothesis import HealthCheck, event, given, settings, strategies as st

from fuzz_corpus import KINDS, mutations, mutations_with_kind, sample_compiled
from memplace.placement.devices import HugePagePool, Node, Topology
from memplace.errors import UserError
from memplace.placement.policy import check, from_dict, load
from memplace.placement.policy_compile import CompiledPolicyError, compile_policy, decode
from memplace.placement.sites import SiteResolver

TOPO = Topology(sysfs="(test)", nodes=[Node(0, 8 << 30, 4 << 30, "0-1", [0, 1]), Node(1, 4 << 30, 4 << 30)],
                hugepages=[HugePagePool(2 << 20, 64, 64)], thp="madvise", weighted_interleave=True)

scalars = st.one_of(
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1), st.booleans(), st.floats(allow_nan=False),
    st.text(max_size=12), st.dates(), st.times(), st.datetimes(timezones=st.just(datetime.timezone.utc)),
    st.sampled_from(["numa", "file", "hugepages", "system", "bind", "interleave", "preferred",
                     "weighted-interleave", "transparent", "2MiB", "1GiB", "50%", "0%", "..4KiB", "1MiB..",
                     "dram", "far", "system", "/tmp", "main.c:3", "solve+0x10", "libx.so+0x4", "build-id:ab+0x1"]),
)
toml_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
device = st.fixed_dictionaries({"kind": st.sampled_from(["numa", "file", "hugepages", "system", "tape"])}, optional={
    "nodes": st.one_of(st.lists(st.integers(-1, 1030), max_size=3), toml_values),
    "mode": st.sampled_from(["bind", "preferred", "preferred-many", "interleave", "weighted-interleave", "x"]),
    "capacity": st.one_of(st.sampled_from(["1GiB", "50%", "100%", "12GiB", "0", 4096, "junk"]), toml_values),
    "fallback": st.sampled_from(["dram", "far", "huge", "system", "nowhere"]),
    "path": st.sampled_from(["/tmp", "/nonexistent", "rel", ""]),
    "pagesize": st.sampled_from(["2MiB", "1GiB", "transparent", "3KiB", 4096]),
})
rule = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.text(max_size=8), toml_values),
    "site": st.one_of(st.lists(st.sampled_from(["libx.so+0x4", "build-id:abcd+0x10", "/lib/liby.so+16", "f+0x1",
                                                "a.c:3", "bad", "", "x+0xzz"]), max_size=6), toml_values),
    "size": st.one_of(st.sampled_from(["..4KiB", "1MiB..", "1MiB..64MiB", "9..1", "64"]), toml_values),
    "device": st.sampled_from(["dram", "far", "huge", "system", "nope"]),
})
policies = st.fixed_dictionaries({}, optional={
    "version": st.one_of(st.just(1), toml_values),
    "default": st.sampled_from(["dram", "far", "system", "missing"]),
    "devices": st.one_of(st.dictionaries(st.sampled_from(["dram", "far", "huge", "system", "w"]), device, max_size=4),
                         toml_values),
    "rules": st.one_of(st.lists(rule, max_size=5), toml_values),
    "junk": toml_values,
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies)
def test_any_parsed_toml_loads_checks_and_compiles_without_a_traceback(table):
    policy = from_dict(table, "fuzz.toml")
    problems = check(policy, TOPO, SiteResolver(None))
    assert all(p.level in ("error", "warning") and "\n" not in p.message for p in problems)
    assert all(p.message.startswith("fuzz.toml: ") for p in problems)
    clean = not any(p.level == "error" for p in problems)
    event("compiled" if clean else "rejected")
    if clean:
        data = compile_policy(policy, TOPO, SiteResolver(None))
        c = decode(data)  # what we write, we can read back
        assert [d.name for d in c.devices] == [*policy.devices, "system"]
        assert c.devices[c.default_device].name == policy.default


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_loads_or_is_a_user_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "p.toml"
    path.write_text(text)
    try:
        load(path)
    except UserError as e:
        assert "\n" not in str(e)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_load_or_are_a_user_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "p.toml"
    path.write_bytes(blob)
    try:
        load(path)
    except UserError:
        pass


def test_mutations_are_deterministic_and_varied():
    base = sample_compiled()
    a = list(mutations(base, 64, seed=7))
    assert a == list(mutations(base, 64, seed=7)) and len(a) == 64
    assert a != list(mutations(base, 64, seed=8))
    assert len(set(a)) > 50 and base not in a
    kinds = Counter(k.split("+")[0] for k, _ in mutations_with_kind(base, 64, seed=7))
    assert set(kinds) == set(KINDS)
    assert any(len(m) < len(base) for m in a)  # truncations
    assert any(struct.unpack_from("<I", m, 8)[0] != 1 for m in a if len(m) >= 12)  # wrong versions


def test_decoder_rejects_or_accepts_every_mutation_cleanly():
    base = sample_compiled()
    outcome = Counter()
    for kind, blob in mutations_with_kind(base, 3000, seed=1):
        try:
            c = decode(blob)
        except CompiledPolicyError:
            outcome["rejected"] += 1
            continue
        outcome["accepted"] += 1
        # What the decoder accepts is internally consistent: the runtime may index without checks.
        assert 1 <= len(c.devices) <= 64 and c.default_device < len(c.devices)
        assert all(-1 <= d.fallback < len(c.devices) for d in c.devices)
        assert all(r.device < len(c.devices) and len(r.frames) <= 4 for r in c.rules)
        assert all(f.module < len(c.modules) and f.lo <= f.hi for r in c.rules for f in r.frames)
    # Most damage is caught; harmless changes (a capacity, an address) are read as they are.
    assert outcome["rejected"] > 1500 and outcome["accepted"] > 0, outcome


@st.composite
def valid_policies(draw):
    """Well-formed policies (fallbacks only to earlier devices, so never a cycle)."""
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), unique=True, max_size=5))
    devices = {}
    for i, name in enumerate(names):
        dev = {"kind": "numa", "nodes": draw(st.lists(st.sampled_from([0, 1]), min_size=1, max_size=2, unique=True)),
               "mode": draw(st.sampled_from(["bind", "interleave", "preferred-many", "weighted-interleave"]))}
        if draw(st.booleans()):
            dev["capacity"] = draw(st.one_of(st.integers(1, 4 << 30), st.sampled_from(["1%", "50%", "100%", "1GiB"])))
        if i and draw(st.booleans()):
            dev["fallback"] = draw(st.sampled_from(names[:i] + ["system"]))
        devices[name] = dev
    frames = st.one_of(st.builds("libm{}.so+{:#x}".format, st.integers(0, 3), st.integers(0, (1 << 64) - 1)),
                       st.builds("build-id:{:x}+{}".format, st.integers(1, 1 << 160), st.integers(0, 1 << 40)))
    rules = draw(st.lists(st.fixed_dictionaries(
        {"device": st.sampled_from(names + ["system"])},
        optional={"name": st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=10), "site": st.lists(frames, min_size=1, max_size=4),
                  "size": st.builds("{}..{}".format, st.integers(0, 1 << 20), st.integers(1 << 20, 1 << 40))}),
        max_size=8).filter(lambda rs: all("site" in r or "size" in r for r in rs)))
    return {"version": 1, "default": draw(st.sampled_from(names + ["system"])), "devices": devices, "rules": rules}


@settings(max_examples=200, deadline=None)
@given(valid_policies())
def test_well_formed_policies_compile_and_decode_to_the_same_policy(table):
    policy = from_dict(table, "ok.toml")
    problems = check(policy, TOPO, SiteResolver(None))
    assert not [p for p in problems if p.level == "error"], problems
    c = decode(compile_policy(policy, TOPO, SiteResolver(None)))
    names = [d.name for d in c.devices]
    assert names == [*table["devices"], "system"] and names[c.default_device] == table["default"]
    for d, spec in zip(c.devices, table["devices"].values()):
        assert d.nodes == tuple(sorted(spec["nodes"])) and d.mode == spec["mode"]
        fallback = spec.get("fallback", "system")
        assert d.fallback == (-1 if fallback == "system" else names.index(fallback))
    assert len(c.rules) == len(table["rules"])
    for r, spec in zip(c.rules, table["rules"]):
        assert names[r.device] == spec["device"] and r.name == spec.get("name", "")
        assert len(r.frames) == len(spec.get("site", []))
        for f, text in zip(r.frames, spec.get("site", [])):
            assert f.lo == f.hi == int(text.rsplit("+", 1)[1], 0)
            module = c.modules[f.module]
            if text.startswith("build-id:"):
                assert module.build_id == text[9:].split("+")[0]
            else:
                assert module.path == text.split("+")[0] and module.build_id is None
