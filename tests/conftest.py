"""Fixtures shared by all tests; helpers live in support.py."""

from support import *  # noqa: F401,F403
