"""Streaming a multipart download into the destination file.

Each part's body pieces are written at their file offsets as they arrive, in runs of
about ``RUN`` bytes, instead of being held until the part is complete: memory per
connection is a run being written plus the run being gathered, not a part.

* :class:`FileWriter` (one per request) owns the descriptors, for O_DIRECT a small pool
  of page-aligned buffers, and up to ``LANES`` writer threads, each running the jobs
  of its lane in the order they were handed over (a part always uses the same lane).
  A job is handed over the moment a run is complete (a queue put, no hop through the
  loop), so the disk writes while the socket is read.
* :class:`PartStream` (one per part, on the loop thread) gathers the pieces of the
  current attempt.  A new attempt (a retry) marks the failed one dead: its jobs still
  queued are skipped, and since a part's jobs run in order, any write of it that is
  under way is over before the first write of the new attempt starts, so a stale
  write never lands after good data.  The part's checksum is computed over the
  pieces, run by run.
"""
from __future__ import annotations

import asyncio
import collections
import ctypes
import logging
import mmap
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import checksums as C

_log = logging.getLogger("crtpy.s3")

ALIGN = 4096
#: bytes gathered by a part before they are handed to the writer
RUN = 1024 * 1024
#: size of the page-aligned buffers that O_DIRECT writes go through (measured on the
#: 2-CPU machine, 1 GiB from nginx: 1 MiB writes cost ~10% of throughput against 2 MiB,
#: 4 MiB gained nothing more)
DIRECT_BUFFER = 2 * 1024 * 1024
#: bytes handed to the writer and not written yet, at most (per download): beyond, the
#: connections feeding it stop reading until the disk catches up (see FileWriter.hold).
#: The allowance is about ``BACKLOG_SEC`` of the download's rate so far, within
#: [BACKLOG_MIN, BACKLOG]: a fast download needs the slack (1 GiB from nginx: 4 MiB
#: measured ~15% faster than 2 MiB), while a slow server that sends in bursts (moto)
#: would otherwise fill it whenever the writer thread waits for the GIL.
BACKLOG = 4 * 1024 * 1024
BACKLOG_MIN = 1024 * 1024
BACKLOG_SEC = 0.01
#: size of the receive buffers of a download (the HTTP engine's raw reads)
RAW_PIECE = 256 * 1024
#: writer threads of one download: copying into aligned buffers and writing them are
#: serial within a thread, so two keep the disk busy while one copies
LANES = 2


#: fallocate(2) flag: reserve the blocks without changing the file's size
FALLOC_FL_KEEP_SIZE = 1
#: statfs f_type of the filesystems whose blocks are reserved ahead (see preallocate):
#: ext2/3/4 (measured) and XFS (the same extent model).  Not tmpfs, say, where it
#: allocates and zeroes the memory up front: 1 GiB took ~0.2 s in the call, no faster
#: afterwards.
PREALLOCATE_FS = frozenset({0xEF53, 0x58465342})
_libc: Any = False  # (fallocate, fstatfs) from libc, None where there is none (see _libc_calls)


def _libc_calls() -> Any:
    """libc's ``fallocate`` and ``fstatfs`` (Linux), or None.  Not ``os.posix_fallocate``:
    where the filesystem cannot preallocate, glibc emulates it by writing into every
    block, which is slow and would race with the download's own writes."""
    global _libc
    if _libc is False:
        calls = None
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fallocate, fstatfs = libc.fallocate, libc.fstatfs
                fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
                fallocate.restype = ctypes.c_int
                fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
                fstatfs.restype = ctypes.c_int
                calls = (fallocate, fstatfs)
            except (OSError, AttributeError):
                calls = None
        _libc = calls
    return _libc


def fs_type(fd: int) -> int | None:
    """The statfs ``f_type`` of the filesystem holding ``fd`` (None: unknown)."""
    calls = _libc_calls()
    if calls is None:
        return None
    buf = ctypes.create_string_buffer(512)  # struct statfs (~120 bytes), f_type first
    if calls[1](fd, buf) != 0:
        return None
    # f_type is a C long (__fsword_t) on the 32- and 64-bit ABIs
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def preallocate(fd: int, size: int) -> bool:
    """Reserve the blocks of ``[0, size)`` of ``fd`` in one go, the file's size unchanged
    (it grows with the writes, as before).  The writes then land in reserved blocks
    instead of making the filesystem allocate them extent by extent: on ext4, 1 GiB
    through the page cache cost ~0.13 instead of ~0.19 CPU-s (measured on the 2-CPU
    VM; a whole download from nginx 0.44 instead of 0.54 CPU-s), and the file is less
    fragmented.  Only on the filesystems of :data:`PREALLOCATE_FS`.  Best effort: False
    where it is not done (no such call, another filesystem, no space: the writes then
    report it)."""
    calls = _libc_calls()
    if calls is None or size <= 0 or fs_type(fd) not in PREALLOCATE_FS:
        return False
    if calls[0](fd, FALLOC_FL_KEEP_SIZE, 0, size) == 0:
        return True
    _log.debug("fallocate of %d bytes refused (errno %d); writing without", size, ctypes.get_errno())
    return False


