"""Fixtures for these tests; helpers live in placement_support.py (a unique module name,
so test folders can share one pytest run)."""

from placement_support import *  # noqa: F401,F403
