"""The HTTP/1.1 engine's wire exchanges (H1Connection.exchange), as the S3 client's
connections (crtpy._s3.conn) use them: bodies in slices, early answers, idle timeouts,
HEAD, reuse decisions.  Scripted servers on loopback."""
from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from helpers.http_servers import RawServer

from crtpy._s3.conn import ConnectionPool, ExchangeError

TIMEOUT = 10


def pool_for(port: int) -> ConnectionPool:
    return ConnectionPool("127.0.0.1", port, tls_options=None, bootstrap=None, socket_options=None)


def head(method: str = "GET", target: str = "/", extra: str = "") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode()


def read_request(c: socket.socket, first: bytes) -> int:
    """Read the body of the request whose head starts ``first`` (Content-Length
    framing); returns its length."""
    h, _, rest = first.partition(b"\r\n\r\n")
    length = 0
    for line in h.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    got = len(rest)
    buf = bytearray(1 << 20)
    while got < length:
        n = c.recv_into(buf)
        if not n:
            break
        got += n
    return got


def test_get_to_sink_then_reuse_then_error_body():
    big = bytes(range(256)) * 4096  # 1 MiB: read straight from the socket by the engine

    def script(c, first):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: \"x\"\r\n\r\n" % len(big) + big)
        data = b""
        while b"\r\n\r\n" not in data:
            data += c.recv(65536)
        c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")
        c.recv(65536)

    srv = RawServer(script)

    async def main():
        pool = pool_for(srv.port)
        conn = await pool.acquire()
        got: list[bytes] = []
        resp = await conn.exchange(head(), None, got.append)
        assert resp.status == 200 and resp.error_body is None
        assert b"".join(got) == big
        assert resp.header("etag") == '"x"'
        assert conn.reusable
        pool.release(conn)
        again = await pool.acquire()
        assert again is conn
        resp = await conn.exchange(head(), None, got.append)
        assert resp.status == 404 and resp.error_body == b"not found"
        pool.release(conn)
        pool.close()
        assert not conn.open

    try:
        asyncio.run(main())
    finally:
        srv.stop()


@pytest.mark.parametrize("status", [200, 403])
def test_early_answer_to_a_large_upload(status):
    # the server answers after the first bytes of the body: after a 2xx the rest is
    # still sent (and the connection stays reusable), after an error it is abandoned
    piece = bytearray(4 << 20)
    body = [piece] * 15 + [memoryview(bytearray(2 << 20))]  # more than socket buffers hold
    total = sum(len(b) for b in body)
    received = []
    drained = threading.Event()

    finished = threading.Event()

    def script(c, first):
        c.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nok" % status)
        if status != 200:
            finished.wait(TIMEOUT)  # reads nothing more: the body cannot all be sent
            return
        received.append(read_request(c, first))
        drained.set()
        finished.wait(TIMEOUT)  # keeps the connection open

    srv = RawServer(script)

    async def main():
        pool = pool_for(srv.port)
        conn = await pool.acquire()
        sent: list[int] = []
        resp = await conn.exchange(head("PUT", "/up", f"Content-Length: {total}\r\n"), body, None,
                                   on_sent=sent.append)
        assert resp.status == status
        if status == 200:
            assert sent[-1] == total
            # the transport may still be flushing: wait off the loop
            assert await asyncio.get_running_loop().run_in_executor(None, drained.wait, TIMEOUT)
            assert received == [total] and conn.reusable
        else:
            assert resp.error_body == b"ok" and not conn.reusable
        pool.release(conn)
        pool.close()

    try:
        asyncio.run(main())
    finally:
        finished.set()
        srv.stop()


def test_no_response_times_out_and_head_has_no_body():
    def script(c, first):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n")  # the HEAD
        while c.recv(65536):  # the GET is never answered
            pass

    srv = RawServer(script)

    async def main():
        pool = pool_for(srv.port)
        conn = await pool.acquire()
        resp = await conn.exchange(head("HEAD"), None, None, is_head=True)
        assert resp.status == 200 and resp.header("content-length") == "12345" and conn.reusable
        pool.release(conn)
        conn = await pool.acquire()
        with pytest.raises(ExchangeError) as ei:
            await conn.exchange(head(), None, None, idle_timeout=0.3)
        assert ei.value.crt_error.name == "AWS_IO_SOCKET_TIMEOUT"
        assert not conn.open
        pool.release(conn)
        pool.close()

    try:
        asyncio.run(main())
    finally:
        srv.stop()


def test_close_mid_body_and_sink_failure_are_exchange_errors():
    def script(c, first):
        if b"/fail" in first:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd")
            c.recv(65536)
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"z" * 300_000)

    srv = RawServer(script)

    async def main():
        pool = pool_for(srv.port)
        conn = await pool.acquire()
        got: list[bytes] = []
        with pytest.raises(ExchangeError) as ei:
            await conn.exchange(head(), None, got.append)
        assert ei.value.crt_error.name == "AWS_IO_SOCKET_CLOSED"
        assert b"".join(got) == b"z" * len(b"".join(got)) and 0 < len(b"".join(got)) <= 300_000
        pool.release(conn)

        def refuse(data: bytes) -> None:
            raise ValueError("no room")

        conn = await pool.acquire()
        with pytest.raises(ExchangeError) as ei:
            await conn.exchange(head("GET", "/fail"), None, refuse)
        assert ei.value.crt_error.name == "AWS_ERROR_HTTP_PROTOCOL_ERROR"
        assert not conn.open
        pool.release(conn)
        pool.close()

    try:
        asyncio.run(main())
    finally:
        srv.stop()


def test_cancelled_exchange_drops_the_connection():
    def script(c, first):
        c.recv(65536)

    srv = RawServer(script)

    async def main():
        pool = pool_for(srv.port)
        conn = await pool.acquire()
        task = asyncio.ensure_future(conn.exchange(head(), None, None))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not conn.open and not conn.reusable
        pool.release(conn)
        pool.close()

    try:
        asyncio.run(main())
    finally:
        srv.stop()


@pytest.mark.parametrize("size", [200 * 1024, 8 * 1024 * 1024])  # parsed, and read raw from the socket
def test_held_connection_reads_nothing_until_released(size):
    big = bytes(range(256)) * (size // 256)
    sent = threading.Event()

    def script(c, first):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big))
        c.sendall(big)
        sent.set()
        c.recv(65536)

    srv = RawServer(script)

    async def main():
        loop = asyncio.get_running_loop()
        pool = pool_for(srv.port)
        conn = await pool.acquire()
        got: list[bytes] = []
        first = asyncio.Event()

        def sink(data: bytes) -> None:
            got.append(data)
            if not first.is_set():
                conn.hold_reading()  # the consumer can't keep up: stop reading
                first.set()

        task = asyncio.ensure_future(conn.exchange(head(), None, sink))
        await asyncio.wait_for(first.wait(), TIMEOUT)
        held = sum(map(len, got))
        # a few loop iterations with data waiting on the socket: nothing is read while held
        for _ in range(20):
            await asyncio.sleep(0)
        await loop.run_in_executor(None, sent.wait, 0.2)
        for _ in range(20):
            await asyncio.sleep(0)
        assert sum(map(len, got)) == held and not task.done()
        conn.release_reading()
        resp = await asyncio.wait_for(task, TIMEOUT)
        assert resp.status == 200 and b"".join(got) == big
        assert conn.reusable
        pool.release(conn)
        pool.close()

    try:
        asyncio.run(main())
    finally:
        srv.stop()
