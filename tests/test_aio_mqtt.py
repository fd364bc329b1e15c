# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""crtpy.aio.mqtt (MQTT 3.1.1) against a private Mosquitto broker on loopback."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from conftest import free_port
from helpers.aio import Ticker, on_each_event_loop, take
from helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401 - fixtures

from crtpy import mqtt
from crtpy.aio.mqtt import AioConnection
from crtpy.exceptions import AwsCrtError

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0
Q1 = mqtt.QoS.AT_LEAST_ONCE


def topic() -> str:
    return f"test/aio311/{uuid.uuid4().hex}"


def make(port: int, **kw: Any) -> AioConnection:
    return AioConnection(mqtt.Connection(mqtt.Client(), "127.0.0.1", port, uuid.uuid4().hex[:16],
                                         reconnect_min_timeout_secs=1, reconnect_max_timeout_secs=2, **kw))


def test_round_trip_streams_and_events(mosquitto):
    t = topic()
    user_calls: list[str] = []

    async def main() -> None:
        conn = make(mosquitto.port, on_connection_success=lambda **kw: user_calls.append("success"))
        events = conn.lifecycle_events()
        async with conn:
            messages = conn.messages()
            small = conn.messages(maxsize=2)
            sub = await conn.subscribe(t, Q1)
            assert sub["qos"] == Q1 and sub["topic"] == t
            results = await asyncio.gather(*(conn.publish(t, b"%d" % i, Q1) for i in range(30)))
            assert all("packet_id" in r for r in results)
            got = await take(messages, 30)
            assert sorted(m.payload for m in got) == sorted(b"%d" % i for i in range(30))
            assert all(m.topic == t and m.qos == Q1 for m in got)
            # each stream is fed by its own hand-off to this loop: let the bounded one catch up

            async def small_caught_up() -> None:
                while len(small) + small.dropped < 30:
                    await asyncio.sleep(0)

            await asyncio.wait_for(small_caught_up(), T)
            assert len(small) == 2 and small.dropped == 28
            await conn.unsubscribe(t)
        kinds = [e.kind async for e in events]
        assert kinds[0] == "success" and kinds[-1] == "closed"
        assert [m async for m in messages] == []

    asyncio.run(main())
    assert user_calls == ["success"]


def test_connect_failure_and_cancellation(mosquitto):
    t = topic()

    async def main() -> None:
        with pytest.raises(AwsCrtError):
            await asyncio.wait_for(make(free_port()).connect(), T)
        conn = make(mosquitto.port)
        # offline: the publish waits in the queue; a cancelled await cancels its future
        futures: list[Any] = []
        real = conn.connection.publish

        def spy(*args: Any) -> Any:
            f, pid = real(*args)
            futures.append(f)
            return f, pid

        conn.connection.publish = spy  # type: ignore[method-assign]
        task = asyncio.create_task(conn.publish(t, b"x", Q1))
        while not futures:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert futures[0].cancelled()
        # reader cancelled inside `async with` unregisters its stream
        entered = asyncio.Event()

        async def reader() -> None:
            async with conn.messages() as s:
                entered.set()
                async for _ in s:
                    pass

        r = asyncio.create_task(reader())
        await entered.wait()
        assert len(conn._messages) == 1
        r.cancel()
        with pytest.raises(asyncio.CancelledError):
            await r
        assert len(conn._messages) == 0
        async with conn:
            await conn.publish(t, b"y", Q1)

    asyncio.run(main())


async def _ticking(port: int) -> int:
    t = topic()
    async with Ticker() as ticker, make(port) as conn:
        messages = conn.messages()
        await conn.subscribe(t, Q1)
        start = ticker.ticks
        for i in range(50):
            await conn.publish(t, b"%d" % i, Q1)
        assert [m.payload for m in await take(messages, 50)] == [b"%d" % i for i in range(50)]
        assert ticker.ticks > start
    return ticker.ticks


def test_running_loop_keeps_ticking_and_uvloop(mosquitto):
    assert all(ticks > 1 for ticks in on_each_event_loop(lambda: _ticking(mosquitto.port)))
