"""The streaming file writer of S3 downloads (crtpy/_s3/filewrite.py), without a server:
a retried part never lets a stale write land after good data, a slow disk holds the
feeding connection (the backlog stays bounded; the loop never waits for the disk),
checksums cover the streamed pieces, O_DIRECT runs stay aligned."""
from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest

from crtpy import checksums
from crtpy._s3 import checksums as C
from crtpy._s3 import filewrite as F

TIMEOUT = 10.0


async def _stop(writer: F.FileWriter, io: list[asyncio.Future[Any]]) -> None:
    writer.stop()
    await asyncio.wait_for(asyncio.gather(*io), TIMEOUT)
    writer.close()


def test_retry_never_lets_a_stale_write_land_after_good_data(tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        io: list[asyncio.Future[Any]] = []
        writer = F.FileWriter(fd, loop, io.append)
        started, release = threading.Event(), threading.Event()
        ran: list[tuple[F.Attempt, int]] = []
        real_job = writer.job

        def job(att: F.Attempt, pieces: list[bytes], offset: int, final: bool) -> None:
            ran.append((att, offset))
            if len(ran) == 1:  # the failed attempt's first write is slow
                started.set()
                assert release.wait(TIMEOUT)
            real_job(att, pieces, offset, final)

        writer.job = job  # type: ignore[method-assign]
        stream = F.PartStream(writer, 4096, C.CRC32)
        stream.new_attempt()
        stale = stream.att
        stream.feed(b"x" * F.RUN)  # handed on: its write starts and hangs
        stream.feed(b"y" * F.RUN)  # queued behind it
        assert await loop.run_in_executor(None, started.wait, TIMEOUT)
        stream.new_attempt()  # the exchange failed midway: retry the part
        good = os.urandom(2 * F.RUN + 5)
        stream.feed(good[:F.RUN])
        stream.feed(good[F.RUN:])
        release.set()
        await asyncio.wait_for(stream.finish(), TIMEOUT)
        assert stream.received == len(good)
        assert stream.att is not None and stream.att.hasher is not None
        assert stream.att.hasher.crc == checksums.crc32(good)  # over the good attempt only
        # the stale attempt's queued write was skipped, its hung one ran before the retry's
        assert [offset for att, offset in ran if att is stale] == [4096]
        assert ran[1][0] is stream.att
        await _stop(writer, io)
        return good

    try:
        good = asyncio.run(main())
        assert os.pread(fd, 10 * F.RUN, 4096) == good
    finally:
        os.close(fd)


def test_file_holds_exactly_the_retried_bytes(tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        io: list[asyncio.Future[Any]] = []
        writer = F.FileWriter(fd, loop, io.append)
        stream = F.PartStream(writer, 0, None)
        stream.new_attempt()
        stream.feed(b"z" * (3 * F.RUN))  # a longer, failed attempt (never finished)
        stream.new_attempt()
        good = os.urandom(3 * F.RUN)
        for i in range(0, len(good), 100_000):
            stream.feed(good[i:i + 100_000])
        await asyncio.wait_for(stream.finish(), TIMEOUT)
        await _stop(writer, io)
        return good

    try:
        good = asyncio.run(main())
        assert os.pread(fd, 4 * F.RUN, 0) == good
    finally:
        os.close(fd)


class FakeConnection:
    """Stands in for an S3 connection: counts holds and releases; ``readable`` is set
    while the connection may read."""

    def __init__(self) -> None:
        self.readable = asyncio.Event()
        self.readable.set()
        self.holds = 0

    def hold_reading(self) -> None:
        self.holds += 1
        self.readable.clear()

    def release_reading(self) -> None:
        self.readable.set()

    def use_raw_pool(self, pool: object) -> None:
        self.pool = pool


def test_a_slow_disk_holds_the_connection_and_the_loop_never_waits(tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    piece = 256 * 1024
    total = 24 * 1024 * 1024

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        io: list[asyncio.Future[Any]] = []
        writer = F.FileWriter(fd, loop, io.append)
        real_job = writer.job

        def slow(att: F.Attempt, pieces: list[bytes], offset: int, final: bool) -> None:
            time.sleep(0.002)
            real_job(att, pieces, offset, final)

        writer.job = slow  # type: ignore[method-assign]
        stream = F.PartStream(writer, 0, None)
        stream.new_attempt()
        conn = FakeConnection()
        stream.attach(conn)
        block = os.urandom(piece)
        peak = 0
        for _ in range(total // piece):  # arrives much faster than it is written
            await asyncio.wait_for(conn.readable.wait(), TIMEOUT)  # a held socket reads nothing
            stream.feed(block)
            peak = max(peak, writer._backlog)
        stream.detach()
        assert conn.readable.is_set()  # never left held after its exchange
        await asyncio.wait_for(stream.finish(), TIMEOUT)
        await _stop(writer, io)
        return peak, conn.holds

    try:
        peak, holds = asyncio.run(main())
        assert os.fstat(fd).st_size == total
        assert holds > 0
        assert peak <= F.BACKLOG + F.RUN + piece
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="needs O_DIRECT")
@pytest.mark.parametrize("size", [F.DIRECT_BUFFER * 3, F.DIRECT_BUFFER * 2 + 4096 * 3 + 17])
def test_direct_writes_are_aligned_and_the_tail_goes_through_the_page_cache(tmp_path, size):
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    direct_fd = None
    try:
        direct_fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    except OSError:
        os.close(fd)
        pytest.skip("this filesystem refuses O_DIRECT")
    writes: list[tuple[int, int]] = []

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        io: list[asyncio.Future[Any]] = []
        writer = F.FileWriter(fd, loop, io.append)
        writer.enable_direct(direct_fd, 8 * 1024 * 1024)
        real = writer.direct_write

        def direct_write(view: memoryview, offset: int) -> None:
            writes.append((offset, len(view)))
            real(view, offset)

        writer.direct_write = direct_write  # type: ignore[method-assign]
        start = 8 * 1024 * 1024
        stream = F.PartStream(writer, start, C.CRC32C)
        stream.new_attempt()
        data = os.urandom(size)
        for i in range(0, size, 65_537):  # unaligned pieces
            stream.feed(data[i:i + 65_537])
        await asyncio.wait_for(stream.finish(), TIMEOUT)
        assert stream.att is not None and stream.att.hasher is not None
        assert stream.att.hasher.crc == checksums.crc32c(data)
        await _stop(writer, io)
        assert writer.direct_fd is None
        return data

    try:
        data = asyncio.run(main())
        assert os.pread(fd, size + 1, 8 * 1024 * 1024) == data
        assert all(off % 4096 == 0 and n % 4096 == 0 for off, n in writes)
        assert sum(n for _, n in writes) == size - size % 4096
    finally:
        os.close(fd)


def test_buffer_pool_reuses_the_buffers_under_written_pieces() -> None:
    from crtpy._s3.filewrite import BufferPool

    pool = BufferPool(16, keep=2)
    a, b = pool.take(), pool.take()
    assert a is not b and len(a) == len(b) == 16
    pieces = [memoryview(a)[:5], memoryview(b)[:16], b"plain bytes"]
    pool.give_pieces(pieces)
    # the views are released (a stale one can no longer read a reused buffer)
    with pytest.raises(ValueError):
        bytes(pieces[0])
    again = {id(pool.take()), id(pool.take())}
    assert again == {id(a), id(b)}
    pool.give(bytearray(8))  # not one of its size: dropped
    pool.give(a)
    pool.give(b)
    pool.give(bytearray(16))  # beyond ``keep``: dropped
    assert {id(pool.take()), id(pool.take())} == {id(a), id(b)}
