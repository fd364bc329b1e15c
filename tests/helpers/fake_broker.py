"""A scriptable fake MQTT broker on loopback, for what a real broker never does
(malformed packets, protocol violations, undefined topic aliases, silence).

``FakeBroker(handler)`` listens on 127.0.0.1 (its own thread and asyncio loop).  For
each accepted connection it runs ``await handler(conn)``; :class:`Conn` reads decoded
packets (``await conn.read()``) with the project's codec and writes raw bytes or
packets.  Everything a handler records goes in ``broker.log`` (thread-safe list).
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from crtpy._mqtt import codec as c

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Conn", "FakeBroker", "accept"]


class Conn:
    def __init__(self, broker: FakeBroker, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, index: int) -> None:
        self.broker = broker
        self.reader = reader
        self.writer = writer
        self.index = index
        self.decoder = c.Decoder(5)
        self.pending: list[c.Packet] = []

    async def read(self, timeout: float = 10.0) -> c.Packet | None:
        """The next packet from the client, or None when it closed the connection."""
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                return None
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    async def read_until_closed(self, timeout: float = 10.0) -> list[c.Packet]:
        out = []
        while True:
            p = await self.read(timeout)
            if p is None:
                return out
            out.append(p)

    def send(self, data: bytes | c.Packet) -> None:
        if isinstance(data, c.Packet):
            data = c.encode(data, 5)
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


async def accept(conn: Conn, connack: c.Connack | None = None) -> c.Connect:
    """Read the CONNECT and answer with ``connack`` (success by default)."""
    p = await conn.read()
    assert isinstance(p, c.Connect), p
    conn.send(connack if connack is not None else c.Connack())
    return p


class _Log(list):
    """A list whose appends (from the broker thread) can be waited for."""

    def __init__(self) -> None:
        super().__init__()
        self.cond = threading.Condition()

    def append(self, item: Any) -> None:
        with self.cond:
            super().append(item)
            self.cond.notify_all()

    def wait(self, count: int = 1, timeout: float = 10.0) -> _Log:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self) >= count, timeout):
                raise AssertionError(f"fake broker logged {len(self)} of {count} items in {timeout}s")
        return self


class FakeBroker:
    def __init__(self, handler: Callable[[Conn], Awaitable[Any]]) -> None:
        self.handler = handler
        self.host = "127.0.0.1"
        self.port = 0
        self.log = _Log()
        self.errors: list[BaseException] = []
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-mqtt-broker", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._on_client, self.host, 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = Conn(self, reader, writer, self.connections)
        try:
            await self.handler(conn)
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - reported to the test
            self.errors.append(e)
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def start(self) -> FakeBroker:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.loop.call_soon_threadsafe(self._server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
