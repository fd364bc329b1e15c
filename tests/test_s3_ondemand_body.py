"""GET_OBJECT through on_body: the allocator setting that keeps the received bytes'
heap from being trimmed and faulted in again (crtpy/_s3/alloc.py), and the delivery
itself (order, offsets, chunk types, retries of a part whose bytes were partly handed
on).  Against the fake S3 endpoint of tests/helpers/s3express.py."""
from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import threading
import types
import uuid
from typing import Any

import pytest
from helpers.s3_proxy import FaultProxy
from helpers.s3_servers import Recorder, http_request, make_client, moto_server  # noqa: F401
from helpers.s3express import FakeS3Express
from test_s3_express import BUCKET, TIMEOUT, _client, _request

from crtpy import s3
from crtpy._s3 import alloc, meta
from crtpy.s3 import S3RequestType, S3RetryConfig

MIB = 1024 * 1024

# a part's worth of 256 KiB buffers allocated, then all freed, fifty times over: with
# glibc's initial thresholds each round's memory goes back to the kernel and is faulted
# in again; past raise_trim_threshold it stays in the heap
_CHURN = r"""
import resource, sys
import crtpy._s3.alloc as A
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
f0 = faults()
if sys.argv[1] == "1":
    A.raise_trim_threshold()
    A.raise_trim_threshold()
f1 = faults()
for _ in range(50):
    part = [bytearray(256 * 1024) for _ in range(24)]
    del part
print(f1 - f0, faults() - f1)
"""


