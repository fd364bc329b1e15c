"""Private helpers for tests: leak checks over crtpy's resources and threads."""
from __future__ import annotations

import gc
import os
import time
import types
import weakref

from . import NativeResource
from .common import join_all_native_threads


def native_memory_usage() -> int:
    """crtpy allocates no native memory of its own, so this is always 0."""
    return 0


def dump_native_memory() -> None:
    """Nothing to dump: crtpy has no native allocations (kept for API compatibility)."""


def _release_static_defaults() -> None:
    try:
        from .io import ClientBootstrap, DefaultHostResolver, EventLoopGroup
    except ImportError:
        return
    ClientBootstrap.release_static_default()
    EventLoopGroup.release_static_default()
    DefaultHostResolver.release_static_default()


# Resources a failed check has already named.  They are left out of later checks, so one
# leak fails one test instead of every test that runs after it.
_reported: weakref.WeakSet[NativeResource] = weakref.WeakSet()


def living_resources() -> list[NativeResource]:
    for _ in range(3):
        try:
            return [r for r in list(NativeResource._living) if r not in _reported]
        except RuntimeError:  # set changed size during iteration (another thread released one)
            continue
    return [r for r in list(NativeResource._living) if r not in _reported]


_DESCRIBE_REFERRERS = 3


def check_for_leaks(*, timeout_sec: float = 10.0) -> None:
    """Check that every crtpy resource created since tracking began has been released.

    Requires ``crtpy.NativeResource._track_lifetime = True`` before the resources were
    made.  Waits up to ``timeout_sec`` for them to be garbage collected and for their
    threads to finish; otherwise raises :class:`RuntimeError` naming the living ones
    (their types only, unless ``AWS_CRT_MEMORY_PRINT_SECRETS_OK=1``, so that no secret
    reaches a test log).
    """
    _release_static_defaults()
    if not NativeResource._track_lifetime:
        raise RuntimeError("crtpy.NativeResource._track_lifetime=True must be set for accurate leak checks")

    deadline = time.monotonic() + timeout_sec
    while True:
        gc.collect()
        living = living_resources()
        if not living and join_all_native_threads(timeout_sec=0.1):
            return
        if time.monotonic() >= deadline:
            break
        # Drop our own references before collecting again, or a resource kept alive only
        # by a cycle that includes this list could never be freed.
        del living
        time.sleep(0.05)

    secrets_ok = os.getenv("AWS_CRT_MEMORY_PRINT_SECRETS_OK") == "1"
    described = []
    # gc.get_referrers scans the whole heap: name the referrers of a few resources only,
    # so that a failing check reports quickly even in a large test process.
    for i, obj in enumerate(living):
        text = repr(obj) if secrets_ok else type(obj).__qualname__
        if i < _DESCRIBE_REFERRERS:
            referrers = [type(r).__qualname__ for r in gc.get_referrers(obj)
                         if r is not living and not isinstance(r, types.FrameType)]
            text += f" (referred to by: {', '.join(referrers) or 'nothing'})"
        described.append(text)
    _reported.update(living)
    del living
    from ._runtime import threads

    thread_names = [t.name for t in threads.living()]
    raise RuntimeError(
        f"crtpy leak check failed: {len(described)} living resources: {'; '.join(described) or 'none'}; "
        f"threads still running: {', '.join(thread_names) or 'none'}")
