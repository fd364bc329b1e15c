"""Helpers for the tests of caller reads (crtpy._http.h1.H1Connection.caller_read).

``KeepAliveServer`` answers requests one after another on each keep-alive connection,
the way a test's ``answer(conn, index, head)`` says: index counts requests on that
connection from 0; ``answer`` sends what it likes and returns False to stop reading
(the server then closes the connection, or leaves that to ``answer``).
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

OK_1K = b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + b"k" * 1024


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


class KeepAliveServer:
    def __init__(self, answer: Callable[[socket.socket, int, bytes], bool | None]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.heads: list[bytes] = []
        self.closed = threading.Event()  # set when a connection's handler has closed it
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True, name="test-keepalive-server")
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        buf = b""
        index = 0
        try:
            conn.settimeout(10)
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.heads.append(head)
                if self.answer(conn, index, head) is False:
                    return
                index += 1
        except OSError:
            pass
        finally:
            try:
                conn.close()
            finally:
                self.closed.set()

    def stop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass
        self._thread.join(5)


def wait_until(pred: Callable[[], Any], timeout: float = 10.0) -> None:
    """Wait (bounded) for ``pred()`` to hold: for engine states no future reports."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


def engine(conn: Any) -> Any:
    """The HTTP/1.1 engine (crtpy._http.h1.H1Connection) under a public connection."""
    return conn._impl
