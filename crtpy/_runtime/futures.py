"""Futures handed to users, and the bridge from coroutines on a loop thread to them."""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING
from typing import Any

from . import fork
from .callbacks import dispatch, invoke

_log = logging.getLogger("crtpy.futures")
_DONE = frozenset((CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED))
_CANCELLED = frozenset((CANCELLED, CANCELLED_AND_NOTIFIED))


# One lock, shared by every CrtFuture, guards the step from "no Condition yet" to "has
# one" (see CrtFuture).  Its critical sections are a few attribute reads and writes and
# allocate nothing (so no garbage collection runs inside them).  Reentrant all the same:
# a signal handler, or on 3.12+ a finalizer, may run between two bytecodes of a section
# and complete another future; with a plain Lock that thread would wait for itself.
_claim = threading.RLock()


@fork.on_fork_child
def _after_fork() -> None:
    # a thread of the parent may have held it at the fork
    global _claim
    _claim = threading.RLock()


class CrtFuture(concurrent.futures.Future[Any]):
    """A ``concurrent.futures.Future`` whose done-callbacks never run on an event-loop
    thread: callbacks added before completion run on a callback worker, so they may
    block (even on other crtpy futures) without stalling the loop.

    Most futures are completed by one thread and read once done, and nobody ever waits
    for them (a QoS 1 publish's future, say).  ``concurrent.futures.Future`` builds a
    ``threading.Condition`` for each of them anyway, which costs more than the rest of
    the future together.  A CrtFuture makes its Condition only when something needs
    one: a thread that must block in ``result()``/``exception()``, or
    ``concurrent.futures.wait``/``as_completed``.  Until then completing, cancelling
    and adding callbacks happen under the module's ``_claim`` lock, which is also the
    lock under which the Condition comes into being.  So an operation sees either no
    Condition (and is serialized with the others by ``_claim``) or one (and uses the
    base class's code under it), never a mix.
    """

    def __init__(self) -> None:
        # deliberately not Future.__init__(): no Condition yet
        self._cond: threading.Condition | None = None
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[concurrent.futures.Future[Any]], object]] = []

    @property
    def _condition(self) -> threading.Condition:  # used by the base class's code
        cond = self._cond
        if cond is None:
            # built outside the lock: building it allocates, which may run the garbage
            # collector and finalizers that complete futures (taking the lock)
            new = threading.Condition()
            with _claim:
                cond = self._cond
                if cond is None:
                    cond = self._cond = new
        return cond

    @_condition.setter
    def _condition(self, value: threading.Condition) -> None:
        self._cond = value

    # -- reading: the state is one attribute, replaced whole, so no lock is needed ------

    def done(self) -> bool:
        return self._state in _DONE

    def cancelled(self) -> bool:
        return self._state in _CANCELLED

    def running(self) -> bool:
        return self._state == RUNNING

    def result(self, timeout: float | None = None) -> Any:
        if self._state == FINISHED:
            exc = self._exception
            if exc is None:
                return self._result
            try:
                raise exc
            finally:
                del exc  # no reference cycle through the traceback
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout)

    # -- changing -----------------------------------------------------------------------

    def _finish_fast(self, result: Any, exc: BaseException | None) -> bool:
        """Complete without a Condition if none exists; False if one does."""
        with _claim:
            if self._cond is not None:
                return False
            state = self._state
            if state not in _DONE:
                self._result = result
                self._exception = exc
                self._state = FINISHED
        if state in _DONE:
            # (outside the lock: repr() may make the Condition, which takes the lock)
            raise concurrent.futures.InvalidStateError(f"{state}: {self!r}")
        # nobody waits (that needs the Condition); run the callbacks outside the lock
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def set_result(self, result: Any) -> None:
        if not self._finish_fast(result, None):
            super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        if exception is None or not self._finish_fast(None, exception):
            super().set_exception(exception)

    def cancel(self) -> bool:
        with _claim:
            if self._cond is None:
                state = self._state
                if state in (RUNNING, FINISHED):
                    return False
                if state in _CANCELLED:
                    return True
                self._state = CANCELLED
                fast = True
            else:
                fast = False
        if not fast:
            return super().cancel()
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True

    def _add_callback(self, fn: Callable[[concurrent.futures.Future[Any]], object]) -> bool:
        """Append ``fn`` to the done-callbacks if not done yet; False if already done."""
        with _claim:
            if self._cond is None:
                if self._state in _DONE:
                    return False
                self._done_callbacks.append(fn)
                return True
        with self._condition:
            if self._state in _DONE:
                return False
            self._done_callbacks.append(fn)
            return True

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[Any]], object]) -> None:
        if not self._add_callback(lambda f: dispatch(fn, f)):
            invoke(fn, self)

    def add_done_callback_inline(self, fn: Callable[[concurrent.futures.Future[Any]], object]) -> None:
        """For crtpy's own code: run ``fn`` in the thread that completes the future."""
        if not self._add_callback(fn):
            try:
                fn(self)
            except Exception:  # noqa: BLE001 - as concurrent.futures does for callbacks
                _log.exception("exception calling callback for %r", self)

    def try_set_result(self, result: Any) -> bool:
        """Set the result unless the future is already done (e.g. cancelled)."""
        try:
            self.set_result(result)
            return True
        except concurrent.futures.InvalidStateError:
            return False

    def try_set_exception(self, exc: BaseException) -> bool:
        try:
            self.set_exception(exc)
            return True
        except concurrent.futures.InvalidStateError:
            return False


def completed(result: Any = None) -> CrtFuture:
    fut = CrtFuture()
    fut.set_result(result)
    return fut


def failed(exc: BaseException) -> CrtFuture:
    fut = CrtFuture()
    fut.set_exception(exc)
    return fut


def run_coroutine(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any],
                  future: CrtFuture | None = None) -> CrtFuture:
    """Schedule ``coro`` on ``loop`` (from any thread) and return a CrtFuture for it.
    Cancelling the returned future cancels the task."""
    fut = future if future is not None else CrtFuture()

    def start() -> None:
        if fut.cancelled():
            coro.close()
            return
        task = loop.create_task(coro)

        def task_done(t: asyncio.Task[Any]) -> None:
            if t.cancelled():
                fut.cancel()
            else:
                exc = t.exception()
                if exc is not None:
                    fut.try_set_exception(exc)
                else:
                    fut.try_set_result(t.result())

        task.add_done_callback(task_done)

        def future_done(f: concurrent.futures.Future[Any]) -> None:
            if f.cancelled() and not task.done():
                loop.call_soon_threadsafe(task.cancel)

        fut.add_done_callback_inline(future_done)

    if _running_loop() is loop:
        start()
    else:
        loop.call_soon_threadsafe(start)
    return fut


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
