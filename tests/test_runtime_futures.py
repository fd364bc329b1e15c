"""CrtFuture: a concurrent.futures.Future that makes its Condition only when a thread
must wait.  These tests pin the behaviour to concurrent.futures' and race the fast
(no Condition) paths against waiters, callbacks and cancellation."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from crtpy._auth.done_future import DoneFuture
from crtpy._runtime.futures import CrtFuture

ROUNDS = 300
# A missed wake-up would not hang forever: concurrent.futures re-checks the state when a
# wait times out.  So the races wait up to WAIT seconds and fail if a wait took MISSED.
WAIT, MISSED = 30.0, 15.0


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every microsecond, so that the races below really interleave."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _both() -> list[concurrent.futures.Future[object]]:
    return [concurrent.futures.Future(), CrtFuture()]


def _outcome(fut: concurrent.futures.Future[object]) -> tuple[object, ...]:
    state = (fut.done(), fut.cancelled(), fut.running())
    if not fut.done():
        return state
    if fut.cancelled():
        with pytest.raises(concurrent.futures.CancelledError):
            fut.result(0)
        return state + ("cancelled",)
    exc = fut.exception(0)
    return state + (type(exc).__name__ if exc else fut.result(0),)


@pytest.mark.parametrize("steps", [
    ["result"], ["exception"], ["cancel"], ["cancel", "cancel"], ["result", "cancel"],
    ["running"], ["running", "cancel"], ["running", "result"], ["cancel", "running"],
])
def test_same_states_as_concurrent_futures(steps: list[str]) -> None:
    outcomes = []
    for fut in _both():
        log: list[object] = []
        for step in steps:
            if step == "result":
                fut.set_result(42)
            elif step == "exception":
                fut.set_exception(KeyError("k"))
            elif step == "cancel":
                log.append(fut.cancel())
            elif step == "running":
                log.append(fut.set_running_or_notify_cancel())
        outcomes.append((log, _outcome(fut)))
    assert outcomes[0] == outcomes[1]


def test_second_completion_is_refused_and_repr_does_not_deadlock() -> None:
    fut = CrtFuture()
    fut.set_result(1)
    with pytest.raises(concurrent.futures.InvalidStateError):
        fut.set_result(2)
    with pytest.raises(concurrent.futures.InvalidStateError):
        fut.set_exception(ValueError())
    assert fut.result() == 1
    assert "finished" in repr(fut)
    assert fut.try_set_result(3) is False
    cancelled = CrtFuture()
    assert cancelled.cancel()
    assert cancelled.try_set_exception(ValueError()) is False


def test_exception_raised_by_result_each_time() -> None:
    fut = CrtFuture()
    fut.set_exception(ValueError("boom"))
    for _ in range(2):
        with pytest.raises(ValueError, match="boom"):
            fut.result()
    assert isinstance(fut.exception(), ValueError)


def test_waiting_times_out_while_pending() -> None:
    fut = CrtFuture()
    with pytest.raises(concurrent.futures.TimeoutError):
        fut.result(0.01)
    with pytest.raises(concurrent.futures.TimeoutError):
        fut.exception(0.01)
    fut.set_result("late")
    assert fut.result(0) == "late"


def test_waiter_never_misses_a_completion_from_another_thread(fast_switching: None) -> None:
    # the waiter makes the Condition while the completer may be on its no-Condition path
    for i in range(ROUNDS):
        fut = CrtFuture()
        start = threading.Barrier(2)

        def complete(f: CrtFuture = fut, n: int = i, start: threading.Barrier = start) -> None:
            start.wait()
            if n % 2:
                f.set_result(n)
            else:
                f.set_exception(KeyError(n))

        t = threading.Thread(target=complete)
        t.start()
        start.wait()
        t0 = time.monotonic()
        if i % 2:
            assert fut.result(timeout=WAIT) == i
        else:
            assert isinstance(fut.exception(timeout=WAIT), KeyError)
        assert time.monotonic() - t0 < MISSED, "the waiter missed its wake-up"
        t.join(10)


def test_completion_wakes_a_thread_already_blocked() -> None:
    for i in range(20):
        fut = CrtFuture()
        got: list[object] = []

        def wait(f: CrtFuture = fut, got: list[object] = got) -> None:
            try:
                got.append(f.result(WAIT))
            except concurrent.futures.CancelledError:
                got.append("cancelled")

        t = threading.Thread(target=wait)
        t.start()
        # complete only once the waiter really sleeps on the Condition
        deadline = time.monotonic() + 10
        while not (fut._cond is not None and fut._cond._waiters):  # type: ignore[attr-defined]
            assert time.monotonic() < deadline
            time.sleep(0.001)
        t0 = time.monotonic()
        if i % 2:
            fut.set_result(i)
        else:
            fut.cancel()
        t.join(WAIT)
        assert time.monotonic() - t0 < MISSED
        assert got == ([i] if i % 2 else ["cancelled"])


def test_wait_and_as_completed_see_completions_from_other_threads(fast_switching: None) -> None:
    for _ in range(50):
        futs = [CrtFuture() for _ in range(8)]
        go = threading.Event()

        def complete(fs: list[CrtFuture] = futs, go: threading.Event = go) -> None:
            go.wait(10)
            for n, f in enumerate(fs):
                f.set_result(n)

        t = threading.Thread(target=complete)
        t.start()
        go.set()
        t0 = time.monotonic()
        done, not_done = concurrent.futures.wait(futs, timeout=WAIT)
        assert time.monotonic() - t0 < MISSED
        assert len(done) == 8 and not not_done
        assert sorted(f.result() for f in concurrent.futures.as_completed(futs, timeout=10)) == list(range(8))
        t.join(10)


def test_callbacks_are_never_lost_while_completing(fast_switching: None) -> None:
    for i in range(ROUNDS):
        fut = CrtFuture()
        inline_ran = threading.Event()
        dispatched_ran = threading.Event()
        start = threading.Barrier(2)

        def complete(f: CrtFuture = fut, start: threading.Barrier = start) -> None:
            start.wait()
            f.set_result(None)

        t = threading.Thread(target=complete)
        t.start()
        start.wait()
        if i % 3 == 0:
            fut.result(10)  # make the Condition first, sometimes
        fut.add_done_callback_inline(lambda f, e=inline_ran: e.set())
        fut.add_done_callback(lambda f, e=dispatched_ran: e.set())
        assert inline_ran.wait(10) and dispatched_ran.wait(10)
        t.join(10)


def test_callback_threads() -> None:
    fut = CrtFuture()
    seen: dict[str, str] = {}
    done = threading.Event()
    fut.add_done_callback_inline(lambda f: seen.__setitem__("inline", threading.current_thread().name))

    def dispatched(f: concurrent.futures.Future[object]) -> None:
        seen["dispatched"] = threading.current_thread().name
        done.set()

    fut.add_done_callback(dispatched)
    t = threading.Thread(target=fut.set_result, args=(1,), name="completer")
    t.start()
    t.join(10)
    assert done.wait(10)
    assert seen["inline"] == "completer"
    assert seen["dispatched"] not in ("completer", threading.current_thread().name)


def test_failing_callbacks_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    fut = CrtFuture()

    def bad(f: concurrent.futures.Future[object]) -> None:
        raise RuntimeError("callback failed")

    fut.add_done_callback_inline(bad)
    fut.set_result(1)  # must not raise
    fut.add_done_callback_inline(bad)  # already done: runs now, still must not raise
    assert fut.result() == 1
    assert sum("callback failed" in (r.exc_text or str(r.exc_info)) for r in caplog.records) == 2


def test_cancel_races_completion_with_exactly_one_winner(fast_switching: None) -> None:
    for i in range(ROUNDS):
        fut = CrtFuture()
        called: list[int] = []
        fut.add_done_callback_inline(lambda f, c=called: c.append(1))
        if i % 4 == 0:
            concurrent.futures.wait([fut], timeout=0)  # has a Condition from here on
        start = threading.Barrier(2)
        won_set: list[bool] = []

        def complete(f: CrtFuture = fut, start: threading.Barrier = start, won_set: list[bool] = won_set) -> None:
            start.wait()
            won_set.append(f.try_set_result("value"))

        t = threading.Thread(target=complete)
        t.start()
        start.wait()
        won_cancel = fut.cancel()
        t.join(10)
        assert won_set[0] != won_cancel
        assert called == [1]
        if won_cancel:
            with pytest.raises(concurrent.futures.CancelledError):
                fut.result(1)
        else:
            assert fut.result(1) == "value"


def test_cancel_wakes_a_waiting_thread() -> None:
    fut = CrtFuture()
    outcome: list[str] = []
    waiting = threading.Event()

    def wait() -> None:
        waiting.set()
        try:
            fut.result(10)
        except concurrent.futures.CancelledError:
            outcome.append("cancelled")

    t = threading.Thread(target=wait)
    t.start()
    waiting.wait(10)
    assert fut.cancel()
    t.join(10)
    assert outcome == ["cancelled"]


def test_asyncio_can_await_it() -> None:
    async def main() -> object:
        fut = CrtFuture()
        threading.Timer(0.01, fut.set_result, ("from thread",)).start()
        return await asyncio.wait_for(asyncio.wrap_future(fut), 10)

    assert asyncio.run(main()) == "from thread"


def test_done_future_is_final() -> None:
    ok = DoneFuture("r")
    assert ok.done() and ok.result() == "r" and not ok.cancel()
    with pytest.raises(concurrent.futures.InvalidStateError):
        ok.set_result("other")
    assert concurrent.futures.wait([ok], timeout=1).done == {ok}
    bad = DoneFuture(exception=ValueError("x"))
    with pytest.raises(ValueError):
        bad.result()


def test_finalizer_completing_a_future_while_a_condition_is_made() -> None:
    # The collector may run inside Condition() and call a finalizer that completes
    # another future: that must not wait for the lock its own thread holds.  In a child
    # process, since a deadlock there would stop every future of this one.
    script = textwrap.dedent("""
        import gc
        from crtpy._runtime.futures import CrtFuture
        for k in range(1, 12):
            other, f = CrtFuture(), CrtFuture()
            class Finalizes:
                def __del__(self, other=other):
                    other.set_exception(RuntimeError("owner collected"))
            gc.collect()
            gc.disable()
            a = Finalizes(); a.cycle = a; del a
            gc.set_threshold(gc.get_count()[0] + k)
            gc.enable()
            f._condition
            gc.collect()
            assert other.done(), k
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    res = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
