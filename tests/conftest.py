"""Shared test fixtures.

Servers are real processes on loopback, started by fixtures on free ports.  A test whose
server binary is missing skips with the reason, unless CRTPY_REQUIRE_SERVERS=1 (CI),
where it fails.
"""
from __future__ import annotations

import os
import shutil
import socket

import pytest

import crtpy
from crtpy._test import check_for_leaks

REQUIRE_SERVERS = os.environ.get("CRTPY_REQUIRE_SERVERS") == "1"
LONG_TESTS = os.environ.get("CRTPY_LONG_TESTS") == "1"

# Track every resource from the start so check_for_leaks sees them all.
crtpy.NativeResource._track_lifetime = True


def require_binary(name: str, *candidates: str) -> str:
    """Path of a server binary, or skip (fail under CRTPY_REQUIRE_SERVERS=1) without it."""
    for c in (name, *candidates):
        path = shutil.which(c) or (c if os.path.isabs(c) and os.access(c, os.X_OK) else None)
        if path:
            return path
    msg = f"{name} is not installed (run `make system-deps` as root)"
    if REQUIRE_SERVERS:
        pytest.fail(msg)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def leak_check():
    """Use in a test to assert that it released every crtpy resource it made."""
    yield
    check_for_leaks(timeout_sec=10.0)
