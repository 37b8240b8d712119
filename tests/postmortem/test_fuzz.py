"""Mutated and truncated cores: memplace answers or says one line with status 2; never a traceback or a hang."""

from __future__ import annotations

import signal

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from postmortem_support import build, crash, need  # noqa: E402


@pytest.fixture(scope="module")
def small_core(tmp_path_factory):
    need("gcc", "gcc")
    tmp = tmp_path_factory.mktemp("fuzz")
    exe = build(tmp, "tlsprog.c", "prog", "-pthread")
    core, _ = crash(tmp, exe)
    return exe, core.read_bytes(), tmp


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def _run(argv: list[str]) -> int:
    from memplace.cli import main

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(30)
    try:
        main(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return 0


mutation = st.one_of(
    # overwrite bytes in the headers and notes, where structure lives
    st.tuples(st.just("poke"), st.integers(0, 0x3000), st.binary(min_size=1, max_size=8)),
    # overwrite bytes anywhere (memory contents: link_map, DTVs, key tables)
    st.tuples(st.just("poke_any"), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(b"")),
)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=st.lists(mutation, min_size=1, max_size=4), cmd=st.sampled_from(["tls", "keys"]))
def test_mutated_cores_give_an_answer_or_one_line(small_core, muts, cmd, capsys):
    exe, data, tmp = small_core
    buf = bytearray(data)
    for kind, where, payload in muts:
        if kind == "poke":
            buf[where:where + len(payload)] = payload
        elif kind == "poke_any":
            at = int(where * (len(buf) - 8))
            buf[at:at + len(payload)] = payload
        else:
            del buf[int(where * len(buf)):]
    path = tmp / "mutated.core"
    path.write_bytes(bytes(buf))
    code = _run([cmd, str(path), "--exe", str(exe), "--json"])
    err = capsys.readouterr().err
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("memplace: "), err
