"""S3Client(network_interface_names=...): names checked like the reference, every
connection bound to one of the interfaces (SO_BINDTODEVICE), spread over them."""
from __future__ import annotations

import os
import socket

import pytest
from helpers.s3express import REGION, FakeS3Express

from crtpy import s3
from crtpy._net import connect

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_BINDTODEVICE"), reason="needs SO_BINDTODEVICE (Linux)")


@pytest.fixture
def server():
    srv = FakeS3Express().start()
    yield srv
    srv.stop()


def test_bind_to_interface_sets_the_socket_option():
    with socket.socket() as sock:
        connect.bind_to_interface(sock, "lo")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0") == b"lo"


@pytest.mark.parametrize("names", [["nope0"], ["lo", "x" * 20], [""]])
def test_unknown_interface_refused_like_the_reference(names):
    import awscrt.s3

    with pytest.raises(RuntimeError) as theirs:
        awscrt.s3.S3Client(region=REGION, network_interface_names=names)
    with pytest.raises(RuntimeError) as ours:
        s3.S3Client(region=REGION, network_interface_names=names)
    assert "AWS_ERROR_INVALID_ARGUMENT" in str(theirs.value) and "AWS_ERROR_INVALID_ARGUMENT" in str(ours.value)


def test_non_str_names_refused():
    with pytest.raises(TypeError):
        s3.S3Client(region=REGION, network_interface_names=["lo", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        s3.S3Client(region=REGION, network_interface_names="lo")


@pytest.mark.parametrize("names", [["lo"], ["lo", "lo"]])
def test_connections_bound_and_spread(server, monkeypatch, names):
    from test_s3_express import BUCKET, _client, _get

    bound: list[str] = []
    real = connect.bind_to_interface

    def recording(sock: socket.socket, name: str) -> None:
        real(sock, name)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0") == name.encode()
        bound.append(name)

    monkeypatch.setattr(connect, "bind_to_interface", recording)
    data = os.urandom(6 * 1024 * 1024 + 3)
    server.objects[f"/{BUCKET}/k"] = data
    client = _client(network_interface_names=names, part_size=1024 * 1024, max_active_connections_override=4)
    assert _get(client, server, "k") == data
    assert server.errors == []
    assert len(bound) >= 2 and set(bound) == {"lo"}
    pools = list(client._impl._pools.values())
    assert len(pools) == 1 and len(pools[0].pools) == len(names)


def test_empty_list_means_no_binding(server, monkeypatch):
    from test_s3_express import BUCKET, _client, _get

    calls: list[str] = []
    monkeypatch.setattr(connect, "bind_to_interface", lambda sock, name: calls.append(name))
    server.objects[f"/{BUCKET}/k"] = b"abc"
    assert _get(_client(network_interface_names=[]), server, "k") == b"abc"
    assert calls == []


def test_spread_pool_takes_interfaces_in_turn():
    import asyncio

    from crtpy._s3.client import SpreadPool

    class FakePool:
        def __init__(self, name: str) -> None:
            self.name, self.released = name, []

        async def acquire(self):
            return object.__new__(type(self.name + "Conn", (), {"pool": self.name}))

        def release(self, conn):
            self.released.append(conn)

    a, b = FakePool("a"), FakePool("b")
    spread = SpreadPool([a, b])  # type: ignore[list-item]

    async def run():
        return [await spread.acquire() for _ in range(4)]

    conns = asyncio.run(run())
    assert [c.pool for c in conns] == ["a", "b", "a", "b"]
    for c in conns:
        spread.release(c)
    assert a.released == [conns[0], conns[2]] and b.released == [conns[1], conns[3]]