def pwrite_all(fd: int, view: Any, offset: int) -> None:
    view = memoryview(view)
    while len(view):
        k = os.pwrite(fd, view, offset)
        view = view[k:]
        offset += k


def pwrite_pieces(fd: int, pieces: Sequence[Any], offset: int) -> None:
    i = 0
    while i < len(pieces):
        batch = pieces[i:i + 512]
        want = sum(len(p) for p in batch)
        n = os.pwritev(fd, batch, offset)
        if n != want:  # short write: finish the rest piece by piece
            pos = offset
            for p in batch:
                if n >= len(p):
                    n -= len(p)
                    pos += len(p)
                    continue
                pwrite_all(fd, memoryview(p)[n:], pos + n)
                pos += len(p)
                n = 0
        offset += want
        i += 512


class BufferPool:
    """Receive buffers of one download, reused: the HTTP engine reads body pieces into
    them (``H1Connection.raw_pool``) and the writer gives each back once its data is on
    disk.  Fresh memory per read costs page faults and zeroing, about a quarter of the
    download's CPU from a fast server."""

    def __init__(self, size: int, keep: int) -> None:
        self.size = size
        self._keep = keep
        self._free: collections.deque[bytearray] = collections.deque()

    def take(self) -> bytearray:
        """(loop) A buffer; its old contents are garbage."""
        try:
            return self._free.pop()
        except IndexError:
            return bytearray(self.size)

    def give(self, buf: bytearray) -> None:
        """(any thread) ``buf`` is free again: nothing refers to its contents any more."""
        if len(buf) == self.size and len(self._free) < self._keep:
            self._free.append(buf)

    def give_pieces(self, pieces: Sequence[Any]) -> None:
        """(writer) The buffers under ``pieces`` (memoryviews from :meth:`take`)."""
        for p in pieces:
            if type(p) is memoryview:
                buf = p.obj
                p.release()
                if type(buf) is bytearray:
                    self.give(buf)


class Attempt:
    """One attempt at one part, as the writer thread sees it."""

    __slots__ = ("buf_offset", "dead", "direct", "hasher", "lane", "pos", "slot")

    def __init__(self, start: int, algorithm: int | None, direct: bool, slot: list[Any], lane: int = 0) -> None:
        self.lane = lane
        self.hasher = C.Hasher(algorithm) if algorithm is not None else None
        self.direct = direct
        self.slot = slot  # [buffer or None], shared by the part's attempts
        self.buf_offset = start
        self.pos = 0
        self.dead = False  # set on the loop: a retry replaced it, or the download failed


Done = Callable[[BaseException | None], None]


