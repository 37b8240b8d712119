"""Fixtures for these tests; helpers live in advisor_support.py (a unique module name,
so test folders can share one pytest run)."""

from advisor_support import *  # noqa: F401,F403
