# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""crtpy.aio.mqtt5 against a private Mosquitto broker on loopback."""
from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from conftest import free_port
from helpers.aio import Ticker, take, timeout
from helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401 - fixtures

from crtpy import mqtt5
from crtpy.aio.mqtt5 import AioClient
from crtpy.exceptions import AwsCrtError

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0


def topic() -> str:
    return f"test/aio/{uuid.uuid4().hex}"


def options(host: str, port: int, **kw: Any) -> mqtt5.ClientOptions:
    return mqtt5.ClientOptions(host, port, min_reconnect_delay_ms=100, max_reconnect_delay_ms=500, **kw)


def test_round_trip_messages_and_lifecycle(mosquitto):
    t = topic()
    user_events: list[str] = []

    async def main() -> None:
        client = AioClient(options(mosquitto.host, mosquitto.port,
                                   on_lifecycle_event_connection_success_fn=lambda d: user_events.append("ok")))
        events = client.lifecycle_events()
        async with client:
            assert client.is_connected
            assert await client.wait_connected() is None
            messages = client.messages()
            suback = await client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, mqtt5.QoS.AT_LEAST_ONCE)]))
            assert suback.reason_codes == [mqtt5.SubackReasonCode.GRANTED_QOS_1]
            results = await asyncio.gather(*(client.publish(mqtt5.PublishPacket(
                topic=t, payload=b"m%d" % i, qos=mqtt5.QoS.AT_LEAST_ONCE)) for i in range(50)))
            assert all(isinstance(r, mqtt5.PublishCompletionData) and r.puback is not None for r in results)
            got = await take(messages, 50)
            assert sorted(p.payload for p in got) == sorted(b"m%d" % i for i in range(50))
            assert all(p.topic == t for p in got)
            unsuback = await client.unsubscribe(mqtt5.UnsubscribePacket([t]))
            assert unsuback.reason_codes == [mqtt5.UnsubackReasonCode.SUCCESS]
        # after the context: stopped, every stream ended
        kinds = [type(e).__name__ async for e in events]
        assert kinds[:2] == ["LifecycleAttemptingConnectData", "LifecycleConnectSuccessData"]
        assert kinds[-1] == "LifecycleStoppedData"
        assert [m async for m in messages] == []
        assert not client.is_connected

    asyncio.run(main())
    assert user_events == ["ok"]  # the user's own callback still runs


def test_overflow_policies_and_stream_close(mosquitto):
    t = topic()

    async def main() -> None:
        async with AioClient(options(mosquitto.host, mosquitto.port)) as client:
            oldest = client.messages(maxsize=3)
            newest = client.messages(maxsize=3, overflow="drop_newest")
            everything = client.messages()
            await client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, mqtt5.QoS.AT_LEAST_ONCE)]))
            for i in range(10):
                await client.publish(mqtt5.PublishPacket(topic=t, payload=b"%d" % i, qos=mqtt5.QoS.AT_LEAST_ONCE))
            assert [p.payload for p in await take(everything, 10)] == [b"%d" % i for i in range(10)]
            # the small streams were fed before `everything` each time
            assert oldest.dropped == 7 and newest.dropped == 7
            assert [p.payload for p in await take(oldest, 3)] == [b"7", b"8", b"9"]
            assert [p.payload for p in await take(newest, 3)] == [b"0", b"1", b"2"]
            hub = client._state.messages
            assert len(hub) == 3
            await oldest.aclose()
            async with newest:
                pass
            assert len(hub) == 1
            with pytest.raises(ValueError):
                client.messages(maxsize=0)
            with pytest.raises(ValueError):
                client.messages(overflow="block")  # type: ignore[arg-type]

    asyncio.run(main())


def test_cancellation(mosquitto):
    t = topic()

    async def main() -> None:
        client = AioClient(options(mosquitto.host, mosquitto.port))
        # Not started: the publish waits in the offline queue, so it is still pending.
        futures: list[Any] = []
        real = client.client.publish

        def spy(packet: mqtt5.PublishPacket) -> Any:
            f = real(packet)
            futures.append(f)
            return f

        client.client.publish = spy  # type: ignore[method-assign]
        task = asyncio.create_task(client.publish(mqtt5.PublishPacket(topic=t, payload=b"x", qos=1)))
        while not futures:
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert futures[0].cancelled()  # the operation's future does not dangle

        # a reader cancelled inside `async with stream` unregisters its stream
        hub = client._state.messages
        entered = asyncio.Event()

        async def reader() -> None:
            async with client.messages() as stream:
                entered.set()
                async for _ in stream:
                    pass

        rtask = asyncio.create_task(reader())
        await entered.wait()
        assert len(hub) == 1
        rtask.cancel()
        with pytest.raises(asyncio.CancelledError):
            await rtask
        assert len(hub) == 0

        # a cancelled start() wait leaves the client started; stop() still works
        stask = asyncio.create_task(client.start())
        await asyncio.sleep(0)
        stask.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stask
        await asyncio.wait_for(client.wait_connected(), T)
        # later operations work normally
        await client.publish(mqtt5.PublishPacket(topic=t, payload=b"y", qos=1))
        stopped = await client.stop()
        assert isinstance(stopped, mqtt5.LifecycleStoppedData)
        assert await client.stop() is None  # not running any more

    asyncio.run(main())


def test_first_connection_failure_raises():
    port = free_port()  # nothing listens there

    async def main() -> None:
        client = AioClient(options("127.0.0.1", port))
        with pytest.raises(AwsCrtError):
            async with timeout(T):
                await client.start()
        await asyncio.wait_for(client.stop(), T)
        with pytest.raises(AwsCrtError):
            async with timeout(T), AioClient(options("127.0.0.1", port)):
                pass

    asyncio.run(main())


async def _ticking_round_trip(host: str, port: int, n: int) -> int:
    t = topic()
    async with Ticker() as ticker, AioClient(options(host, port)) as client:
        messages = client.messages(maxsize=n)
        await client.subscribe(mqtt5.SubscribePacket([mqtt5.Subscription(t, mqtt5.QoS.AT_LEAST_ONCE)]))
        seen_ticks = []
        for i in range(n):
            await client.publish(mqtt5.PublishPacket(topic=t, payload=b"%d" % i, qos=1))
            seen_ticks.append(ticker.ticks)
        got = await take(messages, n)
        assert [p.payload for p in got] == [b"%d" % i for i in range(n)]
    # the ticker kept running while we waited on the broker
    assert ticker.ticks > 1 and seen_ticks[-1] > seen_ticks[0]
    return ticker.ticks


def test_other_tasks_progress_in_a_running_application_loop(mosquitto):
    loop = asyncio.new_event_loop()
    try:
        # the loop is already running application work when the client is made
        async def app() -> int:
            background = asyncio.create_task(asyncio.sleep(3600))
            try:
                return await _ticking_round_trip(mosquitto.host, mosquitto.port, 100)
            finally:
                background.cancel()

        assert loop.run_until_complete(app()) > 0
    finally:
        loop.close()


def test_under_uvloop(mosquitto):
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(_ticking_round_trip(mosquitto.host, mosquitto.port, 50)) > 0
    finally:
        loop.close()
