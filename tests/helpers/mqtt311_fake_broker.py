"""A scriptable fake MQTT 3.1.1 broker for bad-input tests of crtpy.mqtt.

``FakeBroker(handler)`` listens on a free 127.0.0.1 port; every accepted connection runs
``handler(sock, connect_bytes)`` on its own thread after the client's CONNECT has been
read.  Helpers build the common answers.  ``broker.connections`` counts accepts and
``broker.closed`` is set for each client connection the client side closed (EOF seen).
"""
from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from typing_extensions import Self

__all__ = ["FakeBroker", "connack", "read_packet"]


def connack(code: int = 0, session_present: bool = False) -> bytes:
    return bytes((0x20, 2, 1 if session_present else 0, code))


def read_packet(sock: socket.socket, timeout: float = 10.0) -> bytes | None:
    """Read one whole MQTT packet (fixed header included), or None at EOF."""
    sock.settimeout(timeout)

    def exact(n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    head = exact(1)
    if head is None:
        return None
    length = 0
    shift = 0
    raw = b""
    while True:
        b = exact(1)
        if b is None:
            return None
        raw += b
        length |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    body = exact(length) if length else b""
    if body is None:
        return None
    return head + raw + body


class FakeBroker:
    def __init__(self, handler: Callable[[socket.socket, bytes], None]) -> None:
        self.handler = handler
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.eof = threading.Event()
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._stopped = False
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, c: socket.socket) -> None:
        try:
            first = read_packet(c)
            if first is None:
                return
            self.handler(c, first)
            # wait for the client to close its side
            c.settimeout(15)
            while c.recv(65536):
                pass
            self.eof.set()
        except OSError:
            self.eof.set()
        except BaseException as e:  # noqa: BLE001
            self.errors.append(e)
        finally:
            c.close()

    def stop(self) -> None:
        self._stopped = True
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
