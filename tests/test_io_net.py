# ruff: noqa: F811  (pytest fixtures are imported by name)
"""crtpy._net: resolution, TCP connect errors and timeouts, socket options, start_tls."""
from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import pytest
from conftest import free_port
from helpers.certs import pki, tls_exchange, tls_server  # noqa: F401

from crtpy import io
from crtpy._net import connect as net
from crtpy._net.resolver import HostCache, check_host_name
from crtpy.exceptions import AwsCrtError


def new_bootstrap(threads=1):
    elg = io.EventLoopGroup(threads)
    return io.ClientBootstrap(elg, io.DefaultHostResolver(elg))


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Collect(asyncio.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.got = asyncio.Event()

    def data_received(self, data):
        self.data += data
        self.got.set()


# -- DNS ------------------------------------------------------------------------------
def test_resolve_localhost_all_families(leak_check):
    elg = io.EventLoopGroup(1)
    resolver = io.DefaultHostResolver(elg)
    addresses = resolver._resolve("localhost").result(10)
    expected = {info[0] for info in socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)}
    assert {a.family for a in addresses} == expected  # IPv6 too where the system has it
    assert socket.AF_INET in expected
    assert all(a.address in ("127.0.0.1", "::1") or a.address.startswith("127.") for a in addresses)
    assert resolver._cache.cached("localhost") == tuple(addresses)


@pytest.mark.parametrize("name", ["bad name", "a..b", "-leading-dash", "x" * 64 + ".example", "", "a" * 254])
def test_invalid_names(name, leak_check):
    elg = io.EventLoopGroup(1)
    resolver = io.DefaultHostResolver(elg)
    with pytest.raises(AwsCrtError) as e:
        resolver._resolve(name).result(10)
    assert e.value.name == "AWS_IO_DNS_INVALID_NAME"


def test_invalid_name_matches_reference_and_connect_reports_it(leak_check):
    awscrt_http = pytest.importorskip("awscrt.http")
    with pytest.raises(Exception) as ref:
        awscrt_http.HttpClientConnection.new(host_name="bad name", port=80).result(30)
    with pytest.raises(AwsCrtError) as mine:
        asyncio.run(net.open_connection("bad name", 80, protocol_factory=asyncio.Protocol))
    assert mine.value.name == ref.value.name == "AWS_IO_DNS_INVALID_NAME"


def test_host_name_checks():
    assert check_host_name("Example.COM.") == "Example.COM"
    assert check_host_name("bücher.example") == "xn--bcher-kva.example"
    assert check_host_name("s3_bucket.localhost") == "s3_bucket.localhost"


def test_cache_is_bounded():
    cache = HostCache(max_hosts=2)
    for name in ("a", "b", "c"):
        cache.store(name, ())
    assert cache.cached("a") is None and cache.cached("c") == ()


def test_literal_addresses_skip_dns():
    async def run():
        cache = HostCache()
        return await cache.resolve("127.0.0.1"), await cache.resolve("[::1]")

    v4, v6 = asyncio.run(run())
    assert v4[0].family == socket.AF_INET and v6[0].family == socket.AF_INET6


# -- connect errors ---------------------------------------------------------------------
def test_connection_refused_matches_reference(leak_check):
    port = free_port()
    with pytest.raises(AwsCrtError) as mine:
        asyncio.run(net.open_connection("127.0.0.1", port, protocol_factory=asyncio.Protocol))
    assert mine.value.name == "AWS_IO_SOCKET_CONNECTION_REFUSED"
    awscrt_http = pytest.importorskip("awscrt.http")
    with pytest.raises(Exception) as ref:
        awscrt_http.HttpClientConnection.new(host_name="127.0.0.1", port=port).result(30)
    assert ref.value.name == mine.value.name


