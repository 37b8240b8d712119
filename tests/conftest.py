"""Fixtures shared by all tests; helpers live in support.py."""

from support import *  # noqa: F401,F403

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The whole run keeps its caches (unwind tables, compiled policies, TLS indexes,
    measured devices) in a directory of its own: results never depend on what an earlier
    run, or the user, left in ~/.cache/memplace (a cached `devices --measure` changes what
    advise does on a machine without HMAT). Tests that need a cold cache set their own."""
    saved = os.environ.get("MEMPLACE_CACHE")
    os.environ["MEMPLACE_CACHE"] = str(tmp_path_factory.mktemp("memplace-cache"))
    yield
    if saved is None:
        os.environ.pop("MEMPLACE_CACHE", None)
    else:
        os.environ["MEMPLACE_CACHE"] = saved
