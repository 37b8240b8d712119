"""Fuzzing the readers of the files people give memplace: a profile (JSON), run statistics
(JSON, and the runtime's per-process text), FlexMalloc locations and definitions, and the
nesting of TOML and JSON. Each input is read, and what is read is used (a report, its HTML
page, a merge), or refused with one UserError line: never another exception.

The policy TOML's own fields are fuzzed in tests/placement_py/test_policy_fuzz.py; here,
its structure (brackets, strings, dotted keys) and depth. Bounded: a few seconds each.
"""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings, strategies as st

from memplace.errors import UserError
from memplace.inputs import MAX_DEPTH, parse_json, parse_toml
from memplace.interop import parse_definitions, parse_locations
from memplace.placement.stats import parse_process
from memplace.profiling.merge import merge
from memplace.report import html_page, summarize

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])

PROFILE = {"format": "memplace-profile", "version": 1, "engine": "runtime", "command": ["./app"], "pid": 7,
           "clock": {"unit": "ns", "duration": 1000.0, "window": 100.0},
           "sites": [{"frames": [{"module": "/bin/true", "build_id": None, "offset": "0x10", "function": "main",
                                  "file": "a.c", "line": 3, "inlined": [{"function": "f", "file": "b.h", "line": 1}]}],
                      "allocations": 2, "frees": 1, "bytes": 4096, "peak_live_bytes": 4096,
                      "lifetime": {"min": 1.0, "mean": 2.0, "max": 3.0}, "size_histogram": [[13, 2]],
                      "reads": 10, "writes": 5, "live": [0, 4096, 0]}],
           "meta": {}}