class FileWriter:
    """Writes the parts of one download: through the page cache with ``pwritev``, or
    (after ``enable_direct``) through an O_DIRECT descriptor from page-aligned buffers,
    the unaligned end of the object through the page cache.  If the filesystem refuses
    a direct write, everything goes through the page cache from then on.  The first
    failed write fails the download (``error``)."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop,
                 track: Callable[[asyncio.Future[Any]], None]) -> None:
        self.fd = fd
        self.direct_fd: int | None = None
        self.direct_ok = False
        self.error: BaseException | None = None
        self._loop = loop
        self._track = track
        # one queue and thread per lane; a part always writes through the same lane, so
        # its jobs run in order, while parts of different lanes are written in parallel
        self._queues: list[queue.SimpleQueue[Any] | None] = [None] * LANES
        self._running = 0
        self._stopped: asyncio.Future[None] | None = None
        self._free: list[mmap.mmap] = []
        self._all: list[mmap.mmap] = []
        self._lock = threading.Lock()
        self._backlog = 0  # bytes queued, not written yet
        self._limit = BACKLOG_MIN  # the backlog allowed now (see BACKLOG)
        self._submitted = 0
        self._started: float | None = None
        self._held: list[Any] = []  # connections told to stop reading (see hold)
        self.pool = BufferPool(RAW_PIECE, BACKLOG // RAW_PIECE + 2 * RUN // RAW_PIECE * LANES)

    def enable_direct(self, direct_fd: int, part: int) -> None:
        self.direct_fd = direct_fd
        self.direct_ok = part % ALIGN == 0

    # -- loop side -----------------------------------------------------------------------
    def submit(self, att: Attempt, pieces: list[bytes], n: int, offset: int, done: Done | None) -> None:
        """Queue a write of ``pieces`` (``n`` bytes) at ``offset``; ``done`` (the part's
        last job) is called on the loop once it is over.

        Backpressure: beyond the backlog limit, :meth:`over_budget` says so and the part's
        connection is held (:meth:`hold`) until the writer catches up; the loop thread
        itself never waits for the disk."""
        q = self._queue(att.lane)
        now = time.monotonic()
        if self._started is None:
            self._started = now
        self._submitted += n
        elapsed = now - self._started
        if elapsed > 0.02:
            rate = self._submitted / elapsed
            self._limit = int(min(BACKLOG, max(BACKLOG_MIN, rate * BACKLOG_SEC)))
        with self._lock:
            self._backlog += n
        q.put((att, pieces, n, offset, done))

    def _queue(self, lane: int) -> queue.SimpleQueue[Any]:
        """(loop) The queue of ``lane``; its thread is started on first use."""
        q = self._queues[lane]
        if q is None:
            if self._stopped is None:
                self._stopped = self._loop.create_future()
                self._track(self._stopped)  # the descriptors are closed only after the threads end
            q = self._queues[lane] = queue.SimpleQueue()
            self._running += 1
            threading.Thread(target=self._run, args=(q,), name="crtpy-s3-writer", daemon=True).start()
        return q

    def preallocate(self, size: int, lane: int = 0) -> None:
        """(loop) Have ``lane``'s thread reserve the file's ``size`` bytes (see
        :func:`preallocate`) before that lane's next writes.  Writes of other lanes may
        run meanwhile: harmless, the reservation never touches data.  Through the page
        cache only (the O_DIRECT path was measured without it)."""
        if self.direct_ok or size <= 0:
            return
        self._queue(lane % LANES).put(size)

    def over_budget(self) -> bool:
        return self._backlog > self._limit and self.error is None

    def hold(self, conn: Any) -> None:
        """(loop) Stop reading ``conn`` until the backlog is back within its limit."""
        if conn in self._held:
            return
        self._held.append(conn)
        conn.hold_reading()
        if not self.over_budget():  # the writer caught up meanwhile: its release may be gone
            self.release_held()

    def unhold(self, conn: Any) -> None:
        """(loop) ``conn`` no longer feeds this writer: let it read again."""
        if conn in self._held:
            self._held.remove(conn)
            conn.release_reading()

    def release_held(self, _: Any = None) -> None:
        """(loop) Let every held connection read again."""
        held, self._held = self._held, []
        for conn in held:
            conn.release_reading()

    def stop(self) -> None:
        """No more jobs: the threads end after those queued (dead ones are skipped)."""
        for q in self._queues:
            if q is not None:
                q.put(None)

    # -- writer thread -------------------------------------------------------------------
    def _run(self, q: queue.SimpleQueue[Any]) -> None:
        get = q.get
        while True:
            item = get()
            if item is None:
                break
            if type(item) is int:  # see preallocate()
                if self.error is None:
                    preallocate(self.fd, item)
                continue
            att, pieces, n, offset, done = item
            item = None
            exc: BaseException | None = None
            try:
                if not att.dead and self.error is None:
                    self.job(att, pieces, offset, done is not None)
            except BaseException as e:  # noqa: BLE001 - fails the download (see PartStream.finish)
                exc = e
                if self.error is None:
                    self.error = e
            self.pool.give_pieces(pieces)
            pieces = []
            with self._lock:
                was = self._backlog
                self._backlog = now = was - n
            # (the limit moves with the rate: compare with it now, not at hold time)
            if (self._held and now <= self._limit) or exc is not None:
                self._call(self.release_held, None)  # held connections read on
            if done is not None:
                self._call(done, exc)
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            self._call(_settle, self._stopped)

    def _call(self, fn: Callable[..., Any], arg: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, arg)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    def _take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        buf = mmap.mmap(-1, DIRECT_BUFFER)  # anonymous mappings are page aligned
        with self._lock:
            self._all.append(buf)
        return buf

    def _give(self, buf: mmap.mmap) -> None:
        with self._lock:
            self._free.append(buf)

    def direct_write(self, view: memoryview, offset: int) -> None:
        """Write ``view`` (page-aligned, a multiple of ALIGN long) at ``offset``."""
        if self.direct_ok and self.direct_fd is not None:
            try:
                pwrite_all(self.direct_fd, view, offset)
                return
            except OSError as exc:
                _log.debug("O_DIRECT write refused (%s); writing through the page cache", exc)
                self.direct_ok = False
        pwrite_all(self.fd, view, offset)

    def job(self, att: Attempt, pieces: list[bytes], offset: int, final: bool) -> None:
        """(writer thread) Write ``pieces`` at ``offset``; ``final``: the part's last job."""
        if att.hasher is not None and pieces:
            att.hasher.update_all(pieces)
        if not att.direct:
            pwrite_pieces(self.fd, pieces, offset)
            return
        buf = att.slot[0]
        if buf is None:
            buf = att.slot[0] = self._take()
        view = memoryview(buf)
        try:
            size = len(view)
            for p in pieces:
                src = memoryview(p)
                i, n = 0, len(src)
                while i < n:
                    k = min(n - i, size - att.pos)
                    view[att.pos:att.pos + k] = src[i:i + k]
                    att.pos += k
                    i += k
                    if att.pos == size:
                        self.direct_write(view, att.buf_offset)
                        att.buf_offset += size
                        att.pos = 0
            if final:
                pos = att.pos
                aligned = pos - pos % ALIGN
                if aligned:
                    self.direct_write(view[:aligned], att.buf_offset)
                if pos > aligned:
                    pwrite_all(self.fd, view[aligned:pos], att.buf_offset + aligned)
                att.buf_offset += pos
                att.pos = 0
        finally:
            view.release()
        if final:
            att.slot[0] = None
            self._give(buf)

    def close(self) -> None:
        """(worker) Once the writer thread is over: free the buffers, close the O_DIRECT fd."""
        with self._lock:
            for buf in self._all:
                buf.close()
            self._all.clear()
            self._free.clear()
        if self.direct_fd is not None:
            os.close(self.direct_fd)
            self.direct_fd = None


