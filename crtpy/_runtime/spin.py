"""Bounded busy-polling before a blocking wait, shared by every protocol that reads
on the thread that waits for the answer (HTTP caller reads, MQTT inline reads).

Why: a thread that sleeps lets its CPU go idle, and on a VM waking an idle vCPU again
costs 20-40 us (often more), several times what a small request costs in Python.  A
waiter that expects its answer within microseconds polls without sleeping first; its
CPU never goes idle, so the answer reaches it at no wake-up cost.

Bounds, so that spinning never costs much:
- a budget per wait, chosen by the caller (microseconds);
- adaptive: after ``MAX_MISSES`` waits in a row that outlast their budget, a
  :class:`Spinner` does not spin for its next ``PAUSE`` waits (a slow peer costs little);
- at most one spinning thread per CPU but one (the others block at once), and none on a
  single CPU, where the spin would keep a local peer from running;
- ``ENABLED = False`` turns every spin off.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

ENABLED = (os.cpu_count() or 1) > 1
MAX_MISSES = 3
PAUSE = 64
_MAX_SPINNERS = max(1, (os.cpu_count() or 1) - 1)
_lock = threading.Lock()
_spinners = [0]  # threads spinning now
_monotonic = time.monotonic
_sched_yield: Callable[[], None] | None = getattr(os, "sched_yield", None)


class Spinner:
    """The adaptive spin state of one waiter (a connection)."""

    __slots__ = ("hits", "misses", "pause", "spins")

    def __init__(self) -> None:
        self.misses = 0  # waits in a row that outlasted their budget
        self.pause = 0  # waits to go before spinning again
        self.spins = 0  # spins made, and those that found something (tests, tuning)
        self.hits = 0

    def wanted(self) -> bool:
        """Whether the next wait may spin; a paused spinner counts one wait down."""
        if not ENABLED:
            return False
        if self.pause:
            self.pause -= 1
            return False
        return True

    def spin(self, poll: Callable[[int], list[Any]], budget: float, polite: bool = False) -> list[Any]:
        """Call ``poll(0)`` (which must release the GIL, as any system call does) until
        it finds something or ``budget`` seconds passed; what it found (empty: nothing,
        the caller then blocks).  ``polite``: yield the CPU between polls, for a spinner
        that other threads on its CPU (the peer, the thread that will act on the
        answer) may need: measured faster there, slower (one system call more per poll)
        for a waiter that is alone."""
        with _lock:
            if _spinners[0] >= _MAX_SPINNERS:
                return []
            _spinners[0] += 1
        self.spins += 1
        yield_cpu = _sched_yield if polite else None
        try:
            end = _monotonic() + budget
            while True:
                ready = poll(0)
                if ready:
                    self.misses = 0
                    self.hits += 1
                    return ready
                if _monotonic() >= end:
                    break
                if yield_cpu is not None:
                    yield_cpu()
        finally:
            with _lock:
                _spinners[0] -= 1
        self.misses += 1
        if self.misses >= MAX_MISSES:
            self.misses = 0
            self.pause = PAUSE
        return ready
