"""This folder's conftest.py helpers under a unique module name.

`from conftest import build` gets whichever conftest.py pytest imported last when several
test folders run in one session; this loads tests/placement/conftest.py by path instead.

    from placement_helpers import build, line_of, run_placed
"""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("placement_conftest", Path(__file__).with_name("conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)

build = _conftest.build
calls_to = _conftest.calls_to
line_of = _conftest.line_of
run_placed = _conftest.run_placed
stats_of = _conftest.stats_of
where = _conftest.where
PROGRAMS = _conftest.PROGRAMS