def _churn(prime: bool) -> tuple[int, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIBC_TUNABLES", "MALLOC_"))}
    out = subprocess.run([sys.executable, "-c", _CHURN, "1" if prime else "0"], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds")
def test_raise_trim_threshold_keeps_freed_buffers_in_the_heap():
    prime_faults, primed = _churn(True)
    _, plain = _churn(False)
    # the block allocated and freed to move the thresholds is never touched
    assert prime_faults < 64
    # 6 MiB alive at once: ~1,536 faults to touch it once, vs ~1,536 per round when trimmed
    assert primed < 4000
    assert plain > 5 * primed


def test_raise_trim_threshold_runs_once(monkeypatch):
    monkeypatch.setattr(alloc, "_done", False)
    alloc.raise_trim_threshold()
    assert alloc._done
    alloc.raise_trim_threshold()  # a no-op now
    assert alloc._done


@pytest.fixture
def server():
    srv = FakeS3Express().start()
    yield srv
    srv.stop()


def _collect(server: Any, size: int, part: int, **kwargs: Any) -> tuple[bytes, list[tuple[Any, int]]]:
    data = os.urandom(size)
    server.objects[f"/{BUCKET}/k"] = data
    calls: list[tuple[Any, int]] = []
    threads: set[str] = set()

    def on_body(chunk: Any, offset: int, **_: Any) -> None:
        calls.append((chunk, offset))
        threads.add(threading.current_thread().name)

    _client(part_size=part, **kwargs).make_request(
        type=s3.S3RequestType.GET_OBJECT, request=_request(server, "GET", "k"),
        on_body=on_body).finished_future.result(TIMEOUT)
    assert all(not name.startswith("crtpy-loop") for name in threads)
    return data, calls


def test_on_body_get_raises_the_threshold_and_a_file_get_does_not(server, monkeypatch, tmp_path):
    seen: list[int] = []
    monkeypatch.setattr(meta, "raise_trim_threshold", lambda: seen.append(1))
    data, calls = _collect(server, 3 * MIB + 5, MIB)
    assert b"".join(bytes(c) for c, _ in calls) == data
    assert seen == [1]
    _client(part_size=MIB).make_request(
        type=s3.S3RequestType.GET_OBJECT, request=_request(server, "GET", "k"),
        recv_filepath=str(tmp_path / "out")).finished_future.result(TIMEOUT)
    assert seen == [1]
    assert (tmp_path / "out").read_bytes() == data


@pytest.mark.parametrize("size", [0, 1, MIB - 1, MIB, MIB + 1, 5 * MIB + 123])
def test_on_body_chunks_are_bytes_in_order_with_their_offsets(server, size):
    data, calls = _collect(server, size, MIB)
    expect = 0
    for chunk, offset in calls:
        assert type(chunk) is bytes
        assert offset == expect
        expect += len(chunk)
    assert expect == size
    assert b"".join(c for c, _ in calls) == data


# -- parts handed on as they arrive (meta._InOrder): retries, holds, odd responses --------
def _moto_object(moto: Any, data: bytes) -> str:
    """A fresh bucket on moto holding ``data`` at key "k"; its name."""
    bucket = "ondemand-" + uuid.uuid4().hex[:10]
    moto.boto3().create_bucket(Bucket=bucket)
    moto.boto3().put_object(Bucket=bucket, Key="k", Body=data)
    return bucket


def test_head_part_dropped_midway_is_handed_on_once(moto_server):  # noqa: F811
    """Part 1 is the head when its response is cut in the middle: the bytes handed on
    before the cut are not handed on again by the retry; part 2 (gathered meanwhile)
    is cut too and gathered again from its start."""
    part = 5 * MIB
    data = os.urandom(4 * part + 999)
    bucket = _moto_object(moto_server, data)
    proxy = FaultProxy(moto_server.port)
    try:
        for start in (part, 2 * part):
            proxy.add_rule(lambda m, p, h, s=start: m == "GET" and h.get("range", "").startswith(f"bytes={s}-"),
                           "drop_response")
        c = make_client(proxy.port, part_size=part, retry_config=S3RetryConfig(max_retries=3, backoff_scale_factor_ms=5))
        rec = Recorder()
        req = c.make_request(type=S3RequestType.GET_OBJECT, request=http_request("GET", proxy.port, bucket, "k"),
                             **rec.callbacks())
        assert req.finished_future.exception(60) is None
        assert [a for _, _, a in proxy.fired] == ["drop_response", "drop_response"]
        assert rec.body() == data  # in order, contiguous, each byte once
        assert rec.progress == len(data)
    finally:
        proxy.close()


def test_parts_after_the_head_are_held_and_released(server, monkeypatch):
    """With a tiny hold threshold every part after the head stops being read early and
    goes on once it is the head; with a tiny hold limit the holds also expire (the part
    is gathered after all).  The body is exact either way."""
    holds: list[int] = []
    expired: list[int] = []
    hold, expire = meta._BodyPart._hold, meta._BodyPart._hold_expired

    def counting_hold(self: Any) -> None:
        holds.append(self.idx)
        hold(self)

    def counting_expire(self: Any) -> None:
        expired.append(self.idx)
        expire(self)

    monkeypatch.setattr(meta._BodyPart, "_hold", counting_hold)
    monkeypatch.setattr(meta._BodyPart, "_hold_expired", counting_expire)
    monkeypatch.setattr(meta, "HOLD_AFTER", 1)
    for limit in (30.0, 0.0):
        monkeypatch.setattr(meta, "HOLD_MAX_SEC", limit)
        holds.clear()
        # whether a part gets ahead of the head depends on timing: a few tries
        for _ in range(10):
            data, calls = _collect(server, 12 * MIB + 7, MIB)
            assert b"".join(c for c, _ in calls) == data
            assert [o for _, o in calls] == sorted(o for _, o in calls)
            if holds and (limit or expired):
                break
        assert holds  # parts after the head were held
    assert expired


def test_only_the_range_asked_for_goes_on_as_it_arrives():
    """A response whose Content-Range is not the range asked for (or has none) is
    gathered, not handed on piece by piece; the part's check then decides."""
    got: list[tuple[bytes, int]] = []

    class Owner:
        hold = False

        def hand_on(self, chunk: bytes, offset: int) -> None:
            got.append((chunk, offset))

    bp = meta._BodyPart(Owner(), 1, MIB, MIB)  # type: ignore[arg-type]
    bp.streaming = True
    for status, headers in [(206, [("Content-Range", f"bytes 0-{MIB - 1}/{3 * MIB}")]), (200, []), (206, []),
                            (500, [("Content-Range", f"bytes {MIB}-{2 * MIB - 1}/{3 * MIB}")])]:
        bp.new_attempt()
        bp.on_head(status, headers)
        bp.feed(b"x" * 10)
        assert not bp.verified and got == [] and bp.pieces == [b"x" * 10]
    bp.new_attempt()
    bp.on_head(206, [("Content-Range", f"bytes {MIB}-{2 * MIB - 1}/{3 * MIB}"), ("Content-Length", str(MIB))])
    bp.feed(b"y" * 10)
    assert bp.verified and got == [(b"y" * 10, MIB)] and bp.pieces == []


def test_hand_on_skips_what_an_earlier_attempt_delivered():
    got: list[tuple[bytes, int]] = []

    class Owner:
        hold = False

        def hand_on(self, chunk: bytes, offset: int) -> None:
            got.append((chunk, offset))

    bp = meta._BodyPart(Owner(), 2, 200, 10)  # type: ignore[arg-type]
    bp.streaming = True
    bp.new_attempt()
    bp.on_head(206, [("Content-Range", "bytes 200-209/300"), ("Content-Length", "10")])
    bp.feed(b"abcd")
    bp.feed(b"ef")
    assert got == [(b"abcd", 200), (b"ef", 204)] and bp.delivered == 6
    # the connection broke; a retry sends the part again from its first byte
    bp.new_attempt()
    bp.on_head(206, [("Content-Range", "bytes 200-209/300"), ("Content-Length", "10")])
    bp.feed(b"abc")  # all delivered already
    bp.feed(b"defgh")  # 'def' was, 'gh' was not
    bp.feed(b"ijXX")  # past the part's end: never handed on
    assert got[2:] == [(b"gh", 206), (b"ij", 208)]
    assert type(got[2][0]) is bytes and bp.delivered == 10


@pytest.mark.parametrize("loopback", [True, False])
def test_parts_hold_their_connection_only_for_a_loopback_endpoint(loopback):
    """Over a network every connection must keep being read (its TCP window), so only
    an endpoint on this machine lets parts after the head stop reading."""
    holds: list[str] = []

    class Conn:
        def hold_reading(self) -> None:
            holds.append("hold")

        def release_reading(self) -> None:
            holds.append("release")

    m = types.SimpleNamespace(on_body=None, loopback=loopback, cbq=types.SimpleNamespace(post=lambda *a, **k: None))
    order = meta._InOrder(m, 10, 100, 1, lambda idx, size: None)  # type: ignore[arg-type]
    order.new_part(1)
    bp = order.new_part(2)
    bp.attach(Conn())
    bp.new_attempt()
    bp.on_head(206, [("Content-Range", "bytes 20-29/100"), ("Content-Length", "10")])

    async def feed_all() -> None:  # holding arms a timer on the running loop
        for _ in range(3):
            bp.feed(b"z" * (meta.HOLD_AFTER // 2))
        bp.detach()

    asyncio.run(feed_all())
    assert holds == (["hold", "release"] if loopback else [])
    assert bp.buffered == 3 * (meta.HOLD_AFTER // 2)


def test_the_head_never_holds_its_own_connection():
    """The head gathers a response it cannot hand on as it comes (an unexpected
    Content-Range): that must not stop its own connection, nothing would release it."""
    holds: list[str] = []
    conn = types.SimpleNamespace(hold_reading=lambda: holds.append("hold"),
                                 release_reading=lambda: holds.append("release"))
    m = types.SimpleNamespace(on_body=None, loopback=True, cbq=types.SimpleNamespace(post=lambda *a, **k: None))
    order = meta._InOrder(m, 10, 100, 1, lambda idx, size: None)  # type: ignore[arg-type]
    head = order.new_part(1)
    head.attach(conn)
    head.new_attempt()
    head.on_head(206, [("Content-Range", "bytes 0-9/100"), ("Content-Length", "10")])

    async def feed() -> None:
        head.feed(b"q" * (2 * meta.HOLD_AFTER))
        head.detach()

    asyncio.run(feed())
    assert holds == [] and head.buffered == 2 * meta.HOLD_AFTER


def test_the_head_part_goes_on_as_it_arrives(server, monkeypatch):
    """Pieces of the head part are handed on from feed (as they arrive), not only when
    the part is complete; what gets to on_body is the object, in order."""
    streamed: list[int] = []
    feed = meta._BodyPart.feed

    def watching_feed(self: Any, data: bytes) -> None:
        if self.streaming and self.verified:
            streamed.append(len(data))
        feed(self, data)

    monkeypatch.setattr(meta._BodyPart, "feed", watching_feed)
    data, calls = _collect(server, 6 * MIB + 3, MIB)
    assert b"".join(c for c, _ in calls) == data
    assert sum(streamed) > 0


@pytest.mark.skipif(os.environ.get("CRTPY_LONG_TESTS") != "1", reason="long: set CRTPY_LONG_TESTS=1")
def test_random_faults_never_change_what_on_body_sees(moto_server):  # noqa: F811
    """25 downloads, each with 1-4 parts cut midway or answered 500/503 once or twice:
    on_body always sees the object, in order, each byte once."""
    import random

    part = 5 * MIB
    data = os.urandom(7 * part + 12345)
    bucket = _moto_object(moto_server, data)
    proxy = FaultProxy(moto_server.port)
    rnd = random.Random(1)
    try:
        c = make_client(proxy.port, part_size=part, retry_config=S3RetryConfig(max_retries=5, backoff_scale_factor_ms=1))
        for _ in range(25):
            proxy.clear()
            for p in rnd.sample(range(1, 8), rnd.randint(1, 4)):
                proxy.add_rule(lambda m, pth, h, s=p * part: m == "GET" and h.get("range", "").startswith(f"bytes={s}-"),
                               rnd.choice(["drop_response", "drop_response", "503", "500"]), rnd.randint(1, 2))
            rec = Recorder()
            req = c.make_request(type=S3RequestType.GET_OBJECT, request=http_request("GET", proxy.port, bucket, "k"),
                                 **rec.callbacks())
            assert req.finished_future.exception(120) is None
            assert rec.body() == data
            assert rec.progress == len(data)
    finally:
        proxy.close()


@pytest.mark.parametrize("loopback", [True, False])
def test_memory_limit_bounds_what_waits_for_a_slow_on_body(server, monkeypatch, loopback):
    """memory_limit of two parts and an on_body slower than the server: the bytes
    received and not yet through on_body never exceed memory_limit (whether parts
    after the head hold their connection or gather their whole part)."""
    import time

    part = MIB
    limit = 2 * part
    fed = [0]
    feed = meta._BodyPart.feed

    def counting_feed(self: Any, data: bytes) -> None:
        fed[0] += len(data)
        feed(self, data)

    monkeypatch.setattr(meta._BodyPart, "feed", counting_feed)
    monkeypatch.setattr(meta, "is_loopback_host", lambda host: loopback)
    data = os.urandom(10 * part + 5)
    server.objects[f"/{BUCKET}/k"] = data
    consumed = [0]
    worst = [0]
    out: list[bytes] = []

    def on_body(chunk: Any, offset: int, **_: Any) -> None:
        assert offset == consumed[0]
        # part 0 comes before the parts fed through _BodyPart
        waiting = part + fed[0] - consumed[0] if consumed[0] >= part else part - consumed[0]
        worst[0] = max(worst[0], waiting)
        consumed[0] += len(chunk)
        out.append(bytes(chunk))
        time.sleep(0.002)

    _client(part_size=part, memory_limit=limit).make_request(
        type=s3.S3RequestType.GET_OBJECT, request=_request(server, "GET", "k"),
        on_body=on_body).finished_future.result(TIMEOUT)
    assert b"".join(out) == data
    assert 0 < worst[0] <= limit
