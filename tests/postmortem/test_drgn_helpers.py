"""The drgn helpers give real drgn Objects for TLS variables that drgn alone cannot read."""

from __future__ import annotations

import logging

import pytest

from postmortem_support import printed
from test_tls_glibc import pie_core  # noqa: F401 - shared fixture

drgn = pytest.importorskip("drgn")


def test_tls_object_values_equal_printed(pie_core):  # noqa: F811
    from memplace.postmortem.drgn_helpers import pthread_key_values, thread_pointer, tls_object

    _, _, core, out, _ = pie_core
    logging.getLogger("drgn").setLevel(logging.CRITICAL)
    prog = drgn.Program()
    prog.set_core_dump(str(core))
    try:
        prog.load_default_debug_info()
    except drgn.MissingDebugInfoError:
        pass
    assert prog["t_long"].absent_  # drgn alone: <not implemented>
    want = printed(out)
    tids = sorted({tid for tid, _ in want})
    assert len(tids) == 5
    for tid in tids:
        assert tls_object(prog, "t_long", thread=tid).value_() == int(want[(tid, "t_long")])
        x, y, tag = want[(tid, "t_pt")].split()
        pt = tls_object(prog, "t_pt", thread=tid)
        assert (pt.x.value_(), pt.y.value_(), pt.tag.string_().decode()) == (int(x), int(y), tag)
        assert tls_object(prog, "lib_counter", thread=tid).value_() == int(want[(tid, "lib_counter")])
        assert thread_pointer(prog, tid)
    assert pthread_key_values(prog).findings == []
