"""The WebSocket opening handshake (RFC 6455 section 4), sans-I/O.

* :func:`new_key` / :func:`accept_for` - the Sec-WebSocket-Key and the matching
  Sec-WebSocket-Accept value.
* :func:`encode_request` - the HTTP/1.1 request bytes.
* :class:`ResponseParser` - fed bytes, it reports the parsed response (status, headers,
  and for a rejection its body) and whatever bytes follow the header block.
* :func:`check_upgrade` - whether a response accepts the upgrade.
"""
from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

MAX_HEADER_BLOCK = 64 * 1024
MAX_REJECTION_BODY = 1024 * 1024


class HandshakeError(Exception):
    """Carries the crtpy error name of a failed handshake."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(detail)
        self.name = name
        self.detail = detail


def new_key() -> str:
    """Base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept value a server must answer to ``key``."""
    digest = hashlib.sha1(key.strip().encode("ascii", "replace") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def encode_request(method: str, path: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """Serialize the request line and headers (no body: a handshake has none)."""
    for text in (method, path):
        if any(c in text for c in "\r\n") or " " in text:
            raise HandshakeError("AWS_ERROR_HTTP_INVALID_PATH" if text is path else
                                 "AWS_ERROR_HTTP_INVALID_METHOD", "bad request line")
    parts = [f"{method} {path} HTTP/1.1\r\n"]
    for name, value in headers:
        if any(c in name for c in "\r\n:") or not name:
            raise HandshakeError("AWS_ERROR_HTTP_INVALID_HEADER_NAME", "bad header name")
        if "\r" in value or "\n" in value:
            raise HandshakeError("AWS_ERROR_HTTP_INVALID_HEADER_VALUE", "bad header value")
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def header_value(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    key = name.lower()
    for n, v in headers:
        if n.lower() == key:
            return v
    return None


def _has_token(value: str | None, token: str) -> bool:
    if value is None:
        return False
    return any(part.strip().lower() == token for part in value.split(","))


class ResponseParser:
    """Incremental parser of the server's handshake response.

    Feed bytes with :meth:`feed` until :attr:`done`; then :attr:`status`,
    :attr:`headers`, :attr:`body` (for a non-101 response) and :attr:`leftover` (bytes
    after the header block of a 101 response: the first WebSocket frames) are set.
    Call :meth:`feed_eof` when the peer closed the connection.
    Raises :class:`HandshakeError` for malformed responses.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.body: bytes | None = b""
        self.leftover = b""
        self.done = False
        self._body_mode: str | None = None  # "length", "chunked"
        self._remaining = 0

    def feed(self, data: bytes) -> None:
        if self.done:
            self.leftover += data
            return
        self._buf += data
        if self.status is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEADER_BLOCK:
                    raise HandshakeError("AWS_ERROR_HTTP_PROTOCOL_ERROR", "response header block too large")
                if len(self._buf) >= 5 and not self._buf.startswith(b"HTTP/"):
                    raise HandshakeError("AWS_ERROR_HTTP_PROTOCOL_ERROR", "not an HTTP response")
                return
            head = bytes(self._buf[:end])
            del self._buf[:end + 4]
            self._parse_head(head)
            if self.status == 101:
                self.leftover = bytes(self._buf)
                self._buf.clear()
                self.done = True
                return
            self._start_body()
        self._parse_body()

    def feed_eof(self) -> None:
        if self.done:
            return
        if self.status is None:
            raise HandshakeError("AWS_IO_SOCKET_CLOSED",
                                 "connection closed before the handshake response")
        # A rejection whose body was cut short: no body is reported.
        self.body = None
        self.done = True

    def _parse_head(self, head: bytes) -> None:
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
            raise HandshakeError("AWS_ERROR_HTTP_PROTOCOL_ERROR", "undecodable response") from None
        lines = text.split("\r\n")
        status_line = lines[0].split(" ", 2)
        if (len(status_line) < 2 or not status_line[0].startswith("HTTP/1.")
                or len(status_line[1]) != 3 or not status_line[1].isdigit()):
            raise HandshakeError("AWS_ERROR_HTTP_PROTOCOL_ERROR", "malformed status line")
        self.status = int(status_line[1])
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HandshakeError("AWS_ERROR_HTTP_PROTOCOL_ERROR", "malformed header line")
            self.headers.append((name, value.strip()))

    def _start_body(self) -> None:
        te = header_value(self.headers, "Transfer-Encoding")
        cl = header_value(self.headers, "Content-Length")
        if te is not None and _has_token(te, "chunked"):
            self._body_mode = "chunked"
        elif cl is not None:
            if not cl.strip().isdigit():
                raise HandshakeError("AWS_ERROR_HTTP_PROTOCOL_ERROR", "bad Content-Length")
            self._remaining = int(cl)
            self._remaining = min(self._remaining, MAX_REJECTION_BODY)
            self._body_mode = "length"
        else:
            self._body_mode = None  # no framed body: report it as empty

    def _parse_body(self) -> None:
        if self._body_mode is None:
            self.done = True
            return
        if self._body_mode == "length":
            if len(self._buf) >= self._remaining:
                self.body = bytes(self._buf[:self._remaining])
                self.done = True
            return
        # chunked
        body = bytearray(self.body or b"")
        while True:
            eol = self._buf.find(b"\r\n")
            if eol < 0:
                break
            size_text = bytes(self._buf[:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HandshakeError("AWS_ERROR_HTTP_PROTOCOL_ERROR", "bad chunk size") from None
            if size == 0:
                self.body = bytes(body)
                self.done = True
                return
            if len(self._buf) < eol + 2 + size + 2:
                break
            body += self._buf[eol + 2:eol + 2 + size]
            del self._buf[:eol + 2 + size + 2]
            if len(body) > MAX_REJECTION_BODY:
                raise HandshakeError("AWS_ERROR_HTTP_PROTOCOL_ERROR", "rejection body too large")
        self.body = bytes(body)


def requested_protocols(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The subprotocols a request offers (every Sec-WebSocket-Protocol value, split)."""
    return [p.strip() for n, v in headers if n.lower() == "sec-websocket-protocol"
            for p in v.split(",") if p.strip()]


def check_upgrade(status: int, headers: list[tuple[str, str]], key: str | None,
                  protocols: list[str] | None = None) -> None:
    """Raise :class:`HandshakeError` unless the response accepts the upgrade for ``key``
    (and, like the reference, picks one of the offered ``protocols`` when any were
    offered, none otherwise, and no extension, since none is ever offered)."""
    if status != 101:
        raise HandshakeError("AWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE",
                             f"server answered status {status}, not 101")
    if not _has_token(header_value(headers, "Upgrade"), "websocket"):
        raise HandshakeError("AWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE", "missing 'Upgrade: websocket'")
    if not _has_token(header_value(headers, "Connection"), "upgrade"):
        raise HandshakeError("AWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE", "missing 'Connection: Upgrade'")
    accept = header_value(headers, "Sec-WebSocket-Accept")
    if key is None or accept is None or accept.strip() != accept_for(key):
        raise HandshakeError("AWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE",
                             "Sec-WebSocket-Accept does not match the request's key")
    offered = protocols or []
    chosen = header_value(headers, "Sec-WebSocket-Protocol")
    if chosen is None:
        if offered:
            raise HandshakeError("AWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE",
                                 "the server chose none of the offered subprotocols")
    elif chosen.strip() not in offered:
        raise HandshakeError("AWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE",
                             f"the server chose a subprotocol that was not offered: {chosen!r}")
    if header_value(headers, "Sec-WebSocket-Extensions") is not None:
        raise HandshakeError("AWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE",
                             "the server chose an extension, and none was offered")
