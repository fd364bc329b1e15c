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
  a spin that ends far past its budget, answer or not, counts as a miss too (its CPU
  was taken away, say by a busy process sharing it: a thread that blocks is woken
  sooner there);
- at most one spinning thread per CPU this process may use but one (the others block at
  once), and none with a single CPU, where the spin would keep a local peer from running;
- ``ENABLED = False`` turns every spin off.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from . import fork


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity: a container's cpuset, taskset)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_CPUS = _usable_cpus()
ENABLED = _CPUS > 1
MAX_MISSES = 3
PAUSE = 64
# a spin that ends this much past its budget lost its CPU (a time slice is milliseconds)
_LATE_SEC = 0.001
_MAX_SPINNERS = max(1, _CPUS - 1)
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

    def ready_to_spin(self) -> bool:
        """Whether a wait now would spin (for a thread deciding to wake the waiter)."""
        return ENABLED and not self.pause and _spinners[0] < _MAX_SPINNERS

    def spin(self, poll: Callable[[int], list[Any]], budget: float, polite: bool = False) -> list[Any]:
        """Call ``poll(0)`` (which must release the GIL, as any system call does) until
        it finds something or ``budget`` seconds passed; what it found (empty: nothing,
        the caller then blocks).  ``polite``: yield the CPU between polls, for a spinner
        that other threads on its CPU (the peer, the thread that will act on the
        answer) may need: measured faster there, slower (one system call more per poll)
        for a waiter that is alone."""
        yield_cpu = _sched_yield if polite else None
        counted = False
        try:
            with _lock:
                if _spinners[0] >= _MAX_SPINNERS:
                    return []
                _spinners[0] += 1
                counted = True
            self.spins += 1
            end = _monotonic() + budget
            late = end + _LATE_SEC
            while True:
                ready = poll(0)
                now = _monotonic()
                if ready and now <= late:
                    self.misses = 0
                    self.hits += 1
                    return ready
                if ready or now >= end:
                    break
                if yield_cpu is not None:
                    yield_cpu()
        finally:
            if counted:
                with _lock:
                    _spinners[0] -= 1
        # outlasted its budget, or lost its CPU on the way (a late answer): a miss
        self.misses += 1
        if self.misses >= MAX_MISSES:
            self.misses = 0
            self.pause = PAUSE
        return ready


@fork.on_fork_child
def _reset_in_child() -> None:
    # the parent's spinning threads do not exist in the child (one may have held the lock)
    global _lock
    _lock = threading.Lock()
    _spinners[0] = 0
