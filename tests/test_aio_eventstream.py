"""crtpy.aio.eventstream against the event-stream RPC test server on 127.0.0.1."""
from __future__ import annotations

import asyncio

import pytest
from conftest import free_port
from helpers.aio import Ticker, on_each_event_loop, timeout
from helpers.eventstream_server import RpcServer

from crtpy.aio.eventstream import AioClientConnection, Message, connect
from crtpy.eventstream import Header
from crtpy.eventstream.rpc import MessageFlag, MessageType
from crtpy.exceptions import AwsCrtError

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0


@pytest.fixture
def server():
    with RpcServer() as srv:
        yield srv


async def open_connection(port: int) -> AioClientConnection:
    conn = await asyncio.wait_for(connect(host_name="127.0.0.1", port=port), T)
    await conn.send_protocol_message(message_type=MessageType.CONNECT,
                                     headers=[Header.from_string(":version", "0.1.0")])
    async with timeout(T):
        ack = await conn.protocol_messages.get()
    assert ack.message_type == MessageType.CONNECT_ACK
    assert ack.flags & MessageFlag.CONNECTION_ACCEPTED
    return conn


async def collect(stream: object) -> list[Message]:
    async with timeout(T):
        return [m async for m in stream]  # type: ignore[attr-defined]


def test_connect_ping_streams_and_close(server):
    async def main() -> None:
        async with await open_connection(server.port) as conn:
            await conn.send_protocol_message(message_type=MessageType.PING, payload=b"p")
            async with timeout(T):
                pong = await conn.protocol_messages.get()
            assert (pong.message_type, pong.payload) == (MessageType.PING_RESPONSE, b"p")
            # a server-ended stream: async for runs until it closes
            counting = conn.new_stream()
            await counting.activate(operation="count", message_type=MessageType.APPLICATION_MESSAGE,
                                    payload=b"5")
            got = await collect(counting)
            assert len(got) == 5 and got[-1].terminates_stream and not got[0].terminates_stream
            assert counting.is_closed()
            # concurrent echo streams, both ways
            async def echo(i: int) -> list[bytes]:
                s = conn.new_stream()
                await s.activate(operation="echo", message_type=MessageType.APPLICATION_MESSAGE,
                                 payload=b"%d:0" % i)
                for j in range(1, 10):
                    await s.send_message(message_type=MessageType.APPLICATION_MESSAGE, payload=b"%d:%d" % (i, j),
                                         flags=MessageFlag.TERMINATE_STREAM if j == 9 else MessageFlag.NONE)
                await s.wait_closed()
                return [m.payload async for m in s]

            results = await asyncio.gather(*(echo(i) for i in range(5)))
            for i, payloads in enumerate(results):
                # echoes arriving before our TERMINATE_STREAM was flushed, in order
                assert payloads == [b"%d:%d" % (i, j) for j in range(len(payloads))]
            # application error
            err = conn.new_stream()
            await err.activate(operation="error", message_type=MessageType.APPLICATION_MESSAGE)
            msgs = await collect(err)
            assert msgs[-1].message_type == MessageType.APPLICATION_ERROR
        assert not conn.is_open()
        assert await conn.wait_closed() is None
        assert [m async for m in conn.protocol_messages] == []
        with pytest.raises(AwsCrtError):
            await conn.send_protocol_message(message_type=MessageType.PING)

    asyncio.run(main())


def test_connection_failures():
    async def main() -> None:
        with pytest.raises(AwsCrtError):
            await asyncio.wait_for(connect(host_name="127.0.0.1", port=free_port()), T)

    asyncio.run(main())


def test_cancellation(server):
    async def main() -> None:
        # a cancelled connect closes the connection if it is made after all
        task = asyncio.create_task(connect(host_name="127.0.0.1", port=server.port))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with await open_connection(server.port) as conn:
            # a reader cancelled inside `async with stream` terminates the RPC stream
            stream = conn.new_stream()
            await stream.activate(operation="silent", message_type=MessageType.APPLICATION_MESSAGE)
            entered = asyncio.Event()

            async def reader() -> None:
                async with stream:
                    entered.set()
                    async for _ in stream:
                        pass

            rtask = asyncio.create_task(reader())
            await entered.wait()
            rtask.cancel()
            with pytest.raises(asyncio.CancelledError):
                await rtask
            await asyncio.wait_for(stream.wait_closed(), T)
            assert stream.is_closed()
            # a cancelled send leaves nothing waiting; the connection still works
            s2 = conn.new_stream()
            send = asyncio.create_task(s2.activate(operation="echo", message_type=MessageType.APPLICATION_MESSAGE,
                                                   payload=b"x"))
            send.cancel()
            with pytest.raises(asyncio.CancelledError):
                await send
            await conn.send_protocol_message(message_type=MessageType.PING, payload=b"q")
            async with timeout(T):
                while (m := await conn.protocol_messages.get()).message_type != MessageType.PING_RESPONSE:
                    pass
            assert m.payload == b"q"
        # the server saw the terminate of the silent stream
        # (the abandoned connect may reach the server before or after the used one)
        used = [c for c in server.connections if any(m.headers.get("operation") == "silent" for m in c.received)]
        assert len(used) == 1
        assert used[0].wait_for(lambda m: m.stream_id == 1 and m.flags & MessageFlag.TERMINATE_STREAM)
        # the abandoned connection (if it got through) was closed too
        assert all(c.closed.wait(T) for c in server.connections)

    asyncio.run(main())


async def _ticking(port: int) -> int:
    async with Ticker() as t, await open_connection(port) as conn:
        start = t.ticks
        s = conn.new_stream()
        await s.activate(operation="count", message_type=MessageType.APPLICATION_MESSAGE, payload=b"200")
        assert len(await collect(s)) == 200
        for _ in range(20):
            await conn.send_protocol_message(message_type=MessageType.PING)
            await conn.protocol_messages.get()
        assert t.ticks > start
    return t.ticks


def test_running_loop_keeps_ticking_and_uvloop(server):
    assert all(ticks > 1 for ticks in on_each_event_loop(lambda: _ticking(server.port)))
