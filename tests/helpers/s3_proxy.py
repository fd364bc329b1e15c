"""A fault-injecting HTTP/1.1 proxy for S3 tests.

The client talks to the proxy as if it were the server (its Host header is kept as is);
the proxy forwards each request to the upstream server on a fresh connection and relays
the reply, unless a rule says otherwise:

* ``"drop"``: read part of the request body, then close the client connection;
* ``"drop_response"``: forward, then send half of the response body and close;
* ``"500"`` / ``"503"``: answer with an InternalError / SlowDown error document;
* ``"error200"``: answer 200 OK with an InternalError document (as S3 may for
  CompleteMultipartUpload);
* ``"corrupt"``: forward, and flip one byte in the middle of the response body.

Rules are ``(predicate(method, path, headers), action, times)``; each fires ``times`` times.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Callable

from helpers.loopback_server import LoopbackServer

Predicate = Callable[[str, str, dict[str, str]], bool]

_ERRORS = {
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error."),
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "error200": (200, "OK", "InternalError", "We encountered an internal error."),
}


class FaultProxy:
    def __init__(self, upstream_port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.upstream_port = upstream_port
        self.rules: list[list[object]] = []
        self.fired: list[tuple[str, str, str]] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._one, ssl_context)
        self.port = self._server.port

    def add_rule(self, predicate: Predicate, action: str, times: int = 1) -> None:
        with self._lock:
            self.rules.append([predicate, action, times])

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.fired.clear()
            self.requests.clear()

    def close(self) -> None:
        self._server.close()

    def _action_for(self, method: str, path: str, headers: dict[str, str]) -> str | None:
        with self._lock:
            self.requests.append((method, path))
            for rule in self.rules:
                pred, action, times = rule
                if times and pred(method, path, headers):  # type: ignore[operator]
                    rule[2] = times - 1  # type: ignore[operator]
                    self.fired.append((method, path, action))  # type: ignore[arg-type]
                    return action  # type: ignore[return-value]
        return None

    def _one(self, rfile, sock: socket.socket) -> bool:  # type: ignore[no-untyped-def]
        # (with TLS, ``sock`` is the SSLSocket made in Handler.setup)
        line = rfile.readline(65537)
        if not line:
            return False
        method, path, _ = line.decode("latin-1").split(" ", 2)
        raw_headers: list[tuple[str, str]] = []
        while True:
            h = rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            raw_headers.append((name.strip(), value.strip()))
        headers = {n.lower(): v for n, v in raw_headers}
        length = int(headers.get("content-length", "0") or 0)
        action = self._action_for(method, path, headers)
        if action == "drop":
            rfile.read(min(length, length // 2))
            sock.shutdown(socket.SHUT_RDWR)
            return False
        body = rfile.read(length) if length else b""
        if action in _ERRORS:
            status, reason, code, message = _ERRORS[action]
            doc = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                   f"<Message>{message}</Message></Error>").encode()
            sock.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                         f"Content-Length: {len(doc)}\r\n\r\n".encode() + doc)
            return True
        up = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            up.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for n, v in raw_headers:
                up.putheader(n, v)
            up.endheaders(body if body else None)
            resp = up.getresponse()
            data = resp.read() if method != "HEAD" else b""
            out_headers = [(n, v) for n, v in resp.getheaders()
                           if n.lower() not in ("connection", "transfer-encoding", "content-length")]
        finally:
            up.close()
        if action == "corrupt" and data:
            i = len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1:]
        head = [f"HTTP/1.1 {resp.status} {resp.reason}\r\n"]
        head += [f"{n}: {v}\r\n" for n, v in out_headers]
        clen = resp.getheader("content-length") if method == "HEAD" else str(len(data))
        if clen is not None:
            head.append(f"Content-Length: {clen}\r\n")
        head.append("\r\n")
        if action == "drop_response":
            sock.sendall("".join(head).encode("latin-1") + data[: len(data) // 2])
            sock.shutdown(socket.SHUT_RDWR)
            return False
        sock.sendall("".join(head).encode("latin-1") + data)
        return True
