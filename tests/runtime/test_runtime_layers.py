"""The runtime's files stay layered (docs/architecture.md, "The runtime"): one folder per
layer, and a file calls into, reads or includes only its own layer or the ones below, with
no cycle between files.

Two views of "file A uses file B": the sources (every cross-file symbol is declared in
runtime/include/internal.h under the name of the file that defines it; a file uses it if it
names it, directly or through one of the header's static inline helpers), and, when the
runtime has been built in this tree, the object files (`gcc-nm`: a symbol one object needs
and another defines)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "runtime"
INTERNAL = RUNTIME / "include" / "internal.h"

# top (1) to bottom; files of one layer may use each other, without a cycle
LAYERS = {"init.c": 1, "entry": 2, "modes": 3, "sites": 4, "heaps": 4, "thread": 5, "os": 6, "util": 7,
          "include": 8}


def layer(rel: str) -> int:
    return LAYERS[rel.split("/", 1)[0]]


def sources() -> dict[str, str]:
    return {str(p.relative_to(RUNTIME)): p.read_text() for p in sorted(RUNTIME.rglob("*.c"))}


def strip(code: str) -> str:
    code = re.sub(r"/\*.*?\*/", " ", code, flags=re.S)
    code = re.sub(r"//[^\n]*", " ", code)
    return re.sub(r'"(\\.|[^"\\])*"', '""', code)


def identifiers(code: str) -> set[str]:
    """Names used, struct tags left out (`struct mp_thread` is a layout, not a call of mp_thread())."""
    return set(re.findall(r"\b[A-Za-z_]\w*\b", re.sub(r"\bstruct\s+\w+", " ", strip(code))))


def internal_sections() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """From internal.h: {symbol: defining file} for declarations, the same for static inline
    helpers, and each helper's body."""
    declared, inline, bodies = {}, {}, {}
    section = None
    lines = INTERNAL.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r'// "([^"]+)"', line)
        if m:
            section = m.group(1)
        elif line.startswith("/* ======== "):
            section = None
        elif line.startswith("MP_HIDDEN"):
            assert section, f"internal.h:{i + 1}: a declaration outside a file's section"
            decl = line.split(";")[0]
            name = (re.search(r"(\w+)\s*\(", decl) or re.search(r"(\w+)\s*(\[[^\]]*\])?\s*$", decl)).group(1)
            declared[name] = section
        elif line.startswith("static inline"):
            assert section, f"internal.h:{i + 1}: a helper outside a file's section"
            name = re.search(r"(\w+)\s*\(", line).group(1)
            j = i
            while lines[j] != "}" and not lines[j].rstrip().endswith("}"):
                j += 1
            inline[name] = section
            bodies[name] = "\n".join(lines[i:j + 1])
            i = j
        i += 1
    return declared, inline, bodies


