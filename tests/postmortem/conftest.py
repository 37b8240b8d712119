"""Fixtures for these tests; helpers live in postmortem_support.py (a unique module name,
so test folders can share one pytest run)."""

from postmortem_support import *  # noqa: F401,F403