def _settle(fut: asyncio.Future[None] | None, exc: BaseException | None = None) -> None:
    if fut is None or fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


class PartStream:
    """(loop) The writes of one part: ``new_attempt`` per exchange, ``feed`` per body
    piece, ``finish`` once the exchange succeeded, ``abandon`` when the download fails."""

    def __init__(self, writer: FileWriter, start: int, algorithm: int | None, lane: int = 0) -> None:
        self.writer = writer
        self.lane = lane % LANES
        self.start = start
        self.algorithm = algorithm
        self._slot: list[Any] = [None]
        self._run: list[bytes] = []
        self._run_len = 0
        self._offset = start
        self.received = 0
        self._done: asyncio.Future[None] | None = None
        self.att: Attempt | None = None
        self.conn: Any = None  # the connection feeding this attempt (see attach)

    def new_attempt(self) -> None:
        """Drop the previous attempt (its queued jobs are skipped) and restart at the
        part's first byte."""
        if self.att is not None:
            self.att.dead = True
        self._run = []
        self._run_len = 0
        self._offset = self.start
        self.received = 0
        self.att = Attempt(self.start, self.algorithm, self.writer.direct_ok, self._slot, self.lane)

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.writer.error is not None:
            return  # the download fails at finish(); keep nothing meanwhile
        self._run.append(data)
        self._run_len += len(data)
        if self._run_len >= RUN:
            self._hand_on(None)
            if self.conn is not None and self.writer.over_budget():
                self.writer.hold(self.conn)

    def attach(self, conn: Any) -> None:
        """(loop) ``conn`` carries this attempt's body: it is held while the disk lags,
        and reads the body into the writer's reused buffers."""
        self.conn = conn
        conn.use_raw_pool(self.writer.pool)

    def detach(self) -> None:
        """(loop) The exchange is over: its connection must not stay held."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.use_raw_pool(None)
            self.writer.unhold(conn)

    def _hand_on(self, done: Done | None) -> None:
        assert self.att is not None
        pieces, n = self._run, self._run_len
        self._run, self._run_len = [], 0
        offset = self._offset
        self._offset += n
        self.writer.submit(self.att, pieces, n, offset, done)

    async def finish(self) -> None:
        """Hand on the rest and wait until every byte of this attempt is written."""
        att = self.att
        assert att is not None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._done = fut
        self._hand_on(lambda exc: _settle(fut, exc))
        await fut
        if self.writer.error is not None:
            raise self.writer.error
        if att.dead:
            raise asyncio.CancelledError

    def abandon(self) -> None:
        """(failure, cancel) Skip this part's queued writes; ``finish`` gives up."""
        if self.att is not None:
            self.att.dead = True
        self._run = []
        self._run_len = 0
        _settle(self._done)
