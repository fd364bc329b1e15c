"""Running user callbacks.

User callbacks never run on an event-loop thread: a callback that blocks (for example
on ``future.result()`` of an operation that the same loop must complete) would
otherwise deadlock its client.  Each resource owns a :class:`CallbackQueue`, which runs
its callbacks one at a time and in order on a shared pool of daemon worker threads.
An exception raised by a user callback is logged and never stops anything.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from . import fork, threads

_log = logging.getLogger("crtpy.callbacks")


def invoke(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Call a user callback, logging (never raising) whatever it raises."""
    try:
        fn(*args, **kwargs)
    except BaseException:  # noqa: BLE001 - a user's error must never kill a worker
        _log.exception("exception in user callback %s", getattr(fn, "__qualname__", repr(fn)))


class WorkerPool:
    """A growable pool of daemon threads.  Idle workers exit after ``idle_timeout``.

    Each idle worker parks on a lock of its own; :meth:`submit` hands the work to the
    most recently parked one by releasing that lock (one wake-up, no condition variable).
    """

    def __init__(self, name: str, max_workers: int, idle_timeout: float = 5.0) -> None:
        self._name = name
        self._max = max_workers
        self._idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._queue: collections.deque[Callable[[], None]] = collections.deque()
        self._parked: list[Any] = []  # the wake-up locks of idle workers, held (acquired)
        self._workers = 0
        self._serial = 0
        self._retire = False

    def submit(self, work: Callable[[], None]) -> None:
        with self._lock:
            self._queue.append(work)
            self._retire = False
            if self._parked:
                self._parked.pop().release()
                return
            if self._workers >= self._max:
                return  # a busy worker will pick it up when it finishes
            self._workers += 1
            self._serial += 1
            name = f"{self._name}-{self._serial}"
        threads.start_thread(self._work, name)

    def retire_idle(self) -> None:
        """Ask idle workers to exit now (used by leak checks and at exit)."""
        with self._lock:
            self._retire = True
            parked, self._parked = self._parked, []
            for wake in parked:
                wake.release()

    def _work(self) -> None:
        wake = threading.Lock()
        wake.acquire()
        lock = self._lock
        queue = self._queue
        while True:
            with lock:
                if queue:
                    work = queue.popleft()
                elif self._retire:
                    self._workers -= 1
                    return
                else:
                    self._parked.append(wake)
                    work = None
            if work is None:
                if wake.acquire(True, self._idle_timeout):
                    continue  # woken by submit() or retire_idle()
                with lock:
                    try:
                        self._parked.remove(wake)
                    except ValueError:
                        # submit() took this worker just as the wait timed out; its
                        # release() happened under the lock, so this does not block.
                        wake.acquire()
                        continue
                    if not queue:
                        self._workers -= 1
                        return
                continue
            try:
                work()
            except BaseException:  # noqa: BLE001 - work items handle their own errors
                _log.exception("unhandled exception in crtpy worker")
            # An idle worker must not keep its last work item (and what it refers to) alive.
            del work


_callback_pool = WorkerPool("crtpy-callback", max_workers=64)


def dispatch(fn: Callable[..., Any], *args: Any) -> None:
    """Run one user callback on a worker thread, with no ordering guarantee."""
    _callback_pool.submit(lambda: invoke(fn, *args))


class CallbackQueue:
    """Runs the callbacks of one resource serially, in the order they were posted.

    ``reader`` (optional) is called by the queue's worker whenever the queue runs empty,
    before the worker lets go of it: a connection's "inline reader" (see
    ``crtpy._mqtt.stream``), which may wait for and read the connection's socket on this
    worker thread and post what it decodes to this queue, so that those callbacks run
    without a thread hand-off.  It returns True to be called again after the queue's
    items (if any) ran, False when it is done.  While it waits it registers a wake-up
    descriptor with :meth:`reader_waiting`: a :meth:`post` from another thread then
    writes to it (an ``eventfd``), so that posted callbacks never wait for the reader."""

    __slots__ = ("_batch", "_items", "_lock", "_scheduled", "_waker", "reader")

    def __init__(self) -> None:
        self._items: collections.deque[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._waker = -1  # the waiting reader's eventfd, or -1
        self.reader: Callable[[], bool] | None = None
        # the items the worker took and has not run yet (see has_items)
        self._batch: collections.deque[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] | None = None

    def post(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self._items.append((fn, args, kwargs))
            if self._scheduled:
                w = self._waker
                if w >= 0:
                    # written under the lock: the reader clears ``_waker`` under it
                    # before its descriptor can be closed
                    self._waker = -1
                    try:
                        os.eventfd_write(w, 1)
                    except OSError:
                        pass
                return
            self._scheduled = True
        _callback_pool.submit(self._drain)

    def reader_waiting(self, wake_fd: int) -> bool:
        """(the reader, on this queue's worker) About to wait: False if callbacks are
        waiting (run them first); else posts from now on write to ``wake_fd``."""
        with self._lock:
            if self._items:
                return False
            self._waker = wake_fd
            return True

    def reader_woken(self) -> None:
        """(the reader) Done waiting: posts no longer write to the wake-up descriptor."""
        with self._lock:
            self._waker = -1

    def has_items(self) -> bool:
        """Callbacks wait to run: posted, or taken by the worker and not run yet (from a
        callback, those that follow it)."""
        return bool(self._items or self._batch)

    def _drain(self) -> None:
        while True:
            reader: Callable[[], bool] | None = None
            with self._lock:
                if not self._items:
                    reader = self.reader
                    if reader is None:
                        self._scheduled = False
                        return
                    batch = None
                else:
                    batch = self._items
                    self._items = collections.deque()
            if reader is not None:
                try:
                    more = reader()
                except BaseException:  # noqa: BLE001 - must never kill the worker or stall the queue
                    _log.exception("inline reader failed")
                    more = False
                if more:
                    continue
                with self._lock:
                    if self._items:
                        continue
                    self._scheduled = False
                    return
            assert batch is not None
            self._batch = batch
            pop = batch.popleft
            try:
                while batch:
                    fn, args, kwargs = pop()
                    invoke(fn, *args, **kwargs)
            finally:
                self._batch = None


def retire_idle_workers() -> None:
    _callback_pool.retire_idle()


@fork.on_fork_child
def _new_pool_in_child() -> None:
    global _callback_pool
    _callback_pool = WorkerPool("crtpy-callback", max_workers=64)
