"""crtpy.aio._bridge: the delivery of crtpy futures and callbacks onto the caller's loop."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest
from helpers.aio import timeout

from crtpy._runtime.futures import CrtFuture
from crtpy.aio._bridge import AsyncStream, Hub, LoopFuture, post, wait_future

T = 10.0


def test_wait_future_result_exception_and_cancellation():
    async def main() -> None:
        loop_thread = threading.get_ident()
        for make in (CrtFuture, concurrent.futures.Future):
            f = make()
            threading.Timer(0.01, f.set_result, (5,)).start()
            assert await asyncio.wait_for(wait_future(f), T) == 5
            f = make()
            threading.Timer(0.01, f.set_exception, (KeyError("k"),)).start()
            with pytest.raises(KeyError):
                await asyncio.wait_for(wait_future(f), T)
            # already done
            f = make()
            f.set_result("done")
            assert await wait_future(f) == "done"
            # the awaiting task is cancelled: the source future is cancelled, on_cancel runs
            f = make()
            seen: list[int] = []
            task = asyncio.create_task(wait_future(f, on_cancel=lambda seen=seen: seen.append(threading.get_ident())))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert f.cancelled() and seen == [loop_thread]
            # the source is cancelled elsewhere: the await is cancelled
            f = make()
            task = asyncio.create_task(wait_future(f))
            await asyncio.sleep(0)
            f.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, T)

    asyncio.run(main())


def test_post_to_a_closed_loop_is_dropped_quietly():
    loop = asyncio.new_event_loop()
    loop.close()
    assert post(loop, lambda: None) is False
    lf: LoopFuture[int] = LoopFuture(asyncio.new_event_loop())
    lf.loop.close()
    lf.set_result(1)  # nothing raised
    assert not lf.future.done()


def test_stream_policies_end_error_and_threads():
    async def main() -> None:
        with pytest.raises(ValueError):
            AsyncStream(0)
        s: AsyncStream[int] = AsyncStream(3)
        for i in range(5):
            s.push(i)
        assert s.dropped == 2 and len(s) == 3
        s.end(RuntimeError("boom"))
        s.push(99)  # ignored after the end
        assert [await s.get() for _ in range(3)] == [2, 3, 4]
        with pytest.raises(RuntimeError, match="boom"):
            await s.get()
        with pytest.raises(StopAsyncIteration):
            await s.get()
        # from another thread, in order, with a consumer callback on the loop
        consumed: list[int] = []
        s2: AsyncStream[int] = AsyncStream(10_000, on_consume=consumed.append)

        def produce() -> None:
            for i in range(1000):
                s2.push_threadsafe(i)
            s2.end_threadsafe()

        threading.Thread(target=produce).start()
        async with timeout(T):
            got = [x async for x in s2]
        assert got == list(range(1000)) == consumed
        # a hub fans out, and closing a stream unsubscribes it
        hub: Hub[str] = Hub()
        a = hub.subscribe(10, "drop_newest")
        b = hub.subscribe(10, "drop_oldest")
        hub.publish("x")
        async with timeout(T):
            assert await a.get() == "x" and await b.get() == "x"
        await a.aclose()
        assert len(hub) == 1 and a.closed
        with pytest.raises(StopAsyncIteration):
            await a.get()
        hub.end_all()
        async with timeout(T):
            assert [x async for x in b] == []

    asyncio.run(main())