def acyclic(edges: set[tuple[str, str]]) -> list[str]:
    """A cycle among the files, or []."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> list[str]:
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return path + [n, m]
            if m not in state and (c := visit(m, path + [n])):
                return c
        state[n] = 2
        return []

    for n in sorted(graph):
        if n not in state and (c := visit(n, [])):
            return c
    return []


def check_layered(edges: set[tuple[str, str]]) -> None:
    upward = sorted(f"{a} (layer {layer(a)}) -> {b} (layer {layer(b)})" for a, b in edges if layer(a) > layer(b))
    assert not upward, "a lower file uses a higher one:\n" + "\n".join(upward)
    cycle = acyclic(edges)
    assert not cycle, "cycle: " + " -> ".join(cycle)


def test_every_runtime_file_is_in_a_layer_folder_and_in_the_build():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    for rel in sources():
        assert rel.split("/", 1)[0] in LAYERS, rel
        assert f"runtime/{rel}" in cmake, rel
    assert set(p.parent.name for p in (RUNTIME / "include").glob("*")) == {"include"}


def test_includes_point_down_only():
    """.c files include only the shared headers; headers include only lower headers
    (internal.h -> types.h -> policy_format.h) and never a .c file."""
    order = ["internal.h", "types.h", "policy_format.h"]
    assert sorted(p.name for p in (RUNTIME / "include").glob("*.h")) == sorted(order)
    for rel, code in sources().items():
        for inc in re.findall(r'(?m)^#include "([^"]+)"', code):
            assert inc in order, (rel, inc)
    for name in order:
        for inc in re.findall(r'(?m)^#include "([^"]+)"', (RUNTIME / "include" / name).read_text()):
            assert order.index(inc) > order.index(name), (name, inc)


def test_internal_h_names_the_file_that_defines_each_symbol():
    declared, inline, _ = internal_sections()
    srcs = sources()
    assert set(declared.values()) | set(inline.values()) <= set(srcs)
    for name, rel in declared.items():
        function = rf"(?m)^(?![\s#])(?!extern\b)(?!static\b)[^;\n=]*\b{name}\s*\([^;{{]*\)\s*(\{{|$)"
        variable = rf"(?m)^MP_HIDDEN (?!extern\b)[^;(\n]*\b{name}\b\s*(\[[^\]]*\])?\s*(__attribute__.*)?[;=]"
        definers = [r for r, code in srcs.items()
                    if re.search(function, strip(code)) or re.search(variable, strip(code))]
        assert definers == [rel], (name, rel, definers)


def source_edges() -> set[tuple[str, str]]:
    declared, inline, bodies = internal_sections()
    owner = {**declared, **inline}
    # what each inline helper uses, transitively
    reach = {h: {s for s in identifiers(bodies[h]) if s in owner and s != h} for h in inline}
    changed = True
    while changed:
        changed = False
        for h in reach:
            extra = set().union(*(reach.get(s, set()) for s in reach[h])) - reach[h] - {h}
            if extra:
                reach[h] |= extra
                changed = True
    edges = set()
    for rel, code in sources().items():
        used = identifiers(code) & set(owner)
        for s in list(used):
            used |= reach.get(s, set())
        edges |= {(rel, owner[s]) for s in used if owner[s] != rel}
    return edges


def test_source_view_is_layered_and_acyclic():
    edges = source_edges()
    # the known routes exist (the view sees something)
    assert ("entry/entry.c", "modes/place.c") in edges
    assert ("modes/place.c", "heaps/device_heap.c") in edges
    assert ("heaps/device_heap.c", "thread/thread.c") in edges
    check_layered(edges)
    # thread exit is the placement mode's hook: thread.c calls no device heap
    assert not any(a == "thread/thread.c" and b.startswith(("heaps/", "modes/")) for a, b in edges)


def built_objects() -> dict[str, Path] | None:
    """The object of each source file in this tree's CMake build, if it is current."""
    srcs = sources()
    for build in sorted((ROOT / "build").glob("*/CMakeFiles/memplace.dir/runtime")):
        objs = {rel: build / f"{rel}.o" for rel in srcs}
        if all(o.exists() and o.stat().st_mtime >= (RUNTIME / rel).stat().st_mtime for rel, o in objs.items()):
            return objs
    return None


def test_object_view_is_layered_and_acyclic():
    objs = built_objects()
    nm = shutil.which("gcc-nm") or shutil.which("nm")
    if objs is None or nm is None:
        pytest.skip("no current build of the runtime in build/ (pip install -e .), or no nm")
    defined: dict[str, str] = {}
    needs: dict[str, set[str]] = {}
    for rel, o in objs.items():
        out = subprocess.run([nm, str(o)], check=True, capture_output=True, text=True).stdout
        needs[rel] = set()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "U":
                needs[rel].add(parts[1])
            elif len(parts) == 3 and parts[1].isupper() and parts[1] != "U":
                assert parts[2] not in defined, (parts[2], rel, defined.get(parts[2]))
                defined[parts[2]] = rel
    edges = {(rel, defined[s]) for rel, syms in needs.items() for s in syms if s in defined and defined[s] != rel}
    assert ("entry/entry.c", "modes/place.c") in edges
    check_layered(edges)
    # and the sources' view agrees with the objects' on every edge the objects show
    assert edges <= source_edges(), sorted(edges - source_edges())
