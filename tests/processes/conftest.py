"""Fixtures for these tests; helpers live in processes_support.py (a unique module name,
so test folders can share one pytest run)."""

from processes_support import *  # noqa: F401,F403
