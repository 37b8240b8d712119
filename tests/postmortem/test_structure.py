"""The post-mortem package's shape: no import cycle, one TLS address function, complete tables."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest

import memplace.postmortem as pm
from memplace.postmortem.arch import ARCHES, EM_AARCH64, EM_X86_64
from memplace.postmortem.layouts import TLS_ABIS
from memplace.postmortem.threads import Thread
from memplace.postmortem.tls_location import NO_TP, NoTlsBlock, TlsBlock, tls_address, tls_block

PKG = Path(pm.__file__).parent


def _imports() -> dict[str, set[str]]:
    """postmortem module -> postmortem modules it imports anywhere (function-level included)."""
    graph = {}
    for f in PKG.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("memplace.postmortem."):
                deps.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[2] for a in node.names if a.name.startswith("memplace.postmortem.")}
        graph[f.stem] = deps - {f.stem}
    return graph


def test_no_import_cycle():
    graph, done, path = _imports(), set(), []

    def visit(n):
        assert n not in path, "import cycle: " + " -> ".join(path[path.index(n):] + [n])
        if n in done:
            return
        path.append(n)
        for d in sorted(graph.get(n, ())):
            visit(d)
        path.pop()
        done.add(n)

    for n in sorted(graph):
        visit(n)


def test_every_arch_has_a_tls_abi_row():
    assert {a.name for a in ARCHES.values()} == set(TLS_ABIS)


def _fake(machine: int, tp: int | None, offset: int | None):
    target = SimpleNamespace(libc="glibc", glibc=None, arch=ARCHES[machine])
    module = SimpleNamespace(tls=object(), tls_modid=1, tls_offset=offset)
    return target, Thread(1, tp), module


def test_tls_address_is_block_plus_offset_below_and_above_the_tp():
    target, th, m = _fake(EM_X86_64, 0x7000, 0x40)  # variant II: block below the TP
    assert tls_block(target, th, m) == TlsBlock(0x7000 - 0x40, "ok", "static")
    assert tls_address(target, th, m, 8) == 0x7000 - 0x40 + 8
    target, th, m = _fake(EM_AARCH64, 0x7000, 0x10)  # variant I: above it
    assert tls_address(target, th, m, 8) == 0x7000 + 0x10 + 8


def test_tls_address_uses_a_given_block_and_says_why_there_is_none():
    target, th, m = _fake(EM_X86_64, 0x7000, 0x40)
    assert tls_address(target, th, m, 4, TlsBlock(0x1000, "ok", "dtv")) == 0x1004
    target, th, m = _fake(EM_X86_64, None, 0x40)
    with pytest.raises(NoTlsBlock) as e:
        tls_address(target, th, m, 4)
    assert e.value.state == NO_TP and isinstance(e.value, LookupError)


def test_public_api():
    assert set(pm.__all__) >= {"open_core", "pthread_keys", "thread_pointer", "tls_block", "tls_values"}
    assert all(callable(getattr(pm, n)) for n in pm.__all__)
