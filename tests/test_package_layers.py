"""The package's layering, read from the source with `ast`: every import counts, also the
ones inside functions (deferred for start-up time, but dependencies all the same).

- No library module imports click or a command module: only the entry point
  (`memplace.start`), `memplace.cli` (the root command tree) and `memplace.commands.*` do.
- The import graph between memplace modules has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import memplace

SRC = Path(memplace.__file__).resolve().parent
COMMAND_MODULES = ("memplace.start", "memplace.cli", "memplace.__main__")


def module_name(path: Path) -> str:
    parts = ["memplace", *path.relative_to(SRC).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """Every module `name` imports anywhere in its body (resolved to memplace modules,
    or the top-level name of a third-party one)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from memplace.x import y`: y may be a module of package x, or a name in x.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            if t.startswith("memplace"):
                while t not in MODULES and "." in t:
                    t = t.rpartition(".")[0]
            else:
                t = t.split(".")[0]
            out.add(t)
    return out


GRAPH = {name: imports(name) for name in MODULES}


def is_command(name: str) -> bool:
    return name in COMMAND_MODULES or name == "memplace.commands" or name.startswith("memplace.commands.")


def test_the_graph_is_read():
    assert "memplace.commands.run" in MODULES and "memplace.placement.run" in GRAPH["memplace.commands.run"]
    assert "click" in GRAPH["memplace.cli"]
    # function-level imports count: the profile command imports its engines inside a function
    assert "memplace.profiling.runtime_engine" in GRAPH["memplace.commands.profile"]


def test_no_library_module_imports_click_or_a_command():
    bad = {name: sorted(t for t in deps if t == "click" or is_command(t))
           for name, deps in GRAPH.items() if not is_command(name)}
    assert {k: v for k, v in bad.items() if v} == {}


def test_commands_are_imported_only_by_the_command_tree():
    users = {name: sorted(t for t in deps if is_command(t) and t != "memplace.commands")
             for name, deps in GRAPH.items() if not is_command(name)}
    assert {k: v for k, v in users.items() if v} == {}


def test_no_import_cycle():
    memplace_graph = {n: {t for t in deps if t in MODULES and t != n} for n, deps in GRAPH.items()}
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []
    cycles = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(memplace_graph[n]):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(memplace_graph):
        if n not in state:
            visit(n)
    assert cycles == []
