"""Event-loop threads: each ``LoopThread`` runs one asyncio loop on a daemon thread.

``crtpy.io.EventLoopGroup`` owns a list of them; every connection and client is pinned
to one loop thread for its whole life, so its protocol state is only touched there.
uvloop is used when it is installed, unless ``CRTPY_EVENT_LOOP=asyncio`` is set.
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from . import fork, threads
from .callbacks import retire_idle_workers
from .futures import CrtFuture, run_coroutine

_log = logging.getLogger("crtpy.runtime")

_STOP_GRACE_SEC = 1.0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop of the implementation crtpy is configured to use."""
    if os.environ.get("CRTPY_EVENT_LOOP", "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class LoopThread:
    """One asyncio event loop running on its own daemon thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = new_event_loop()
        self._fork_generation = fork.generation()
        self._ready = threading.Event()
        self._stopping = False
        self._stopped = threading.Event()
        self._on_stopped: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._ident: int | None = None
        self.thread = threads.start_thread(self._run, name)
        self._ready.wait()
        _living_loops.add(self)

    # -- running -------------------------------------------------------------------
    def _run(self) -> None:
        self._ident = threading.get_ident()
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
            self._cancel_remaining_tasks()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        except BaseException:  # noqa: BLE001 - never let a loop thread print a traceback
            _log.exception("event loop %s failed", self.name)
        finally:
            try:
                self.loop.close()
            except Exception:  # noqa: BLE001
                _log.debug("closing loop %s", self.name, exc_info=True)
            self._stopped.set()
            with self._lock:
                callbacks, self._on_stopped = self._on_stopped, []
            for cb in callbacks:
                try:
                    cb()
                except Exception:  # noqa: BLE001
                    _log.exception("loop stop callback failed")

    def _cancel_remaining_tasks(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        if not tasks:
            return
        for t in tasks:
            t.cancel()
        gather = asyncio.gather(*tasks, return_exceptions=True)
        try:
            self.loop.run_until_complete(asyncio.wait_for(gather, _STOP_GRACE_SEC))
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass

    # -- using it from other threads -------------------------------------------------
    def check_usable(self) -> None:
        fork.check(self._fork_generation, "event loop")
        if self._stopping:
            from .._errors import error

            raise error("AWS_IO_EVENT_LOOP_SHUTDOWN")

    def in_thread(self) -> bool:
        return threading.get_ident() == self._ident

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop thread (from any thread)."""
        self.check_usable()
        self.loop.call_soon_threadsafe(fn, *args)

    def run_coroutine(self, coro: Coroutine[Any, Any, Any],
                      future: CrtFuture | None = None) -> CrtFuture:
        """Run ``coro`` on this loop; the returned future completes with its result."""
        try:
            self.check_usable()
        except BaseException:
            coro.close()
            raise
        return run_coroutine(self.loop, coro, future)

    def run_sync(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn()`` on the loop thread and wait for its result (not from the loop thread)."""
        if self.in_thread():
            return fn()

        async def call() -> Any:
            return fn()

        return self.run_coroutine(call()).result(timeout)

    # -- stopping --------------------------------------------------------------------
    def add_stopped_callback(self, cb: Callable[[], None]) -> None:
        with self._lock:
            if not self._stopped.is_set():
                self._on_stopped.append(cb)
                return
        cb()

    def stop(self) -> None:
        """Ask the loop to finish; returns at once.  Idempotent."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        if self._fork_generation != fork.generation():
            return  # the thread does not exist in this process
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            pass  # already closed

    def join(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()


_living_loops: weakref.WeakSet[LoopThread] = weakref.WeakSet()


def _stop_all_at_exit() -> None:
    loops = list(_living_loops)
    for lt in loops:
        lt.stop()
    for lt in loops:
        if lt._fork_generation == fork.generation() and not lt.in_thread():
            lt.join(_STOP_GRACE_SEC)
    retire_idle_workers()


atexit.register(_stop_all_at_exit)


@fork.on_fork_child
def _forget_parent_loops() -> None:
    global _living_loops
    _living_loops = weakref.WeakSet()


def is_thread_of_living_loop(thread: object) -> bool:
    """True if ``thread`` runs a loop that has not been asked to stop."""
    return any(lt.thread is thread and not lt._stopping for lt in list(_living_loops))