def test_connect_timeout(leak_check):
    """A listener with a full accept queue drops new SYNs, so connecting times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        first = socket.create_connection(("127.0.0.1", port), timeout=5)  # fills the queue
        fillers.append(first)
        for _ in range(2):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(s)
        opts = io.SocketOptions()
        opts.connect_timeout_ms = 300
        bootstrap = new_bootstrap()
        with pytest.raises(AwsCrtError) as e:
            net.pick_loop(bootstrap).run_coroutine(net.open_connection(
                "127.0.0.1", port, protocol_factory=asyncio.Protocol, bootstrap=bootstrap,
                socket_options=opts)).result(10)
        assert e.value.name == "AWS_IO_SOCKET_TIMEOUT"
    finally:
        for s in fillers:
            s.close()
        listener.close()


@pytest.mark.parametrize("exc,name", [
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "AWS_IO_SOCKET_CONNECTION_REFUSED"),
    (OSError(errno.EHOSTUNREACH, "no route"), "AWS_IO_SOCKET_NO_ROUTE_TO_HOST"),
    (OSError(errno.ENETUNREACH, "unreachable"), "AWS_IO_SOCKET_NO_ROUTE_TO_HOST"),
    (OSError(errno.ENETDOWN, "down"), "AWS_IO_SOCKET_NETWORK_DOWN"),
    (ConnectionResetError(errno.ECONNRESET, "reset"), "AWS_IO_SOCKET_CLOSED"),
    (TimeoutError(), "AWS_IO_SOCKET_TIMEOUT"),
    (asyncio.TimeoutError(), "AWS_IO_SOCKET_TIMEOUT"),
    (socket.gaierror(socket.EAI_NONAME, "unknown"), "AWS_IO_DNS_INVALID_NAME"),
    (socket.gaierror(socket.EAI_AGAIN, "again"), "AWS_IO_DNS_QUERY_FAILED"),
    (ssl.SSLError(1, "bad"), "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE"),
])
def test_map_connect_error(exc, name):
    mapped = net.map_connect_error(exc)
    assert isinstance(mapped, AwsCrtError) and mapped.name == name
    assert mapped.__cause__ is exc
    assert net.map_connect_error(mapped) is mapped
    value_error = ValueError("not a network error")
    assert net.map_connect_error(value_error) is value_error


# -- working connections -----------------------------------------------------------------
def test_plain_tcp_on_users_own_loop_without_bootstrap(leak_check):
    """open_connection works on any asyncio loop; without a bootstrap no crtpy loop starts."""
    async def run():
        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await net.open_connection("localhost", port, protocol_factory=Collect)
        transport.write(b"hello")
        await asyncio.wait_for(proto.got.wait(), 10)
        assert net.negotiated_alpn(transport) is None
        assert net.tls_info(transport) == {}
        transport.close()
        server.close()
        await server.wait_closed()
        return bytes(proto.data)

    assert asyncio.run(run()) == b"hello"
    assert io.EventLoopGroup._static_event_loop_group is None


def test_socket_options_applied(leak_check):
    opts = io.SocketOptions()
    opts.keep_alive = True
    opts.keep_alive_timeout_secs = 30
    opts.keep_alive_interval_secs = 7
    opts.keep_alive_max_probes = 4
    opts.domain = io.SocketDomain.IPv4

    async def run():
        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await net.open_connection("127.0.0.1", port, protocol_factory=Collect, socket_options=opts)
        sock = transport.get_extra_info("socket")
        values = (sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                  sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                  sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                  sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT))
        transport.close()
        server.close()
        await server.wait_closed()
        return values

    keepalive, idle, interval, probes = asyncio.run(run())
    assert keepalive and (idle, interval, probes) == (30, 7, 4)


def test_datagram_sockets_rejected():
    opts = io.SocketOptions()
    opts.type = io.SocketType.DGram
    with pytest.raises(AwsCrtError) as e:
        asyncio.run(net.open_connection("127.0.0.1", 9, protocol_factory=asyncio.Protocol, socket_options=opts))
    assert e.value.name == "AWS_IO_SOCKET_INVALID_OPTIONS"


def test_unix_domain_socket(tmp_path, leak_check):
    path = str(tmp_path / "echo.sock")
    opts = io.SocketOptions()
    opts.domain = io.SocketDomain.Local

    async def run():
        server = await asyncio.get_running_loop().create_unix_server(Echo, path)
        transport, proto = await net.open_connection(path, 0, protocol_factory=Collect, socket_options=opts)
        transport.write(b"unix")
        await asyncio.wait_for(proto.got.wait(), 10)
        transport.close()
        server.close()
        await server.wait_closed()
        return bytes(proto.data)

    assert asyncio.run(run()) == b"unix"


def test_start_tls_upgrades_plain_connection(pki, leak_check):
    """Plain TCP first (as through a proxy CONNECT tunnel), then TLS to the real host."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
    server_ctx.set_alpn_protocols(["http/1.1"])
    opts = io.TlsContextOptions()
    opts.override_default_trust_store(pki.ca_cert.pem)
    opts.alpn_list = ["http/1.1"]
    conn_opts = io.ClientTlsContext(opts).new_connection_options()

    async def handle(reader, writer):
        line = await reader.readline()
        assert line == b"UPGRADE\n"
        writer.write(b"OK\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        data = await reader.read(100)
        writer.write(data.upper())
        await writer.drain()
        writer.close()

    async def run():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await net.open_connection("127.0.0.1", port, protocol_factory=Collect)
        transport.write(b"UPGRADE\n")
        await asyncio.wait_for(proto.got.wait(), 10)
        assert bytes(proto.data) == b"OK\n"
        proto.data.clear()
        proto.got.clear()
        tls_transport = await net.start_tls(transport, proto, conn_opts, "localhost")
        alpn = net.negotiated_alpn(tls_transport)
        tls_transport.write(b"secret")
        await asyncio.wait_for(proto.got.wait(), 10)
        tls_transport.close()
        server.close()
        await server.wait_closed()
        return alpn, bytes(proto.data)

    assert asyncio.run(run()) == ("http/1.1", b"SECRET")


def test_start_tls_wrong_name_fails(pki, leak_check):
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
    opts = io.TlsContextOptions()
    opts.override_default_trust_store(pki.ca_cert.pem)
    conn_opts = io.ClientTlsContext(opts).new_connection_options()

    async def handle(reader, writer):
        try:
            await writer.start_tls(server_ctx)
        except (ssl.SSLError, ConnectionError, asyncio.CancelledError):
            pass
        writer.close()

    async def run():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await net.open_connection("127.0.0.1", port, protocol_factory=Collect)
        try:
            await net.start_tls(transport, proto, conn_opts, "elsewhere.example")
        finally:
            transport.close()
            server.close()
            await server.wait_closed()

    with pytest.raises(AwsCrtError) as e:
        asyncio.run(run())
    assert e.value.name == "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE"


def test_pick_loop_round_robin(leak_check):
    bootstrap = new_bootstrap(threads=2)
    loops = {net.pick_loop(bootstrap) for _ in range(4)}
    assert len(loops) == 2
    with pytest.raises(TypeError):
        net.pick_loop("not a bootstrap")  # type: ignore[arg-type]


def test_many_concurrent_tls_connections(pki, tls_server, leak_check):
    server = tls_server()
    bootstrap = new_bootstrap(threads=2)
    opts = io.TlsContextOptions()
    opts.override_default_trust_store(pki.ca_cert.pem)
    conn_opts = io.ClientTlsContext(opts).new_connection_options()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: tls_exchange("localhost", server.port, conn_opts, bootstrap,
                                                       payload=b"%d" % i * 1000)[1], range(16)))
    assert results == [b"%d" % i * 1000 for i in range(16)]


class _InterruptedConnect(socket.socket):
    """A socket whose connect() is interrupted by a signal: connect_ex() reports EINTR
    while the connection goes on in the background."""

    def connect_ex(self, address):  # type: ignore[override]
        super().connect_ex(address)
        return errno.EINTR


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_connect_interrupted_by_a_signal_goes_on(loop_kind, leak_check):
    """EINTR from connect() is not a failure (asyncio's sock_connect waits for the
    outcome too): the connection completes, or fails with its real error."""
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    closed_port = free_port()

    async def attempt(p: int):
        sock = _InterruptedConnect(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(net._sock_connect(asyncio.get_running_loop(), sock, ("127.0.0.1", p)), 10)
            return sock.getpeername()
        finally:
            sock.close()

    try:
        assert loop.run_until_complete(attempt(port)) == ("127.0.0.1", port)
        with pytest.raises(ConnectionRefusedError):
            loop.run_until_complete(attempt(closed_port))
    finally:
        loop.close()
        listener.close()
