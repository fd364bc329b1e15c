"""``crtpy demo``: a real TLS session over loopback, end to end.

Generates a throw-away CA and server certificate (:mod:`crtpy._pki`), starts a TLS echo
server on 127.0.0.1 (:class:`LocalTlsServer`, also used by the test suite), connects to it
with crtpy's TLS client (verified against that CA, with ALPN), moves data through the
connection and prints what was negotiated and how fast it went.
"""
from __future__ import annotations

import asyncio
import ssl
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from ._pki import Pki, make_pki

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["LocalTlsServer", "run_demo"]


class _EchoProtocol(asyncio.Protocol):
    def __init__(self, server: LocalTlsServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        ssl_obj = transport.get_extra_info("ssl_object")
        peer = transport.get_extra_info("peercert")
        info = {
            "alpn": ssl_obj.selected_alpn_protocol() if ssl_obj else None,
            "version": ssl_obj.version() if ssl_obj else None,
            "sni": getattr(ssl_obj, "_crtpy_sni", None),
            "peer_subject": dict(x[0] for x in peer["subject"]) if peer else None,
        }
        self._server._connected(info)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    def eof_received(self) -> bool | None:
        return False  # close once our side is flushed


class LocalTlsServer:
    """A TLS echo server on loopback, running its own asyncio loop on a thread
    (independent of crtpy's runtime, so it can test it).

    Args:
        pki: certificates to serve with.
        host: ``127.0.0.1`` or ``::1`` only.
        alpn: protocols the server accepts (None for no ALPN).
        require_client_cert: ask for and verify a client certificate signed by the CA.
    """

    def __init__(self, pki: Pki, *, host: str = "127.0.0.1", alpn: Sequence[str] | None = ("h2", "http/1.1"),
                 require_client_cert: bool = False) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("LocalTlsServer only listens on loopback")
        self.pki = pki
        self.host = host
        self.port = 0
        self.connections: list[dict[str, Any]] = []
        self._conn_cond = threading.Condition()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.server_cert, pki.server_key)
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=pki.ca_cert.pem.decode())

        def on_sni(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            sslobj._crtpy_sni = name  # type: ignore[attr-defined]

        ctx.sni_callback = on_sni
        self.ssl_context = ctx
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    def _connected(self, info: dict[str, Any]) -> None:
        with self._conn_cond:
            self.connections.append(info)
            self._conn_cond.notify_all()

    def wait_for_connections(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self._conn_cond:
            if not self._conn_cond.wait_for(lambda: len(self.connections) >= count, timeout):
                raise TimeoutError(f"expected {count} TLS connections, saw {len(self.connections)}")
            return list(self.connections)

    def start(self) -> Self:
        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._server = self._loop.run_until_complete(self._loop.create_server(
                    lambda: _EchoProtocol(self), self.host, 0, ssl=self.ssl_context,
                    ssl_handshake_timeout=10))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                started.set()
                return
            started.set()
            try:
                self._loop.run_forever()
            finally:
                self._server.close()
                self._loop.run_until_complete(self._server.wait_closed())
                self._loop.close()

        self._thread = threading.Thread(target=run, name="local-tls-server", daemon=True)
        self._thread.start()
        started.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Sink(asyncio.BufferedProtocol):
    """Counts echoed bytes into one reusable buffer (no per-chunk allocation)."""

    def __init__(self, expected: int) -> None:
        self._buf = bytearray(256 * 1024)
        self.received = 0
        self.expected = expected
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = loop.create_future()
        self.writable = asyncio.Event()
        self.writable.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.received += nbytes
        if self.received >= self.expected and not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            if exc is None:
                exc = ConnectionError(f"connection closed after {self.received} of {self.expected} bytes")
            self.done.set_exception(exc)


def run_demo(size_mib: int = 64, out: TextIO | None = None) -> int:
    """Run the loopback TLS demo; returns a process exit code."""
    from . import io as crt_io
    from ._net.connect import open_connection, pick_loop, tls_info

    size = size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="crtpy-demo-") as tmp:
        print(f"crtpy demo: generating a throw-away CA and server certificate in {tmp}", file=out)
        pki = make_pki(tmp)
        with LocalTlsServer(pki) as server:
            print(f"TLS echo server listening on {server.host}:{server.port}", file=out)
            elg = crt_io.EventLoopGroup(1)
            bootstrap = crt_io.ClientBootstrap(elg, crt_io.DefaultHostResolver(elg))
            opts = crt_io.TlsContextOptions()
            opts.override_default_trust_store(pki.ca_cert.pem)
            opts.alpn_list = ["h2", "http/1.1"]
            conn_opts = crt_io.ClientTlsContext(opts).new_connection_options()
            conn_opts.set_server_name("localhost")

            async def session() -> dict[str, Any]:
                t0 = time.perf_counter()
                transport, proto = await open_connection(
                    "127.0.0.1", server.port, protocol_factory=lambda: _Sink(size),
                    bootstrap=bootstrap, tls_connection_options=conn_opts)
                handshake = time.perf_counter() - t0
                sink: _Sink = proto  # type: ignore[assignment]
                chunk = memoryview(bytes(range(256)) * 256)  # 64 KiB
                t1 = time.perf_counter()
                sent = 0
                while sent < size:
                    await sink.writable.wait()
                    n = min(len(chunk), size - sent)
                    transport.write(chunk[:n])
                    sent += n
                await sink.done
                elapsed = time.perf_counter() - t1
                info = tls_info(transport)
                transport.close()
                return {**info, "handshake": handshake, "elapsed": elapsed, "bytes": sink.received}

            loop_thread = pick_loop(bootstrap)
            try:
                result = loop_thread.run_coroutine(session()).result(300)
            except Exception as exc:  # noqa: BLE001
                print(f"demo failed: {exc}", file=out)
                return 1
            peer = server.wait_for_connections(1)[0]
            mib = result["bytes"] / (1024 * 1024)
            print(f"TLS version:    {result['version']}", file=out)
            print(f"cipher:         {result['cipher']}", file=out)
            print(f"ALPN:           {result['alpn']} (server saw SNI {peer['sni']!r})", file=out)
            print("certificate:    verified against the generated CA for 'localhost'", file=out)
            print(f"handshake:      {result['handshake'] * 1000:.1f} ms", file=out)
            print(f"echoed:         {mib:.0f} MiB each way in {result['elapsed']:.2f} s "
                  f"({2 * mib / result['elapsed']:.1f} MiB/s through TLS, both directions)", file=out)
    return 0
