"""The whole placement loop on OpenFOAM pitzDaily, serial and with 2 MPI ranks: every step
succeeds, the placed run's residuals equal the bare run's, the run places what the plan
placed (at least 95% of the planned allocations where planned), the statistics hold both
ranks, and the two ranks together stay within the node's capacity."""

from __future__ import annotations

import shutil

import pytest

from openfoam_loop import run_loop
from openfoam_support import missing

pytestmark = pytest.mark.slow

if missing():
    pytest.skip(missing(), allow_module_level=True)

MIB = 1 << 20


def test_serial_loop(tmp_path):
    # 8 MiB of fast memory: less than the heap's 12, so the plan must pack it
    r = run_loop(tmp_path / "serial", ranks=1, steps=20, capacity_mib=8)
    assert r.identical
    assert r.planned_share >= 0.95, (r.planned, r.placed)
    assert r.sites > 1000  # a real code's profile, not a toy's
    # the run holds what the plan said (packed by the sum of the sites' own peaks, the
    # plan said 7.8 MiB and the run held 4.7)
    run_peak, = r.fast_peaks
    assert 0.9 * r.planned_fast_peak <= run_peak <= r.capacity + MIB, (r.planned_fast_peak, run_peak)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs Debian package openmpi-bin")
def test_two_rank_loop_shares_the_node_capacity(tmp_path):
    # 3 MiB of fast memory for the node: less than the two ranks would like together
    r = run_loop(tmp_path / "mpi", ranks=2, steps=20, capacity_mib=3)
    assert r.identical
    assert r.ranks_in_stats == [0, 1]
    assert r.planned_share >= 0.95, (r.planned, r.placed)
    # each rank may pass the capacity by one batch of small blocks (1 MiB per thread)
    assert sum(r.fast_peaks) <= r.capacity + 2 * MIB, r.fast_peaks
