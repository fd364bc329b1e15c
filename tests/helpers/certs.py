"""Test PKI: a generated CA, server and client certificates, PKCS#12 and an unrelated CA.

``pki`` is a session-scoped fixture; import it into a test module with
``from helpers.certs import pki``.  Each attribute (``pki.ca_cert``, ``pki.server_key``,
...) is a path string that also carries the file's bytes in ``.pem``.
"""
from __future__ import annotations

import pytest

from crtpy._pki import PemFile, Pki, make_pki

__all__ = ["PemFile", "Pki", "ipv6_loopback_available", "make_pki", "pki", "tls_server"]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def tls_server(pki: Pki):  # type: ignore[no-untyped-def]
    """Factory fixture: ``tls_server(alpn=..., require_client_cert=..., host=...)`` starts a
    TLS echo server on loopback (its own thread and asyncio loop) and stops it after the test."""
    from crtpy._demo import LocalTlsServer

    servers: list[LocalTlsServer] = []

    def start(**kwargs):  # type: ignore[no-untyped-def]
        server = LocalTlsServer(pki, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def ipv6_loopback_available() -> bool:
    import socket

    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def tls_exchange(host: str, port: int, conn_opts, bootstrap=None, payload: bytes = b"ping",  # type: ignore[no-untyped-def]
                 socket_options=None, timeout: float = 10.0) -> tuple[str | None, bytes]:
    """Connect with crtpy (``crtpy._net.connect.open_connection``), send ``payload`` to an
    echo server, and return ``(negotiated ALPN, echoed bytes)``.  Errors propagate."""
    import asyncio

    from crtpy._net.connect import negotiated_alpn, open_connection, pick_loop

    class Collect(asyncio.Protocol):
        def __init__(self) -> None:
            self.data = bytearray()
            self.done = asyncio.get_running_loop().create_future()

        def data_received(self, data: bytes) -> None:
            self.data += data
            if len(self.data) >= len(payload) and not self.done.done():
                self.done.set_result(None)

        def connection_lost(self, exc) -> None:  # type: ignore[no-untyped-def]
            if not self.done.done():
                from crtpy._errors import error
                from crtpy._net.connect import map_connect_error

                self.done.set_exception(map_connect_error(exc) if exc else error(
                    "AWS_IO_SOCKET_CLOSED", "the peer closed the connection before echoing"))

    async def run() -> tuple[str | None, bytes]:
        transport, proto = await open_connection(host, port, protocol_factory=Collect, bootstrap=bootstrap,
                                                 socket_options=socket_options, tls_connection_options=conn_opts)
        try:
            transport.write(payload)
            await asyncio.wait_for(proto.done, timeout)
            return negotiated_alpn(transport), bytes(proto.data)
        finally:
            transport.close()

    return pick_loop(bootstrap).run_coroutine(run()).result(timeout + 5)
