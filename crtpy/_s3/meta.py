"""Meta requests: one user request carried out as many HTTP exchanges.

* GET_OBJECT: a first ranged GET learns the object's size and ETag; the other parts are
  fetched in parallel with ``If-Match``; body pieces are written to the file at their
  offsets as they arrive (writer threads, see ``filewrite``), or go to ``on_body`` in
  offset order: the head part's as they arrive, later parts' once they are the head
  (``_InOrder``; with a full-object CRC to compute, whole parts).
* PUT_OBJECT: one PUT up to the threshold, else CreateMultipartUpload, parallel
  UploadParts from pooled part buffers, CompleteMultipartUpload; AbortMultipartUpload on
  failure or cancel.
* DEFAULT: one signed request, retried.

Everything here runs on the client's loop thread; blocking work (file I/O, hashing) goes
to ``run_blocking``; user callbacks go through the request's ``CallbackQueue``.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._errors import code_of, error
from .._http.body import _raw, known_length, read_into
from .._runtime.blocking import run_blocking as _run_blocking
from .._runtime.callbacks import CallbackQueue, invoke
from . import checksums as C
from . import xml as X
from .alloc import raise_trim_threshold
from .client import (
    MAX_PARTS,
    MIN_UPLOAD_PART,
    ClientImpl,
    connections_for,
    is_loopback_host,
    loopback_connections,
    sign,
)
from .conn import ExchangeError, Response
from .express import SESSION_TARGET, USER_AGENT, SessionFailure
from .filewrite import FileWriter, PartStream

_log = logging.getLogger("crtpy.s3")

GET_OBJECT, PUT_OBJECT = 1, 2
V4, V4_S3EXPRESS = 0, 2
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_RETRY_STATUS = {500, 502, 503, 504}
_RETRY_CODES = {"SlowDown", "InternalError", "RequestTimeout", "RequestTimeTooSkewed", "ServiceUnavailable",
                "Throttling", "ThrottlingException", "RequestLimitExceeded", "BandwidthLimitExceeded"}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
# headers of the user's PutObject that are not passed to CreateMultipartUpload
_NOT_FOR_CREATE = {"content-length", "content-md5", "x-amz-sdk-checksum-algorithm", "x-amz-trailer",
                   "x-amz-decoded-content-length", "expect", "transfer-encoding", "x-amz-content-sha256"}
_FOR_PART = ("x-amz-server-side-encryption-customer-", "x-amz-request-payer", "x-amz-expected-bucket-owner")


class Failure(Exception):
    """Why a meta request failed (converted to the user's error at the end)."""

    def __init__(self, name: str, message: str = "", *, response: Response | None = None,
                 operation: str | None = None, retryable: bool = False) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message
        self.response = response
        self.operation = operation
        self.retryable = retryable


def _names_range(value: str | None, start: int, end: int) -> bool:
    """Whether the Content-Range ``value`` names bytes ``start``..``end``."""
    m = _CONTENT_RANGE.match(value or "")
    return m is not None and (int(m.group(1)), int(m.group(2))) == (start, end)


def _first(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def _drop(headers: Sequence[tuple[str, str]], names: Any) -> list[tuple[str, str]]:
    return [(n, v) for n, v in headers if n.lower() not in names]


def encode_head(method: str, target: str, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    for n, v in headers:
        if "\r" in n or "\n" in n or "\r" in v or "\n" in v:
            raise error("AWS_ERROR_HTTP_INVALID_HEADER_VALUE", f"bad header {n!r}")
        lines.append(f"{n}: {v}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def _with_query(path: str, query: str) -> str:
    return path + ("&" if "?" in path else "?") + query


# --- blocking helpers (I/O worker threads) -----------------------------------------------------
_T = TypeVar("_T")


def _unbox(fn: Callable[..., _T], box: list[Any]) -> _T:
    return fn(*box)


async def run_blocking(fn: Callable[..., _T], *args: Any) -> _T:
    """``run_blocking`` whose arguments are dropped once the call is over (an idle I/O
    worker may keep a reference to its last work item, which must not pin part buffers
    or the user's body stream)."""
    box = list(args)
    try:
        return await _run_blocking(_unbox, fn, box)
    finally:
        box.clear()


def _pread_full(fd: int, view: memoryview, offset: int) -> int:
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            break
        got += n
    return got


_DIRECT_ALIGN = 4096


def _open_direct(path: str, flags: int = os.O_RDONLY) -> int | None:
    """A second, O_DIRECT descriptor of ``path`` for reads that bypass the page cache,
    or None where the platform or filesystem refuses it (tmpfs, for one)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        _log.debug("direct_io: O_DIRECT is not available here; reading through the page cache")
        return None
    try:
        return os.open(path, flags | flag)
    except OSError as exc:
        _log.debug("direct_io: %s refuses O_DIRECT (%s); reading through the page cache", path, exc)
        return None


class _FileSource:
    """How an upload reads ``send_filepath``: the plain descriptor, plus (direct_io) an
    O_DIRECT one used for aligned reads into page-aligned buffers, and (should_stream)
    page-cache pages dropped once a part has been read."""

    def __init__(self, fd: int, direct_fd: int | None, drop_cache: bool) -> None:
        self.fd = fd
        self.direct_fd = direct_fd
        self.drop_cache = drop_cache and hasattr(os, "posix_fadvise")
        self.direct_ok = direct_fd is not None
        self.direct_reads = 0

    def new_buffer(self, size: int) -> memoryview:
        if self.direct_fd is None:
            return memoryview(bytearray(size))
        import mmap

        # anonymous mappings are page aligned, as O_DIRECT needs
        return memoryview(mmap.mmap(-1, -(-max(size, 1) // _DIRECT_ALIGN) * _DIRECT_ALIGN))

    def read(self, buf: memoryview, want: int, offset: int, algorithm: int | None) -> tuple[int, Any]:
        """Read ``want`` bytes at ``offset`` into the start of ``buf`` (a buffer from
        ``new_buffer``); returns (bytes read, checksum state)."""
        n = -1
        if self.direct_ok and offset % _DIRECT_ALIGN == 0 and self.direct_fd is not None:
            aligned = -(-want // _DIRECT_ALIGN) * _DIRECT_ALIGN
            if len(buf) >= aligned:
                try:
                    n = min(_pread_full(self.direct_fd, buf[:aligned], offset), want)
                    self.direct_reads += 1
                except OSError as exc:
                    _log.debug("direct_io read failed (%s); reading through the page cache", exc)
                    self.direct_ok = False
        if n < 0:
            n = _pread_full(self.fd, buf[:want], offset)
        if self.drop_cache and n:
            os.posix_fadvise(self.fd, offset, n, os.POSIX_FADV_DONTNEED)
        return n, _hash(algorithm, buf[:n])

    def close(self) -> None:
        if self.direct_fd is not None:
            os.close(self.direct_fd)
            self.direct_fd = None


def _hash(algorithm: int | None, data: Any) -> Any:
    if algorithm is None:
        return None
    h = C.Hasher(algorithm)
    h.update(data)
    return h


def _hash_pieces(algorithm: int | None, pieces: Sequence[Any]) -> Any:
    if algorithm is None:
        return None
    h = C.Hasher(algorithm)
    h.update_all(pieces)
    return h


def _stream_fill(stream: Any, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = read_into(stream, view[got:])
        if n is None:
            continue
        if n == 0:
            break
        got += n
    return got


def _hash_file(fd: int, offset: int, length: int, algorithm: int) -> Any:
    """(worker) The checksum of ``length`` bytes of the file at ``offset`` (a part that
    was streamed to the file before the algorithm to check it with was known)."""
    h = C.Hasher(algorithm)
    buf = bytearray(min(length, 1024 * 1024) or 1)
    view = memoryview(buf)
    try:
        while length > 0:
            n = _pread_full(fd, view[:min(length, len(view))], offset)
            if n == 0:
                break
            h.update(view[:n])
            offset += n
            length -= n
    finally:
        view.release()
    return h


async def _shielded(task: asyncio.Future[Any]) -> bool:
    """Wait until ``task`` is done, through any cancellation of the waiting task;
    whether one arrived meanwhile."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                break
            cancelled = True
    return cancelled


async def _to_the_end(coro: Any) -> None:
    """Run cleanup to its end even if the waiting task is cancelled meanwhile; the
    cancellation is raised afterwards."""
    task = asyncio.ensure_future(coro)
    if await _shielded(task):
        raise asyncio.CancelledError
    task.result()


def _close_and_unlink(fd: int, path: str | None) -> None:
    os.close(fd)
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


async def _open(path: str, flags: int, mode: int = 0o666, *, remove: bool = False) -> int:
    """``os.open`` on an I/O worker.  Cancelled while the open is under way, it waits for
    it and closes the descriptor (removing a file it created when ``remove``), so that
    a cancelled request leaves neither an open descriptor nor a file behind."""
    task = asyncio.ensure_future(run_blocking(os.open, path, flags, mode))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            fd = await _wait_out(task)
        except BaseException:  # noqa: BLE001 - the open failed: nothing to undo
            raise asyncio.CancelledError from None
        await _wait_out(asyncio.ensure_future(run_blocking(_close_and_unlink, fd, path if remove else None)))
        raise


async def _open_or_none(path: str, flags: int = os.O_RDONLY) -> int | None:
    """``_open_direct`` on an I/O worker; a cancel waits for it and closes what it opened."""
    task = asyncio.ensure_future(run_blocking(_open_direct, path, flags))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        fd = await _wait_out(task)
        if fd is not None:
            await _wait_out(asyncio.ensure_future(run_blocking(os.close, fd)))
        raise


async def _wait_out(task: asyncio.Future[_T]) -> _T:
    """The result of ``task``, waiting for it even through further cancellations."""
    await _shielded(task)
    return task.result()


def _says_full_object(resp: Response) -> bool:
    """The server states that its checksum covers the whole object (not a checksum of
    part checksums): only then can part CRCs be combined and compared with it."""
    return (resp.header("x-amz-checksum-type") or "").strip().upper() == "FULL_OBJECT"


def _covers_object(resp: Response, value: str) -> bool:
    """Whether a checksum in a response may be compared with the object's bytes.  A
    multipart object's checksum is a checksum of its part checksums unless the server
    says FULL_OBJECT; some servers (moto) drop the ``-N`` suffix and the type, so the
    ETag's ``-N`` suffix also marks a multipart object.  Those are skipped, like the
    reference does, rather than reported as a mismatch of a correct object."""
    if _says_full_object(resp):
        return True
    if re.search(r"-\d+$", value.strip()):
        return False
    kind = (resp.header("x-amz-checksum-type") or "").strip().upper()
    if kind and kind != "FULL_OBJECT":
        return False
    etag = (resp.header("etag") or "").strip().strip('"')
    return re.search(r"-\d+$", etag) is None


def _is_ranged(resp: Response) -> bool:
    """A reply to a ranged GET that holds a range: 206, or a 200 carrying a byte
    Content-Range (rclone's ``serve s3`` answers ranges so); a 200 without one holds the
    whole object."""
    if resp.status == 206:
        return True
    return resp.status == 200 and _CONTENT_RANGE.match(resp.header("content-range") or "") is not None


class _Gate:
    """Counts progress of in-order delivery; workers wait until their part may proceed."""

    def __init__(self) -> None:
        self.acked = 0
        self._event = asyncio.Event()

    def advance(self, value: int) -> None:
        self.acked = value
        self._event.set()

    async def wait_for(self, minimum: int) -> None:
        while self.acked < minimum:
            self._event.clear()
            await self._event.wait()


class _BodyPart:
    """(loop) One part of a GET whose body goes to ``on_body`` (see :class:`_InOrder`).

    While an earlier part is still being delivered, the part's pieces are gathered;
    once it is the head, they go on and so does every later piece as it arrives.  A
    retry starts the part again: the bytes an earlier attempt handed on already are
    skipped, so that each byte reaches ``on_body`` once, at its offset.  Pieces go on
    as they arrive only when the response is the range asked for (status and
    Content-Range); any other response is gathered and left to the part's check."""

    __slots__ = ("buffered", "complete", "conn", "delivered", "held", "hold_timer", "idx", "length", "may_hold",
                 "owner", "pieces", "received", "start", "streaming", "verified")

    def __init__(self, owner: _InOrder, idx: int, start: int, length: int) -> None:
        self.owner = owner
        self.idx = idx
        self.start = start
        self.length = length
        self.pieces: list[bytes] = []  # this attempt's bytes from its first, not handed on
        self.received = 0  # bytes of this attempt
        self.delivered = 0  # bytes of the part handed on (by any attempt)
        self.streaming = False  # the head: pieces go on as they arrive
        self.verified = False  # this attempt's response is the range asked for
        self.complete = False
        self.buffered = 0  # bytes in ``pieces``
        self.conn: Any = None  # the connection of the current attempt (see _exchange)
        self.held = False  # that connection is not read (see feed)
        self.may_hold = owner.hold
        self.hold_timer: asyncio.TimerHandle | None = None

    def new_attempt(self) -> None:
        self.pieces = []
        self.buffered = 0
        self.received = 0
        self.verified = False
        self.may_hold = self.owner.hold

    def attach(self, conn: Any) -> None:
        self.conn = conn

    def detach(self) -> None:
        self._release()
        self.conn = None

    def _hold(self) -> None:
        conn = self.conn
        if conn is None:
            return
        self.held = True
        conn.hold_reading()
        self.hold_timer = asyncio.get_running_loop().call_later(HOLD_MAX_SEC, self._hold_expired)

    def _release(self) -> None:
        timer, self.hold_timer = self.hold_timer, None
        if timer is not None:
            timer.cancel()
        if self.held:
            self.held = False
            if self.conn is not None:
                self.conn.release_reading()

    def _hold_expired(self) -> None:
        # the head part is slow: gather this one after all rather than let its
        # connection sit idle towards the exchange's idle timeout
        self.hold_timer = None
        self.may_hold = False
        self._release()

    def on_head(self, status: int, headers: list[tuple[str, str]]) -> None:
        """The response head of the current attempt (before its body).  Its pieces may
        go on as they arrive only when the part's check is bound to pass once the body
        is in: the range asked for (status, Content-Range) framed by a Content-Length of
        exactly the part's length (no chunked body of unknown length).  Bytes handed on
        are never handed on again, so an attempt that the check then rejects (a body of
        another length, extra bytes before the range's) must never have handed on any."""
        if status not in (200, 206):
            return
        if not _names_range(_first(headers, "content-range"), self.start, self.start + self.length - 1):
            return
        length = (_first(headers, "content-length") or "").strip()
        if not (length.isascii() and length.isdigit()) or int(length) != self.length:
            return
        if _first(headers, "transfer-encoding") is not None:
            return
        self.verified = True

    def feed(self, data: bytes) -> None:
        pos = self.received
        self.received = pos + len(data)
        if self.streaming and self.verified:
            self._hand_on(data, pos)
        else:
            self.pieces.append(data)
            self.buffered += len(data)
            if self.buffered >= HOLD_AFTER and self.may_hold and not self.held and not self.streaming:
                # enough gathered ahead of the head: the rest waits in the socket
                # (the kernel's buffers, then TCP flow control) until this part is
                # the head, so the loop's reads go to the part being handed on
                self._hold()

    def promote(self) -> None:
        """Every part before this one has been handed on."""
        self.streaming = True
        self._release()
        if self.verified:
            self.flush()

    def flush(self) -> None:
        pieces, self.pieces = self.pieces, []
        pos = 0
        for p in pieces:
            self._hand_on(p, pos)
            pos += len(p)

    def _hand_on(self, data: bytes, pos: int) -> None:
        # bytes [pos, pos + len(data)) of this attempt, but none an earlier attempt
        # handed on and none past the part's end (a longer body fails the part's check)
        n = len(data)
        begin = self.delivered
        end = min(pos + n, self.length)
        if end <= begin:
            return
        if begin > pos or end < pos + n:
            data = bytes(memoryview(data)[max(begin, pos) - pos:end - pos])
            begin = max(begin, pos)
        else:
            begin = pos
        self.owner.hand_on(data, self.start + begin)
        self.delivered = end


#: bytes handed to on_body per callback-queue item while a part streams
HAND_ON_BATCH = 2 * 1024 * 1024
#: a part after the head gathers this many bytes, then its connection is not read until
#: it is the head (at most HOLD_MAX_SEC: well within the exchange's idle timeout; for
#: endpoints on this machine only, see _InOrder.hold).
#: Measured on the 2-CPU VM, 1 GiB from nginx in fresh processes, against whole parts
#: gathered: 5,600 instead of 10,900 page faults, nginx 0.21 instead of 0.27 CPU-s/GiB,
#: 2.96 instead of 2.74 GB/s (medians of 8 alternating runs)
HOLD_AFTER = 2 * 1024 * 1024
HOLD_MAX_SEC = 5.0


def _call_on_body(meta: MetaRequest, batch: list[tuple[bytes, int]]) -> None:
    """(callback worker) ``on_body`` for each piece of a batch, in order.  What it raises
    fails the request with that exception (as in the reference): the rest of the batch,
    and every later batch, is dropped (see :meth:`MetaRequest.user_failed`)."""
    on_body = meta.on_body
    assert on_body is not None
    for chunk, offset in batch:
        if meta.user_error is not None:
            break
        try:
            on_body(chunk=chunk, offset=offset)
        except BaseException as exc:  # noqa: BLE001 - handed to the request, not lost
            meta.user_failed(exc)
            break
    batch.clear()


class _InOrder:
    """(loop) Hands the parts of a GET to ``on_body`` in offset order, the head part's
    pieces as they arrive (not once the whole part is in): the memory held is the
    parts after the head, and the heap the pieces come from is reused sooner."""

    def __init__(self, meta: MetaRequest, part: int, total: int, head: int,
                 part_handed_on: Callable[[int, int], None]) -> None:
        self.meta = meta
        self.part = part
        self.total = total
        self.head = head  # the part being handed on
        self.parts: dict[int, _BodyPart] = {}
        self._part_handed_on = part_handed_on
        self._on_body = meta.on_body
        self._post = meta.cbq.post
        #: parts after the head may hold their connection (see _BodyPart.feed): only
        #: for an endpoint on this machine, where one loop thread reading every
        #: connection is the limit, so reading the head's first costs nothing; over a
        #: network each connection must be drained to keep its TCP window open
        self.hold = meta.loopback
        self._batch: list[tuple[bytes, int]] = []
        self._batch_bytes = 0

    def new_part(self, idx: int) -> _BodyPart:
        start = idx * self.part
        bp = _BodyPart(self, idx, start, min(self.total, start + self.part) - start)
        self.parts[idx] = bp
        if idx == self.head:
            bp.streaming = True
        return bp

    def hand_on(self, chunk: bytes, offset: int) -> None:
        if self._on_body is None:
            return
        self._batch.append((chunk, offset))
        self._batch_bytes += len(chunk)
        if self._batch_bytes >= HAND_ON_BATCH:
            self.post_batch()

    def post_batch(self) -> None:
        """Queue the pieces gathered for on_body as one callback-queue item (one
        wake-up of the callback worker per batch, not per piece)."""
        batch, self._batch = self._batch, []
        self._batch_bytes = 0
        if batch:
            self._post(_call_on_body, self.meta, batch)

    def part_complete(self, idx: int) -> None:
        """Part ``idx`` passed its check: hand on what is left of it, and of the parts
        after it that are complete too; the next one becomes the head."""
        self.parts[idx].complete = True
        parts = self.parts
        while self.head in parts and parts[self.head].complete:
            bp = parts.pop(self.head)
            bp.flush()
            self.post_batch()
            self._part_handed_on(self.head, bp.length)
            self.head += 1
        nxt = parts.get(self.head)
        if nxt is not None:
            nxt.promote()


class MetaRequest:
    def __init__(self, client: ClientImpl, *, type: int, request: Any, operation_name: str | None,
                 recv_filepath: str | None, send_filepath: str | None, signing_config: Any,
                 checksum_config: Any, part_size: int | None, multipart_upload_threshold: int | None,
                 fio_options: Any, max_active_connections_override: int | None,
                 on_headers: Callable[..., None] | None, on_body: Callable[..., None] | None,
                 on_done: Callable[..., None] | None, on_progress: Callable[..., None] | None,
                 region: str | None, finished_future: Any, shutdown_event: Any) -> None:
        self.client = client
        self.type = type
        self.method = request.method
        self.path = request.path
        self.headers: list[tuple[str, str]] = list(request.headers)
        self.body_stream = request.body_stream
        self.operation_name = operation_name
        self.recv_filepath = recv_filepath
        self.send_filepath = send_filepath
        self.signing = signing_config if signing_config is not None else client.signing_config
        if self.signing is not None and self.signing.credentials_provider is None:
            if client.signing_config is not None and client.signing_config.credentials_provider is not None:
                self.signing = self.signing.replace(credentials_provider=client.signing_config.credentials_provider)
            else:
                self.signing = None
        # S3 Express: sign with session credentials made by CreateSession
        self.express = self.signing is not None and int(self.signing.algorithm) == V4_S3EXPRESS
        if self.express and not client.enable_s3express:
            raise RuntimeError(f"{code_of('AWS_ERROR_INVALID_ARGUMENT')} (AWS_ERROR_INVALID_ARGUMENT): "
                               "signing with V4_S3EXPRESS needs a client made with enable_s3express=True")
        cc = checksum_config
        self.algorithm: int | None = int(cc.algorithm) if cc is not None and cc.algorithm is not None else None
        self.trailer = cc is not None and cc.location is not None and int(cc.location) == 2
        self.validate = bool(cc is not None and cc.validate_response)
        self.expected_checksum = cc.expected_checksum if cc is not None else None
        # a whole-object checksum the caller put in the PutObject headers (x-amz-checksum-ALGO)
        # while asking for no checksum: a multipart upload carries it as a full-object checksum
        self.header_checksum: tuple[int, str] | None = None
        if type == PUT_OBJECT and self.algorithm is None:
            for n, v in request.headers:
                found = C.BY_HEADER.get(n.lower())
                if found is not None:
                    self.header_checksum = (found, v.strip())
                    break
        # file I/O options of uploads from send_filepath (request-level over client-level)
        self.fio = fio_options if fio_options is not None else client.fio_options
        self.part_size = part_size or client.part_size
        self.threshold = multipart_upload_threshold or client.multipart_upload_threshold
        self.max_connections = max_active_connections_override or client.max_connections
        self.region = region or client.region
        self.on_headers = on_headers
        self.on_body = on_body
        self.on_done = on_done
        self.on_progress = on_progress
        self.finished_future = finished_future
        self.shutdown_event = shutdown_event
        self.cbq = CallbackQueue()
        host = _first(self.headers, "host")
        if not host:
            raise ValueError("the request needs a Host header (the S3 endpoint)")
        self.host_header = host
        self.host, self.port = self._split_host(host, client.tls)
        self.loopback = is_loopback_host(self.host)
        if not max_active_connections_override and not client.connections_overridden and self.loopback:
            self.max_connections = min(self.max_connections, loopback_connections())
        self.pool = client.pool_for(self.host, self.port, client.tls)
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False
        self._finished = False
        self._cancel_delivered = False
        self._headers_sent = False
        #: what on_headers or on_body raised: the request's error (set on the callback worker)
        self.user_error: BaseException | None = None
        # progress inside parts (0: per finished part, like the reference)
        self._step = client.progress_step
        self._reported: dict[int, int] = {}
        self._file_io: set[asyncio.Future[Any]] = set()
        self.did_validate = False
        self.validation_algorithm: int | None = None
        self.final_status: int | None = None
        self._src: _FileSource | None = None  # send_filepath reader of a PUT

    @staticmethod
    def _split_host(host: str, tls: bool) -> tuple[str, int]:
        default = 443 if tls else 80
        if host.startswith("["):
            end = host.find("]")
            name = host[1:end]
            rest = host[end + 1:]
            return name, int(rest[1:]) if rest.startswith(":") and rest[1:] else default
        if host.count(":") == 1:
            name, _, port = host.partition(":")
            return name, int(port) if port else default
        return host, default

    # -- lifecycle (any thread) ---------------------------------------------------------------
    def start(self) -> None:
        self.client.request_started()
        try:
            self.client.loop_thread.call_soon(self._start_on_loop)
        except BaseException:
            self.client.request_finished()
            raise

    def _start_on_loop(self) -> None:
        if self._cancelled:  # cancelled before it began: nothing to clean up
            self._finish(Failure("AWS_ERROR_S3_CANCELED", "the request was cancelled"))
            return
        self._task = asyncio.get_running_loop().create_task(self._main())
        self._task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        # a task cancelled before its first step never enters _main's try block
        if not self._finished:
            self._finish(Failure("AWS_ERROR_S3_CANCELED", "the request was cancelled") if task.cancelled()
                         else Failure("AWS_ERROR_UNKNOWN", "the request stopped unexpectedly"))

    def cancel(self) -> None:
        self._cancelled = True
        try:
            self.client.loop_thread.call_soon(self._cancel_on_loop)
        except BaseException:  # noqa: BLE001 - loop gone: nothing to cancel
            _log.debug("cancel after the client's loop stopped")

    def user_failed(self, exc: BaseException) -> None:
        """(callback worker) on_headers or on_body raised ``exc``: the request stops and
        fails with that very exception (on_done's ``error``, the finished future's
        exception), as in the reference; no on_headers/on_body call runs after it."""
        if self.user_error is None:
            self.user_error = exc
            self.cancel()

    def _post_on_body(self, chunks: list[bytes], offset: int) -> None:
        """Queue ``chunks`` (consecutive, the first at ``offset``) for on_body, as one
        callback-queue item."""
        batch = []
        for c in chunks:
            batch.append((c, offset))
            offset += len(c)
        self.cbq.post(_call_on_body, self, batch)

    def _call_on_headers(self, status_code: int, headers: list[tuple[str, str]]) -> None:
        """(callback worker) on_headers; what it raises fails the request."""
        if self.user_error is not None or self.on_headers is None:
            return
        try:
            self.on_headers(status_code=status_code, headers=headers)
        except BaseException as exc:  # noqa: BLE001 - handed to the request, not lost
            self.user_failed(exc)

    def _cancel_on_loop(self) -> None:
        # only the first cancel interrupts the task: a second one must not break into the
        # cleanup (abort, closing and removing the file) that the first one started
        if self._task is not None and not self._task.done() and not self._cancel_delivered:
            self._cancel_delivered = True
            self._task.cancel()

    async def _main(self) -> None:
        failure: Failure | None = None
        try:
            if self.type == GET_OBJECT and self.method.upper() == "GET":
                await self._get()
            elif self.type == PUT_OBJECT:
                await self._put()
            else:
                await self._default()
        except asyncio.CancelledError:
            failure = Failure("AWS_ERROR_S3_CANCELED", "the request was cancelled")
        except Failure as f:
            failure = f
        except ExchangeError as e:
            failure = Failure(getattr(e.crt_error, "name", "AWS_ERROR_UNKNOWN"),
                              getattr(e.crt_error, "message", None) or str(e.crt_error))
        except BaseException as exc:  # noqa: BLE001 - every failure reaches on_done
            name = getattr(exc, "name", None)
            if isinstance(exc, FileNotFoundError):
                name = "AWS_ERROR_FILE_INVALID_PATH"
            failure = Failure(name or "AWS_ERROR_UNKNOWN", str(exc))
            if name is None:
                _log.debug("S3 request failed", exc_info=True)
        self._finish(failure)

    def _finish(self, failure: Failure | None) -> None:
        if self._finished:
            return
        self._finished = True
        exc: BaseException | None = None
        error_headers = error_body = error_op = None
        status = self.final_status
        if failure is not None:
            from ..s3 import S3ResponseError

            resp = failure.response
            if resp is not None:
                # the reference reports an error response's status and headers through
                # on_headers too (unless a success already did)
                self._post_headers(resp.status, resp.headers)
                error_headers, error_body, error_op = resp.headers, resp.error_body or None, failure.operation
                status = resp.status
                exc = S3ResponseError(code=code_of(failure.name), name=failure.name,
                                      message=failure.message or failure.name, status_code=resp.status,
                                      headers=resp.headers, body=resp.error_body or None, operation_name=failure.operation)
            else:
                status = None
                exc = error(failure.name, failure.message or None)
        from ..s3 import S3ChecksumAlgorithm

        algo = S3ChecksumAlgorithm(self.validation_algorithm) if self.validation_algorithm else None
        validated = self.did_validate

        def done() -> None:
            # (callback worker) after every on_headers/on_body call: one that raised
            # (before or after the request's own outcome) is the request's error
            nonlocal exc, error_headers, error_body, error_op, status, validated, algo
            if self.user_error is not None:
                exc, validated, algo = self.user_error, False, None
                error_headers = error_body = error_op = status = None
            if self.on_done is not None:
                invoke(self.on_done, error=exc, error_headers=error_headers, error_body=error_body,
                       error_operation_name=error_op, status_code=status,
                       did_validate_checksum=validated, checksum_validation_algorithm=algo)
            if exc is None:
                self.finished_future.try_set_result(None)
            else:
                self.finished_future.try_set_exception(exc)
            self.shutdown_event.set()
            self.client.request_finished()

        self.cbq.post(done)

    # -- file I/O on a descriptor this request owns ------------------------------------------------
    async def _file_op(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a pread/pwrite job on an I/O worker.  A cancelled request stops waiting for
        it, but the job is remembered so its descriptor is only closed once it is over
        (a closed-and-reused descriptor number must never receive our writes)."""
        fut = asyncio.ensure_future(run_blocking(fn, *args))
        self._file_io.add(fut)
        fut.add_done_callback(self._file_io.discard)
        return await asyncio.shield(fut)

    def _track_io(self, fut: asyncio.Future[Any]) -> None:
        """Remember file I/O under way elsewhere (a writer thread) until ``fut`` is done."""
        self._file_io.add(fut)
        fut.add_done_callback(self._file_io.discard)

    async def _close_after_io(self, close: Callable[[], None]) -> None:
        while self._file_io:
            await asyncio.gather(*list(self._file_io), return_exceptions=True)
        await run_blocking(close)

    async def _close_fd(self, fd: int) -> None:
        while self._file_io:
            await asyncio.gather(*list(self._file_io), return_exceptions=True)
        await run_blocking(os.close, fd)

    # -- one exchange with retries ---------------------------------------------------------------
    async def _exchange(self, operation: str, method: str, target: str, headers: list[tuple[str, str]],
                        body: Callable[[], Sequence[Any]] | None = None,
                        sink_factory: Callable[[], tuple[Callable[[bytes], None] | None, Any]] | None = None,
                        body_value: str = UNSIGNED_PAYLOAD,
                        check: Callable[[Response, Any], Any] | None = None,
                        retries: int | None = None,
                        on_sent: Callable[[int], None] | None = None,
                        signing: Any = None) -> tuple[Response, Any]:
        """Send one request, retrying retryable failures.  ``sink_factory`` gives a fresh
        (sink, state) per attempt; ``check(response, state)`` may raise Failure (retryable
        or not) for 2xx responses.  Returns (response, state)."""
        backoff = self.client.new_backoff()
        max_retries = self.client.max_retries if retries is None else retries
        attempt = 0
        is_head = method.upper() == "HEAD"
        while True:
            hdrs = [("Host", self.host_header)] + [(n, v) for n, v in headers if n.lower() != "host"]
            base = signing if signing is not None else self.signing
            if base is not None:
                cfg = ClientImpl.signing_config_for(base, self.region,
                                                    body_value if body_value != UNSIGNED_PAYLOAD
                                                    else (base.signed_body_value or UNSIGNED_PAYLOAD))
                if signing is None and self.express:
                    cfg = await self._express_signing(cfg)
                hdrs = await sign(cfg, method, target, hdrs)
            elif body_value != UNSIGNED_PAYLOAD or _first(hdrs, "x-amz-content-sha256") is None:
                hdrs.append(("x-amz-content-sha256", body_value))
            head = encode_head(method, target, hdrs)
            sink, state = sink_factory() if sink_factory is not None else (None, None)
            failure: Failure | None = None
            try:
                conn = await self.pool.acquire()
                fed = state if isinstance(state, (PartStream, _BodyPart)) else None
                if fed is not None:
                    fed.attach(conn)  # held (stops reading) while the file writer lags
                try:
                    resp = await conn.exchange(head, body() if body is not None else None, sink, is_head=is_head,
                                               on_sent=on_sent,
                                               on_head=state.on_head if isinstance(state, _BodyPart) else None)
                finally:
                    if fed is not None:
                        fed.detach()
                    self.pool.release(conn)
            except ExchangeError as e:
                failure = Failure(getattr(e.crt_error, "name", "AWS_ERROR_HTTP_CONNECTION_CLOSED"),
                                  getattr(e.crt_error, "message", None) or str(e.crt_error),
                                  operation=operation, retryable=True)
            else:
                if 200 <= resp.status < 300:
                    try:
                        if check is not None:
                            r = check(resp, state)
                            if asyncio.iscoroutine(r):
                                await r
                        return resp, state
                    except Failure as f:
                        failure = f
                else:
                    failure = self._status_failure(resp, operation)
            if not failure.retryable or attempt >= max_retries:
                raise failure
            attempt += 1
            delay = backoff.next_delay()
            _log.debug("%s attempt %d failed (%s); retrying in %.3fs", operation, attempt, failure.name, delay)
            await asyncio.sleep(delay)

    # -- S3 Express ------------------------------------------------------------------------------
    async def _express_signing(self, cfg: Any) -> Any:
        """``cfg`` with the credentials of an S3 Express session for this endpoint."""
        try:
            provider = await self.client.express.provider_for(self.host_header, cfg, self._create_session)
        except SessionFailure as f:
            raise Failure(f.name, f.message, operation="CreateSession") from None
        return cfg.replace(credentials_provider=provider)

    async def _create_session(self, host_header: str, cfg: Any) -> tuple[int, bytes]:
        """One CreateSession call, signed with the account credentials for s3express."""
        account = cfg.replace(algorithm=V4, service="s3express")

        def sink_factory() -> tuple[Callable[[bytes], None], list[bytes]]:
            parts: list[bytes] = []
            return parts.append, parts

        try:
            resp, parts = await self._exchange("CreateSession", "GET", SESSION_TARGET, [("User-Agent", USER_AGENT)],
                                               sink_factory=sink_factory, signing=account)
        except Failure as f:
            if f.response is not None and f.response.error_body:
                raise SessionFailure("AWS_ERROR_S3EXPRESS_CREATE_SESSION_FAILED",
                                     f"CreateSession failed with HTTP {f.response.status}"
                                     f" ({X.error_code(f.response.error_body) or 'no error code'})") from None
            raise
        return resp.status, b"".join(parts)

    @staticmethod
    def _status_failure(resp: Response, operation: str) -> Failure:
        code = X.error_code(resp.error_body) if resp.error_body else None
        msg = f"{operation} failed with HTTP {resp.status}" + (f" ({code})" if code else "")
        retryable = resp.status in _RETRY_STATUS or code in _RETRY_CODES
        if resp.status == 503 or code == "SlowDown":
            name = "AWS_ERROR_S3_SLOW_DOWN"
        elif resp.status == 500 or code == "InternalError":
            name = "AWS_ERROR_S3_INTERNAL_ERROR"
        elif code == "RequestTimeTooSkewed":
            name = "AWS_ERROR_S3_REQUEST_TIME_TOO_SKEWED"
        else:
            name = "AWS_ERROR_S3_INVALID_RESPONSE_STATUS"
        return Failure(name, msg, response=resp, operation=operation, retryable=retryable)

    def _post_headers(self, status_code: int, headers: list[tuple[str, str]]) -> None:
        """on_headers, once per request."""
        if self._headers_sent or self.on_headers is None:
            return
        self._headers_sent = True
        self.cbq.post(self._call_on_headers, status_code, headers)

    def _part_progress(self, key: int, value: int) -> None:
        """``value`` bytes of part ``key`` moved so far (in this attempt).  Reported in steps
        of at least ``progress_step``, never twice for the same bytes across retries."""
        step = self._step
        if step and self.on_progress is not None:
            delta = value - self._reported.get(key, 0)
            if delta >= step:
                self._reported[key] = value
                self.cbq.post(self.on_progress, delta)

    def _part_done(self, key: int, size: int) -> None:
        self._progress(size - self._reported.pop(key, 0))

    def _progress(self, n: int) -> None:
        if self.on_progress is not None and n:
            self.cbq.post(self.on_progress, n)

    async def _run_all(self, coros: list[Any]) -> None:
        """Run worker coroutines; the first failure cancels the others and is raised."""
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise t.exception()
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    # -- DEFAULT -------------------------------------------------------------------------------------
    async def _read_whole_body(self) -> bytes:
        if self.send_filepath is not None:
            path = self.send_filepath
            return await run_blocking(lambda: open(path, "rb").read())
        if self.body_stream is None:
            return b""
        stream = self.body_stream

        def read_all() -> bytes:
            raw = _raw(stream)
            data = raw.read()
            return bytes(data or b"")

        return await run_blocking(read_all)

    async def _default(self) -> None:
        op = self.operation_name or ("GetObject" if self.type == GET_OBJECT else "Default")
        body = await self._read_whole_body() if self.method.upper() not in ("GET", "HEAD") or \
            self.body_stream is not None or self.send_filepath is not None else b""
        headers = list(self.headers)
        if body or self.method.upper() in ("PUT", "POST"):
            headers = _drop(headers, {"content-length"}) + [("Content-Length", str(len(body)))]
        check_error = op != "GetObject"

        def sink_factory() -> tuple[Callable[[bytes], None], list[bytes]]:
            parts: list[bytes] = []
            return parts.append, parts

        def check(resp: Response, parts: list[bytes]) -> None:
            if check_error and parts:
                code = X.error_in_ok_body(parts)
                if code is not None:
                    resp.error_body = b"".join(parts)
                    raise Failure("AWS_ERROR_S3_INTERNAL_ERROR" if code == "InternalError"
                                  else "AWS_ERROR_S3_INVALID_RESPONSE_STATUS",
                                  f"{op} returned an error in a 200 response ({code})", response=resp,
                                  operation=op, retryable=code in _RETRY_CODES)

        resp, parts = await self._exchange(op, self.method, self.path, headers,
                                           (lambda: [body]) if body else None, sink_factory,
                                           self._body_value_for(body), check)
        self.final_status = resp.status
        self._post_headers(resp.status, resp.headers)
        if self.recv_filepath is not None:
            path = self.recv_filepath

            def write_all() -> None:
                with open(path, "wb") as f:
                    f.writelines(parts)

            await run_blocking(write_all)
        elif self.on_body is not None:
            self._post_on_body(parts, 0)
        self._progress(sum(len(p) for p in parts) if self.method.upper() == "GET" else len(body))

    def _body_value_for(self, body: bytes) -> str:
        if self.signing is not None and self.signing.signed_body_value is None:
            return hashlib.sha256(body).hexdigest()
        return UNSIGNED_PAYLOAD

    # -- GET_OBJECT ------------------------------------------------------------------------------------
    async def _get(self) -> None:
        if _first(self.headers, "range") is not None or "partNumber=" in self.path:
            self.operation_name = "GetObject"
            await self._default()
            return
        part = self.part_size
        base = [(n, v) for n, v in self.headers if n.lower() not in ("content-length",)]
        if self.validate and _first(base, "x-amz-checksum-mode") is None:
            base.append(("x-amz-checksum-mode", "ENABLED"))
        fd: int | None = None
        path = self.recv_filepath
        if path is not None:
            try:
                # read access too: a part checked after it was streamed is read back
                fd = await _open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666, remove=True)
            except PermissionError:
                fd = await _open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666, remove=True)
        ok = False
        try:
            await self._get_parts(base, part, fd)
            ok = True
        finally:
            if fd is not None:
                # the file is closed (and a failed download's file removed) before the
                # request completes, whatever interrupts us
                await _to_the_end(self._close_and_remove(fd, None if ok else path))

    async def _close_and_remove(self, fd: int, path: str | None) -> None:
        await self._close_fd(fd)
        if path is not None:
            try:
                await run_blocking(os.unlink, path)
            except OSError:
                pass

    async def _get_parts(self, base: list[tuple[str, str]], part: int, fd: int | None) -> None:
        validate_whole: dict[str, Any] = {}
        # with a file, each part's pieces are written as they arrive (see filewrite)
        writer = FileWriter(fd, asyncio.get_running_loop(), self._track_io) if fd is not None else None
        streams: dict[int, PartStream] = {}  # parts whose writes are not all over yet
        if writer is None:
            # the body arrives in fresh bytes objects: keep glibc from trimming (and
            # faulting in again) the heap they come from (see alloc)
            raise_trim_threshold()

        def part_sink(idx: int) -> Callable[[], tuple[Callable[[bytes], None], list[bytes]]]:
            def factory() -> tuple[Callable[[bytes], None], list[bytes]]:
                pieces: list[bytes] = []
                if not self._step:
                    return pieces.append, pieces
                got = [0]

                def sink(data: bytes) -> None:
                    pieces.append(data)
                    got[0] += len(data)
                    self._part_progress(idx, got[0])

                return sink, pieces
            return factory

        def file_sink(idx: int, algorithm: int | None) -> Callable[[], tuple[Callable[[bytes], None], PartStream]]:
            assert writer is not None
            stream = PartStream(writer, idx * part, algorithm, idx)
            streams[idx] = stream

            def factory() -> tuple[Callable[[bytes], None], PartStream]:
                stream.new_attempt()
                feed = stream.feed
                if not self._step:
                    return feed, stream

                def sink(data: bytes) -> None:
                    feed(data)
                    self._part_progress(idx, stream.received)

                return sink, stream
            return factory

        def received(state: Any) -> int:
            if isinstance(state, (PartStream, _BodyPart)):
                return state.received
            return sum(len(p) for p in state)

        async def check_first(resp: Response, pieces: Any) -> None:
            if _is_ranged(resp):
                # the first part's bytes go to offset 0: another range or an unreadable
                # one fails the attempt (retried, like the reference); none fails below
                # (its total is the object's size, so the first part's end follows from it)
                value = resp.header("content-range")
                m = _CONTENT_RANGE.match(value or "")
                if value is not None and (m is None or m.group(3) == "*" or not _names_range(
                        value, 0, min(part, int(m.group(3))) - 1)):
                    raise Failure("AWS_ERROR_S3_INVALID_CONTENT_RANGE_HEADER",
                                  f"Content-Range {value!r} is not the range asked",
                                  operation="GetObject", retryable=True)
            # a response that holds the whole object is checked against its checksum here
            algo, value = self._response_checksum(resp)
            if algo is None or value is None:
                return
            if not _covers_object(resp, value):
                return
            whole = not _is_ranged(resp)
            if not whole:
                m = _CONTENT_RANGE.match(resp.header("content-range") or "")
                whole = bool(m and m.group(1) == "0" and m.group(3) != "*" and int(m.group(2)) + 1 == int(m.group(3)))
            if whole:
                if isinstance(pieces, PartStream):
                    # streamed to the file: checked once written, from the file
                    await pieces.finish()
                    h = await self._file_op(_hash_file, fd, 0, pieces.received, algo)
                else:
                    h = await run_blocking(_hash_pieces, algo, pieces)
                if h.b64() != value:
                    raise Failure("AWS_ERROR_S3_RESPONSE_CHECKSUM_MISMATCH",
                                  f"the {C.NAMES[algo]} checksum of the response does not match",
                                  operation="GetObject", retryable=True)
                validate_whole["done"] = algo
            elif C.is_crc(algo) and _says_full_object(resp):
                validate_whole["combine"] = (algo, value)

        try:
            await self._get_all_parts(base, part, fd, writer, streams, validate_whole, part_sink, file_sink,
                                      received, check_first)
        finally:
            for stream in list(streams.values()):
                stream.abandon()
            if writer is not None:
                writer.stop()
                # after the writer thread is over (a cancelled request stops waiting for
                # its jobs), so that a reused descriptor number never receives our writes
                await _to_the_end(self._close_after_io(writer.close))

    async def _get_all_parts(self, base: list[tuple[str, str]], part: int, fd: int | None,
                             writer: FileWriter | None, streams: dict[int, PartStream],
                             validate_whole: dict[str, Any], part_sink: Any, file_sink: Any,
                             received: Callable[[Any], int], check_first: Any) -> None:
        headers0 = base + [("Range", f"bytes=0-{part - 1}")]
        sink0 = file_sink(0, None) if writer is not None else part_sink(0)
        try:
            resp, pieces = await self._exchange("GetObject", "GET", self.path, headers0, None, sink0,
                                                check=check_first)
        except Failure as f:
            if f.response is None or f.response.status != 416:
                raise
            # an empty object has no byte 0: fetch it whole
            resp, pieces = await self._exchange("GetObject", "GET", self.path, base, None, sink0,
                                                check=check_first)
        if isinstance(pieces, PartStream):
            await pieces.finish()
            streams.pop(0, None)
        ranged = _is_ranged(resp)
        if ranged:
            m = _CONTENT_RANGE.match(resp.header("content-range") or "")
            if m is None or m.group(3) == "*":
                raise Failure("AWS_ERROR_S3_INVALID_CONTENT_RANGE_HEADER", "bad Content-Range in the response",
                              response=resp, operation="GetObject")
            total = int(m.group(3))
        else:
            total = received(pieces)
        got0 = received(pieces)
        if ranged and got0 != min(part, total):
            raise Failure("AWS_ERROR_S3_INCORRECT_CONTENT_LENGTH", "the first part has the wrong length",
                          operation="GetObject")
        if "done" in validate_whole:
            self.did_validate = True
            self.validation_algorithm = validate_whole["done"]
        combine = validate_whole.get("combine") if ranged and total > part else None
        etag = resp.header("etag")
        if (self.validate and combine is None and ranged and total > part
                and self._response_checksum(resp)[0] is None):
            # ranged replies carry no checksum: ask for the full object's (same version)
            head_headers = [(n, v) for n, v in base if n.lower() != "range"]
            if etag:
                head_headers.append(("If-Match", etag))
            head, _ = await self._exchange("HeadObject", "HEAD", self.path, head_headers)
            algo, value = self._response_checksum(head)
            if algo is not None and value and C.is_crc(algo) and _says_full_object(head):
                combine = (algo, value)
        self.final_status = 200 if resp.status in (200, 206) else resp.status
        hdrs = [(n, v) for n, v in resp.headers if n.lower() not in ("content-range", "content-length")]
        hdrs.append(("Content-Length", str(total)))
        self._post_headers(self.final_status, hdrs)
        nparts = 1 if not ranged else max(1, -(-total // part))
        crcs: list[tuple[int, int] | None] = [None] * nparts
        crc_algo = combine[0] if combine else None
        gate = _Gate()
        loop = asyncio.get_running_loop()
        ready: dict[int, list[bytes]] = {}
        state = {"next_deliver": 0, "next_claim": 1}
        window = max(2, self.max_connections * 2)
        if fd is None and self.memory_limit_parts is not None:
            window = max(1, self.memory_limit_parts)

        # file writes overlap the next fetch of the same connection, up to ``write_slots``
        # parts waiting for the disk (inline when memory_limit is set)
        write_slots = asyncio.Semaphore(max(1, self.max_connections)) if self.memory_limit_parts is None else None
        writes: set[asyncio.Future[Any]] = set()
        write_errors: list[BaseException] = []
        if writer is not None and nparts > 1 and self.recv_filepath is not None and self._direct_download():
            direct_fd = await _open_or_none(self.recv_filepath, os.O_WRONLY)
            if direct_fd is not None:
                writer.enable_direct(direct_fd, part)
        if writer is not None and nparts > 1:
            writer.preallocate(total)  # the blocks of the whole file at once (see filewrite)

        async def complete(idx: int, stream: PartStream) -> None:
            try:
                await stream.finish()
                size = stream.received
                att = stream.att
                if att is not None and att.hasher is not None:
                    crcs[idx] = (att.hasher.crc, size)
                self._part_done(idx, size)
            except BaseException as exc:  # noqa: BLE001 - raised by the fetching side
                write_errors.append(exc)
            finally:
                streams.pop(idx, None)
                if write_slots is not None:
                    write_slots.release()

        async def finish_part(idx: int, stream: PartStream) -> None:
            # the part's last writes overlap the connection's next fetch, up to
            # ``write_slots`` parts (waited for inline when memory_limit is set)
            if write_errors:
                raise write_errors[0]
            if write_slots is None:
                await complete(idx, stream)
            else:
                await write_slots.acquire()
                task = asyncio.ensure_future(complete(idx, stream))
                writes.add(task)
                task.add_done_callback(writes.discard)
            if write_errors:
                raise write_errors[0]

        async def deliver(idx: int, pieces: list[bytes]) -> None:
            size = sum(len(p) for p in pieces)
            if crc_algo is not None:
                h = await run_blocking(_hash_pieces, crc_algo, pieces)
                crcs[idx] = (h.crc, size)
            ready[idx] = pieces
            while state["next_deliver"] in ready:
                i = state["next_deliver"]
                chunks = ready.pop(i)
                offset = i * part
                if self.on_body is not None:
                    self._post_on_body(chunks, offset)
                self._part_done(i, sum(len(c) for c in chunks))
                state["next_deliver"] = i + 1
                self.cbq.post(loop.call_soon_threadsafe, gate.advance, i + 1)

        def part_check(idx: int) -> Callable[[Response, list[bytes]], None]:
            start = idx * part
            end = min(total, start + part) - 1

            def check(r: Response, got: Any) -> None:
                if not _is_ranged(r):
                    raise Failure("AWS_ERROR_S3_INVALID_RESPONSE_STATUS", f"expected 206 for a range, got {r.status}",
                                  response=r, operation="GetObject")
                # the bytes go to the offsets of the range asked for: a Content-Range naming
                # another range (or unreadable) fails the attempt, retried like the
                # reference does; a 206 without one is taken as the range asked for (so
                # does the reference), its length still checked below
                value = r.header("content-range")
                if (value is not None or r.status != 206) and not _names_range(value, start, end):
                    raise Failure("AWS_ERROR_S3_INVALID_CONTENT_RANGE_HEADER",
                                  f"part {idx}: Content-Range {value!r} is not the range asked",
                                  operation="GetObject", retryable=True)
                n = received(got)
                if n != end - start + 1:
                    raise Failure("AWS_ERROR_S3_INCORRECT_CONTENT_LENGTH", f"part {idx} has {n} bytes",
                                  operation="GetObject", retryable=True)
            return check

        def part_handed_on(idx: int, size: int) -> None:
            self._part_done(idx, size)
            self.cbq.post(loop.call_soon_threadsafe, gate.advance, idx + 1)

        # on_body without a checksum to compute over the parts: the head part's pieces
        # go on as they arrive (see _InOrder); else each part once it is complete
        inorder = _InOrder(self, part, total, 1, part_handed_on) if writer is None and crc_algo is None else None

        def body_sink(idx: int) -> Callable[[], tuple[Callable[[bytes], None], _BodyPart]]:
            assert inorder is not None
            bp = inorder.new_part(idx)

            def factory() -> tuple[Callable[[bytes], None], _BodyPart]:
                bp.new_attempt()
                if not self._step:
                    return bp.feed, bp
                feed = bp.feed

                def sink(data: bytes) -> None:
                    feed(data)
                    self._part_progress(idx, bp.received)

                return sink, bp
            return factory

        async def worker() -> None:
            while True:
                idx = state["next_claim"]
                if idx >= nparts:
                    return
                state["next_claim"] = idx + 1
                if fd is None:
                    await gate.wait_for(idx - window + 1)
                start = idx * part
                end = min(total, start + part) - 1
                hdrs_i = base + [("Range", f"bytes={start}-{end}")]
                if etag:
                    hdrs_i.append(("If-Match", etag))
                try:
                    if writer is not None:
                        sink = file_sink(idx, crc_algo)
                    elif inorder is not None:
                        sink = body_sink(idx)
                    else:
                        sink = part_sink(idx)
                    _, got = await self._exchange("GetObject", "GET", self.path, hdrs_i, None, sink,
                                                  check=part_check(idx))
                except Failure as f:
                    if f.response is not None and f.response.status == 412:
                        f.name = "AWS_ERROR_S3_OBJECT_MODIFIED"
                        f.message = "the object changed during the download"
                    raise
                if writer is not None:
                    await finish_part(idx, got)
                elif inorder is not None:
                    inorder.part_complete(idx)
                else:
                    await deliver(idx, got)
                # this frame must not keep the part alive while the next one is fetched
                del got

        try:
            if writer is not None:
                if crc_algo is not None:
                    # part 0 was streamed before the algorithm was known: hash it from the file
                    h = await self._file_op(_hash_file, fd, 0, got0, crc_algo)
                    crcs[0] = (h.crc, got0)
                self._part_done(0, got0)
            else:
                await deliver(0, pieces)
            del pieces  # part 0 must not stay in memory for the whole download
            if nparts > 1:
                n = min(self.max_connections, nparts - 1)
                if self.memory_limit_parts is not None:
                    n = max(1, min(n, self.memory_limit_parts))
                await self._run_all([worker() for _ in range(n)])
        except BaseException:
            # parts still being written are dropped: the download failed
            for stream in list(streams.values()):
                stream.abandon()
            raise
        finally:
            if write_errors:
                for stream in list(streams.values()):
                    stream.abandon()
            while writes:
                await asyncio.gather(*list(writes), return_exceptions=True)
        if write_errors:
            raise write_errors[0]
        if combine is not None:
            comb = C.CrcCombiner(combine[0])
            for item in crcs:
                assert item is not None
                comb.add(item[0], item[1])
            if comb.b64() != combine[1]:
                raise Failure("AWS_ERROR_S3_RESPONSE_CHECKSUM_MISMATCH",
                              f"the full-object {C.NAMES[combine[0]]} checksum does not match the data received",
                              operation="GetObject")
            self.did_validate = True
            self.validation_algorithm = combine[0]

    def _direct_download(self) -> bool:
        """Whether a multipart download to recv_filepath writes through O_DIRECT.

        With fio_options given, its ``direct_io`` decides (the reference applies
        fio_options to uploads only; crtpy to downloads too); $CRTPY_S3_DIRECT_DOWNLOAD=1
        turns it on without them.  The default is the page cache, as in the reference:
        on an idle machine it measured faster (2.1-2.5 GB/s for 1 GiB from nginx against
        1.4-1.5 through O_DIRECT), though its cost varies with the memory it gets (on a
        VM whose host takes back freed guest pages, writing into such pages cost up to
        ~1.5 CPU-s more per GiB) and with the kernel's dirty-page writeback; O_DIRECT is
        steadier, and keeps a huge download out of the page cache.
        """
        if self.fio is not None:
            return bool(self.fio.direct_io)
        return os.environ.get("CRTPY_S3_DIRECT_DOWNLOAD") == "1"

    @property
    def memory_limit_parts(self) -> int | None:
        limit = self.client.memory_limit
        return None if limit is None else max(1, limit // self.part_size)

    def _response_checksum(self, resp: Response) -> tuple[int | None, str | None]:
        if not self.validate:
            return None, None
        found: dict[int, str] = {}
        for n, v in resp.headers:
            a = C.BY_HEADER.get(n.lower())
            if a is not None:
                found[a] = v.strip()
        for a in C.PREFERENCE:
            if a in found:
                return a, found[a]
        return None, None

    # -- PUT_OBJECT --------------------------------------------------------------------------------------
    def _upload_part_size(self, size: int | None) -> int:
        part = max(self.part_size, MIN_UPLOAD_PART)
        if size is not None and -(-size // part) > MAX_PARTS:
            part = -(-size // MAX_PARTS)
        return part

    async def _put(self) -> None:
        size: int | None = None
        fd: int | None = None
        src: _FileSource | None = None
        path = self.send_filepath
        if path is not None:
            fd = await _open(path, os.O_RDONLY)
        try:
            if fd is not None and path is not None:
                fio = self.fio
                direct_fd = None
                if fio is not None and fio.direct_io:
                    direct_fd = await _open_or_none(path)
                src = self._src = _FileSource(fd, direct_fd, bool(fio is not None and fio.should_stream))
                size = (await run_blocking(os.fstat, fd)).st_size
            else:
                cl = _first(self.headers, "content-length")
                if cl is not None:
                    size = int(cl)
                elif self.body_stream is not None:
                    size = known_length(self.body_stream)
                else:
                    size = 0
            part = self._upload_part_size(size)
            threshold = self.threshold or max(part, self.client.part_size)
            if size is not None and size <= threshold:
                await self._put_single(fd, size)
            else:
                await self._put_multipart(fd, size, part)
        finally:
            if fd is not None:
                await _to_the_end(self._close_fd(fd))
            if src is not None and src.direct_fd is not None:
                await _to_the_end(run_blocking(src.close))

    def _body_pieces(self, view: memoryview, h: Any) -> Callable[[], Sequence[Any]]:
        if self.algorithm is None or not self.trailer:
            return lambda: [view] if len(view) else []
        from .._auth.streaming import encode_unsigned_chunk, encode_unsigned_trailer

        trailer = encode_unsigned_trailer([(C.header_name(self.algorithm), h.b64())])
        if len(view):
            pieces = [*encode_unsigned_chunk(view), trailer]
        else:
            pieces = [trailer]
        return lambda: pieces

    def _part_request(self, view: memoryview, h: Any) -> tuple[list[tuple[str, str]], Callable[[], Sequence[Any]], str]:
        pieces = self._body_pieces(view, h)
        if self.algorithm is None:
            return [("Content-Length", str(len(view)))], pieces, UNSIGNED_PAYLOAD
        name = C.header_name(self.algorithm)
        if self.trailer:
            total = sum(len(p) if not isinstance(p, memoryview) else p.nbytes for p in pieces())
            return [("Content-Encoding", "aws-chunked"), ("x-amz-decoded-content-length", str(len(view))),
                    ("x-amz-trailer", name), ("x-amz-sdk-checksum-algorithm", C.NAMES[self.algorithm]),
                    ("Content-Length", str(total))], pieces, UNSIGNED_TRAILER
        return [("Content-Length", str(len(view))), (name, h.b64()),
                ("x-amz-sdk-checksum-algorithm", C.NAMES[self.algorithm])], pieces, UNSIGNED_PAYLOAD

    def _payload_value(self, view: memoryview, base_value: str) -> str:
        if base_value == UNSIGNED_PAYLOAD and self.signing is not None and self.signing.signed_body_value is None:
            return hashlib.sha256(view).hexdigest()
        return base_value

    async def _put_single(self, fd: int | None, size: int) -> None:
        algo = self.algorithm
        src = self._src
        whole = src.new_buffer(size) if src is not None else memoryview(bytearray(size))
        view = whole[:size]
        if src is not None:
            n, h = await self._file_op(src.read, whole, size, 0, algo)
        elif self.body_stream is not None and size:
            stream = self.body_stream
            n = await run_blocking(_stream_fill, stream, view)
            h = await run_blocking(_hash, algo, view[:n])
        else:
            n, h = 0, _hash(algo, b"")
        if n != size:
            raise Failure("AWS_ERROR_S3_INCORRECT_CONTENT_LENGTH", f"the body has {n} bytes, {size} were announced")
        if h is not None and self.expected_checksum:
            h = _Fixed(self.expected_checksum)
        extra, pieces, value = self._part_request(view, h)
        value = self._payload_value(view, value) if value == UNSIGNED_PAYLOAD and self.signing is not None \
            and self.signing.signed_body_value is None else value
        headers = _drop(self.headers, {"content-length", "transfer-encoding"} | ({C.header_name(algo)} if algo else set())) + extra
        resp, _ = await self._exchange("PutObject", "PUT", self.path, headers, pieces, None, value,
                                       on_sent=lambda sent: self._part_progress(0, min(sent, size)))
        self.final_status = resp.status
        self._post_headers(resp.status, resp.headers)
        self._part_done(0, size)

    async def _put_multipart(self, fd: int | None, size: int | None, part: int) -> None:
        given: str | None = None
        type_value = "FULL_OBJECT"
        if self.header_checksum is not None:
            # like the reference: that algorithm as a trailer on every part, and the given
            # value as the full-object checksum on CompleteMultipartUpload
            self.algorithm, given = self.header_checksum
            self.trailer = True
            type_value = "full_object"
        algo = self.algorithm
        full_object = algo == C.CRC64NVME or given is not None
        create_headers = [(n, v) for n, v in self.headers
                          if n.lower() not in _NOT_FOR_CREATE and not n.lower().startswith("x-amz-checksum-")
                          and not (n.lower() == "content-encoding" and "aws-chunked" in v)]
        if algo is not None:
            create_headers.append(("x-amz-checksum-algorithm", C.NAMES[algo]))
            if full_object:
                create_headers.append(("x-amz-checksum-type", type_value))

        def collect() -> tuple[Callable[[bytes], None], list[bytes]]:
            pieces: list[bytes] = []
            return pieces.append, pieces

        def check_xml(op: str) -> Callable[[Response, list[bytes]], None]:
            def check(resp: Response, pieces: list[bytes]) -> None:
                code = X.error_in_ok_body(pieces)
                if code is not None:
                    resp.error_body = b"".join(pieces)
                    raise Failure("AWS_ERROR_S3_INTERNAL_ERROR" if code == "InternalError"
                                  else "AWS_ERROR_S3_INVALID_RESPONSE_STATUS",
                                  f"{op} returned an error ({code})", response=resp, operation=op,
                                  retryable=code in _RETRY_CODES)
            return check

        create_headers.append(("Content-Length", "0"))
        # a cancel while CreateMultipartUpload is in flight waits for its answer, so an
        # upload the server created is aborted rather than left pending
        create = asyncio.ensure_future(self._exchange(
            "CreateMultipartUpload", "POST", _with_query(self.path, "uploads"), create_headers, None, collect,
            check=check_xml("CreateMultipartUpload")))
        try:
            resp, pieces = await asyncio.shield(create)
        except asyncio.CancelledError:
            try:
                _, late = await asyncio.wait_for(create, 30)
            except BaseException:  # noqa: BLE001 - no upload id: nothing to abort
                _log.debug("CreateMultipartUpload did not finish after cancel", exc_info=True)
            else:
                late_id = X.upload_id(b"".join(late))
                if late_id:
                    await self._abort(late_id)
            raise
        upload_id = X.upload_id(b"".join(pieces))
        if not upload_id:
            raise Failure("AWS_ERROR_S3_MISSING_UPLOAD_ID", "CreateMultipartUpload returned no UploadId",
                          operation="CreateMultipartUpload")
        try:
            parts = await self._upload_parts(fd, size, part, upload_id)
            body = X.complete_body(parts, algo)
            headers = [("Content-Length", str(len(body))), ("Content-Type", "application/xml")]
            headers += [(n, v) for n, v in self.headers if n.lower().startswith(_FOR_PART)]
            if algo is not None and given is not None:
                headers += [("x-amz-checksum-type", type_value), (C.header_name(algo), given)]
            elif algo is not None and full_object and parts:
                comb = C.CrcCombiner(algo)
                for p in parts:
                    comb.add(p["crc"], p["size"])
                headers += [("x-amz-checksum-type", type_value),
                            (C.header_name(algo), self.expected_checksum or comb.b64())]
            resp, _ = await self._exchange("CompleteMultipartUpload", "POST",
                                           _with_query(self.path, f"uploadId={upload_id}"), headers,
                                           lambda: [body], collect, self._payload_value(memoryview(body), UNSIGNED_PAYLOAD),
                                           check=check_xml("CompleteMultipartUpload"))
        except BaseException:
            await _to_the_end(self._abort(upload_id))
            raise
        self.final_status = resp.status
        self._post_headers(resp.status, resp.headers)

    async def _abort(self, upload_id: str) -> None:
        try:
            await self._exchange("AbortMultipartUpload", "DELETE", _with_query(self.path, f"uploadId={upload_id}"),
                                 [("Content-Length", "0")], retries=2)
        except BaseException as exc:  # noqa: BLE001 - the original failure is what matters
            _log.warning("AbortMultipartUpload of %s failed: %s", upload_id, exc)

    async def _upload_parts(self, fd: int | None, size: int | None, part: int,
                            upload_id: str) -> list[dict[str, Any]]:
        algo = self.algorithm
        nparts = None if size is None else max(1, -(-size // part))
        results: dict[int, dict[str, Any]] = {}
        state = {"next": 0, "eof": False}
        read_lock = asyncio.Lock()
        workers = self.max_connections if nparts is None else min(self.max_connections, nparts)
        if self.memory_limit_parts is not None:
            workers = max(1, min(workers, self.memory_limit_parts))
        fio = self.fio
        if fd is not None and fio is not None and fio.should_stream and fio.disk_throughput_gbps:
            # streaming from disk: no more parts in flight than the disk can feed
            workers = max(1, min(workers, connections_for(float(fio.disk_throughput_gbps))))
        src = self._src
        part_headers = [(n, v) for n, v in self.headers if n.lower().startswith(_FOR_PART)]
        stream = self.body_stream

        async def read_next(view: memoryview) -> tuple[int, int, Any] | None:
            if fd is not None:
                idx = state["next"]
                if nparts is not None and idx >= nparts:
                    return None
                state["next"] = idx + 1
                want = min(part, size - idx * part) if size is not None else part
                assert src is not None
                n, h = await self._file_op(src.read, view, want, idx * part, algo)
                if n != want:
                    raise Failure("AWS_ERROR_S3_FILE_MODIFIED", "the file got shorter during the upload")
                return idx, n, h
            async with read_lock:
                idx = state["next"]
                if state["eof"] or (nparts is not None and idx >= nparts):
                    return None
                state["next"] = idx + 1
                want = min(part, size - idx * part) if size is not None else part
                n = await run_blocking(_stream_fill, stream, view[:want]) if stream is not None else 0
                if n < want:
                    if size is not None:
                        raise Failure("AWS_ERROR_S3_INCORRECT_CONTENT_LENGTH", "the body stream ended early")
                    state["eof"] = True
                    if n == 0 and idx > 0:
                        return None
            h = await run_blocking(_hash, algo, view[:n])
            return idx, n, h

        async def worker() -> None:
            whole = src.new_buffer(part) if src is not None else memoryview(bytearray(part))
            while True:
                item = await read_next(whole)
                if item is None:
                    return
                idx, n, h = item
                view = whole[:n]
                extra, pieces, value = self._part_request(view, h)
                if value == UNSIGNED_PAYLOAD:
                    value = self._payload_value(view, value)

                def sent_so_far(sent: int, idx: int = idx, n: int = n) -> None:
                    self._part_progress(idx, min(sent, n))

                resp, _ = await self._exchange(
                    "UploadPart", "PUT", _with_query(self.path, f"partNumber={idx + 1}&uploadId={upload_id}"),
                    part_headers + extra, pieces, None, value, on_sent=sent_so_far)
                etag = resp.header("etag")
                if not etag:
                    raise Failure("AWS_ERROR_S3_MISSING_ETAG", "UploadPart returned no ETag", response=resp,
                                  operation="UploadPart")
                results[idx] = {"number": idx + 1, "etag": etag, "size": n,
                                "checksum": h.b64() if h is not None else None,
                                "crc": h.crc if h is not None and C.is_crc(algo) else None}  # type: ignore[arg-type]
                self._part_done(idx, n)

        await self._run_all([worker() for _ in range(max(1, workers))])
        return [results[i] for i in sorted(results)]


class _Fixed:
    """A precomputed checksum value standing in for a Hasher."""

    def __init__(self, value: str) -> None:
        self.value = value

    def b64(self) -> str:
        return self.value