STATS = {"version": 1, "command": ["./app"], "policy": None, "returncode": 0,
         "processes": [{"pid": 7, "devices": [], "rules": []}],
         "totals": {"devices": [{"name": "hbm", "allocations": 3, "bytes": 96, "peak": 64,
                                 "fallbacks": {"full": 1, "bind_failed": 0, "backing_failed": 0, "alignment": 0}}],
                    "rules": [{"name": "r", "hits": 3, "bytes": 96}]}}

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(1 << 70), max_value=1 << 70),
                    st.floats(), st.text(max_size=8),
                    st.sampled_from(["0x10", "0x" + "f" * 20, "/bin/true", "/dev/zero", "", "\0", "ns", "instr",
                                     "parsecs", "memplace-profile", "full", "sunspots"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=10)


@st.composite
def mutated(draw, base: dict):
    """`base` with a few of its fields (at any depth) replaced, removed or added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        node = doc
        while True:  # walk down a random path
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            if isinstance(node[key], (dict, list)) and node[key] and draw(st.booleans()):
                node = node[key]
                continue
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                node[key] = draw(json_values)
            elif action == "delete" and isinstance(node, dict):
                del node[key]
            elif isinstance(node, dict):
                node[draw(st.text(max_size=6))] = draw(json_values)
            else:
                node.append(draw(json_values))
            break
    return doc


def _used_or_user_error(tmp_path, profile: str | None = None, stats: str | None = None) -> None:
    """Summarize (which symbolizes the profile's frames) and render the page; or one UserError line."""
    paths = {}
    for name, text in (("profile", profile), ("stats", stats)):
        if text is not None:
            paths[name] = tmp_path / f"{name}.json"
            paths[name].write_text(text)
    try:
        sm = summarize(str(paths["profile"]) if profile is not None else None,
                       str(paths["stats"]) if stats is not None else None, None)
    except UserError as e:
        assert "\n" not in str(e)
        return
    json.dumps(sm.to_json())
    html_page(sm)


@FAST
@given(mutated(PROFILE))
def test_a_mutated_profile_is_reported_or_refused_in_one_line(tmp_path, doc):
    _used_or_user_error(tmp_path, profile=json.dumps(doc))


@FAST
@given(mutated(PROFILE))
def test_a_mutated_profile_merges_or_is_refused(tmp_path, doc):
    from memplace.profiling.profile import from_json

    try:
        p = from_json(json.loads(json.dumps(doc)), "fuzz.json")
    except UserError:
        return
    m = merge([p, copy.deepcopy(p)])
    assert m.processes == 2 * p.processes


@FAST
@given(mutated(STATS))
def test_mutated_run_statistics_are_reported_or_refused_in_one_line(tmp_path, doc):
    _used_or_user_error(tmp_path, stats=json.dumps(doc))


def _read_or_one_line(parse, text: str, origin: str):
    """parse(text, origin), or None after a UserError that is one line naming `origin`."""
    try:
        return parse(text, origin)
    except UserError as e:
        assert str(e).startswith(origin) and "\n" not in str(e), str(e)
        return None


runtime_lines = st.one_of(
    st.sampled_from(["memplace-stats 2", "end", "pid 7", "pid -1", "pid x", "pid " + "9" * 30, "device", "rule",
                     "device 0 1 2 3 4 5 6 7 8 hbm", "device 0 1 2 3 4 5 6 7 hbm", "rule 0 1 2", "rule 0 1 2 name",
                     "rule 0 1", "device 0 1 2 3 4 5 6 7 " + "9" * 25 + " x", "rule -1 2 3 r", "", " ",
                     "unwinds 3", "unwinds 3 4", "unwinds 3 4 5", "unwinds x", "unwinds", "inherited unwinds 1 2",
                     "inherited unwinds 1"]),
    st.text(st.sampled_from("devicrul 0123456789-x"), max_size=30))


@settings(max_examples=300, deadline=None)
@given(st.lists(runtime_lines, max_size=8), st.booleans())
def test_a_runtime_stats_file_is_read_or_refused_in_one_line(lines, framed):
    text = "\n".join((["memplace-stats 2", *lines, "end"] if framed else lines))
    proc = _read_or_one_line(parse_process, text, "stats.7.txt")
    for d in proc["devices"] if proc else []:
        assert all(0 <= d[k] < 1 << 64 for k in ("allocations", "bytes", "live_at_exit", "peak"))


def test_walk_counts_are_the_images_own_and_older_files_have_no_relative_ones():
    """`unwinds N R` (whole walks, walks made at another depth), less what a forked child
    inherited; a runtime before relative counts wrote `unwinds N`."""
    child = parse_process("memplace-stats 2\npid 7\ninherited unwinds 5 7\nunwinds 9 10\nend", "stats.7.txt")
    assert (child["unwinds"], child["relative_walks"]) == (4, 3)
    older = parse_process("memplace-stats 2\npid 7\nunwinds 9\nend", "stats.7.txt")
    assert (older["unwinds"], older["relative_walks"]) == (9, 0)


frames = st.one_of(st.builds("{}:{}".format, st.sampled_from(["a.c", "b.h", "", "x:y"]),
                             st.one_of(st.integers(0, 1 << 40), st.just("9" * 30), st.just("x"))),
                   st.builds("{}!{}".format, st.sampled_from(["/bin/true", "/nonexistent.so", "/dev/zero", ""]),
                             st.one_of(st.integers(0, 1 << 90).map(hex), st.just("zz"), st.just("0x"))),
                   st.sampled_from(["Unresolved", "_NOT_Found", "", ">", "@"]))
location_lines = st.one_of(
    st.builds(lambda fs, a: " > ".join(fs) + " @ " + a, st.lists(frames, max_size=6), st.sampled_from(["posix", "", "hbm"])),
    st.builds("# Memory configuration for {} with size {} bytes".format, st.sampled_from(["hbm", "dram", ""]),
              st.one_of(st.integers(0, 1 << 80), st.just("1.2.3"), st.just("."), st.just("1" * 50))),
    st.text(max_size=20))


@settings(max_examples=300, deadline=None)
@given(st.lists(location_lines, max_size=6))
def test_a_locations_file_is_read_or_refused_in_one_line(lines):
    locs = _read_or_one_line(parse_locations, "\n".join(lines), "fuzz.loc")
    assert locs is None or all(1 <= len(l.frames) <= 4 for l in locs)


definition_lines = st.one_of(
    st.builds("# Memory configuration for allocator {}".format, st.sampled_from(["posix", "memkind/hbwmalloc", ""])),
    st.builds("Size {} {}Bytes".format, st.one_of(st.integers(0, 1 << 80), st.just("1.2.3"), st.just("."),
                                                  st.just("1" * 60)), st.sampled_from(["", "K", "M", "G", "T", "P"])),
    st.builds("@ {}".format, st.text(max_size=10)), st.text(max_size=20))


@settings(max_examples=300, deadline=None)
@given(st.lists(definition_lines, max_size=6))
def test_a_definitions_file_is_read_or_refused_in_one_line(lines):
    defs = _read_or_one_line(parse_definitions, "\n".join(lines), "fuzz.def")
    assert defs is None or all(d.size is None or 0 <= d.size < 1 << 64 for d in defs.values())


# -- nesting -------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from('[]{}."\'=\n#\\ab1, '), max_size=300))
def test_toml_structure_soup_parses_or_is_one_user_error(text):
    try:
        parse_toml(text, "soup.toml", "policy")
    except UserError as e:
        assert str(e).startswith("soup.toml: ") and "\n" not in str(e)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.text(st.sampled_from('[]{}",:\\a1 '), max_size=300))
def test_json_structure_soup_parses_or_is_one_user_error(blob, text):
    for data in (blob, text.encode()):
        try:
            parse_json(data, "soup.json", "profile")
        except UserError as e:
            assert str(e).startswith("soup.json: ") and "\n" not in str(e)
        except ValueError:  # not JSON at all: json's own error, which each reader words for its file
            pass


@st.composite
def nests(draw, toml: bool):
    """A value nested `depth` deep in arrays and tables (inline tables, for TOML), with strings
    of brackets that are not structure, and the depth."""
    depth = draw(st.integers(0, 2 * MAX_DEPTH + 10))
    value = '"]}[{"'
    for _ in range(depth):
        if draw(st.booleans()):
            value = f'[{value}, "]"]'
        else:
            value = f'{{k = {value}}}' if toml else f'{{"k": {value}, "]": "["}}'
    return (f"a = {value}\n" if toml else value), depth


def _read_exactly_up_to(count: int, read, refusal: str) -> None:
    """read() succeeds when count <= MAX_DEPTH, else is a UserError saying `refusal`."""
    if count <= MAX_DEPTH:
        read()
        return
    try:
        read()
    except UserError as e:
        assert refusal in str(e), str(e)
    else:
        raise AssertionError(f"{count} accepted")


@settings(max_examples=100, deadline=None)
@given(nests(toml=True))
def test_toml_is_read_exactly_up_to_the_depth_limit(nest):
    text, depth = nest
    _read_exactly_up_to(depth, lambda: parse_toml(text, "n.toml", "policy"), "nested more than")


@settings(max_examples=100, deadline=None)
@given(nests(toml=False))
def test_json_is_read_exactly_up_to_the_depth_limit(nest):
    text, depth = nest
    _read_exactly_up_to(depth, lambda: parse_json(text.encode(), "n.json", "profile"), "nested more than")


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 3 * MAX_DEPTH), st.sampled_from(["k", '"q"', "'l'", "k-1"]))
def test_a_dotted_key_is_read_up_to_the_limit(parts, part):
    text = ".".join([part] * parts) + " = 1\n"
    _read_exactly_up_to(parts, lambda: parse_toml(text, "d.toml", "policy"), "dotted key")
