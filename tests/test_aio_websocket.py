"""crtpy.aio.websocket against the ``websockets`` test server on 127.0.0.1."""
from __future__ import annotations

import asyncio

import pytest
from conftest import free_port
from helpers.aio import Ticker, on_each_event_loop, timeout
from helpers.ws_server import WsServer

from crtpy.aio.websocket import AioWebSocket, Frame, Opcode, connect
from crtpy.exceptions import AwsCrtError

pytestmark = pytest.mark.usefixtures("leak_check")

T = 10.0


@pytest.fixture
def server():
    with WsServer() as srv:
        yield srv


async def next_data(ws: AioWebSocket) -> Frame:
    async with timeout(T):
        async for frame in ws:
            if frame.is_data_frame():
                return frame
    raise AssertionError("connection ended")


def test_echo_fragments_and_server_close(server):
    async def main() -> None:
        ws = await asyncio.wait_for(connect(host="127.0.0.1", port=server.port), T)
        assert ws.handshake_response_status == 101
        await ws.send("héllo")
        f = await next_data(ws)
        assert (f.opcode, f.text, f.fin) == (Opcode.TEXT, "héllo", True)
        await ws.send(b"\x00\xff")
        assert (await next_data(ws)).payload == b"\x00\xff"
        await ws.send("fragments:3:abcdefghi")
        parts = [await next_data(ws)]
        while not parts[-1].fin:
            parts.append(await next_data(ws))
        assert len(parts) >= 3  # websockets may end with an empty final fragment
        assert parts[0].opcode == Opcode.TEXT
        assert all(p.opcode == Opcode.CONTINUATION and not p.fin for p in parts[1:-1])
        assert b"".join(p.payload for p in parts) == b"abcdefghi"
        await ws.send("close:4001:bye")
        rest = [f async for f in ws]  # ends when the connection does
        assert rest[-1].opcode == Opcode.CLOSE and int.from_bytes(rest[-1].payload[:2], "big") == 4001
        reason = await ws.wait_closed()
        assert isinstance(reason, AwsCrtError)
        assert ws.closed
        with pytest.raises(AwsCrtError):
            await ws.send("too late")

    asyncio.run(main())
    assert server.closed.wait(T) and server.close_codes == [4001]


def test_context_manager_close_and_connect_failure(server):
    async def main() -> None:
        async with await connect(host="127.0.0.1", port=server.port) as ws:
            await ws.ping(b"p")
            async with timeout(T):
                pong = await ws.receive()
            assert (pong.opcode, pong.payload) == (Opcode.PONG, b"p")
        assert ws.closed and await ws.wait_closed() is None
        with pytest.raises(StopAsyncIteration):
            await ws.receive()
        with pytest.raises(AwsCrtError):
            await asyncio.wait_for(connect(host="127.0.0.1", port=free_port()), T)
        with pytest.raises(ValueError):
            await connect(host="127.0.0.1", port=server.port, read_window=0)

    asyncio.run(main())
    assert server.closed.wait(T) and server.close_codes == [1005]


def test_read_window_backpressure():
    async def main(port: int) -> None:
        ws = await connect(host="127.0.0.1", port=port, read_window=64 * 1024)
        async with ws:
            for _ in range(50):
                await ws.send("send:10000")
            # nobody reads: the window stops the socket after ~64 KiB of payload
            async with timeout(T):
                while len(ws.frames) < 6:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # only lets more arrive; the bound must still hold
            assert len(ws.frames) <= 7
            frames = [await next_data(ws) for _ in range(50)]
            expected = bytes(range(256)) * 39 + bytes(10000 % 256)
            assert all(f.payload == expected for f in frames)
            # a frame larger than the whole window still arrives
            await ws.send("send:200000")
            assert len((await next_data(ws)).payload) == 200000

    with WsServer() as srv:
        asyncio.run(main(srv.port))


def test_cancellation(server):
    async def main() -> None:
        task = asyncio.create_task(connect(host="127.0.0.1", port=server.port))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # a reader task cancelled mid-wait leaves the connection usable
        ws = await connect(host="127.0.0.1", port=server.port)
        reader = asyncio.create_task(ws.receive())
        await asyncio.sleep(0)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        await ws.send("still here")
        assert (await next_data(ws)).text == "still here"
        await ws.close()

    asyncio.run(main())
    # the abandoned connection (if it got through) was closed too
    assert server.closed.wait(T)


async def _with_ticker(port: int) -> int:
    async with Ticker() as t, await connect(host="127.0.0.1", port=port) as ws:
        start = t.ticks
        for i in range(100):
            await ws.send(f"m{i}")
            assert (await next_data(ws)).text == f"m{i}"
        assert t.ticks > start
    return t.ticks


def test_running_loop_keeps_ticking_and_uvloop(server):
    assert all(ticks > 1 for ticks in on_each_event_loop(lambda: _with_ticker(server.port)))
