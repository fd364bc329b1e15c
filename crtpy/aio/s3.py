"""asyncio front-end of :mod:`crtpy.s3` (a crtpy extension).

:func:`download`, :func:`upload` and :func:`make_request` start a request on a
:class:`crtpy.s3.S3Client` and return an :class:`AioS3Request`, which is both awaitable
and an async iterator over the response body::

    data = await download(client, request)                 # the whole body
    async with download(client, request) as body:          # or chunk by chunk, in order
        async for chunk in body:
            sink.write(chunk)
    await upload(client, put_request)                       # completion only

Call them from a running loop; everything is delivered on that loop.  A request that
fails raises its error (an :class:`crtpy.s3.S3ResponseError` for an error response)
from ``await`` or from the iteration.

Backpressure: at most ``max_buffered_bytes`` of body (8 MiB by default, or one chunk if
larger) wait unread.  Beyond that, the delivery of the request's body waits for the
reader, which in turn holds back the parts still to be fetched (crtpy's S3 client
keeps a bounded window of parts ahead of the body delivered).

Cancellation: cancelling a task that awaits or iterates the request cancels the S3
request (``AWS_ERROR_S3_CANCELED``; a multipart upload in progress is aborted).  So does
leaving ``async with`` before the end, :meth:`AioS3Request.cancel`, and dropping the
object.
"""
from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Generator
from typing import Any

from ..auth import AwsCredentialsProvider, AwsSigningConfig
from ..http import HttpRequest
from ..s3 import S3ChecksumConfig, S3Client, S3FileIoOptions, S3Request, S3RequestType
from ._bridge import AsyncStream

__all__ = ["AioS3Request", "download", "make_request", "upload"]

DEFAULT_MAX_BUFFERED_BYTES = 8 * 1024 * 1024


class _Body:
    """The body chunks between crtpy's callback thread (producer, may wait here) and the
    reader on the loop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffered = 0
        self.stopped = False
        self.cond = threading.Condition(threading.Lock())
        self.stream: AsyncStream[bytes] = AsyncStream(1 << 40, on_consume=self.consumed)
        self.status_code: int | None = None
        self.headers: list[tuple[str, str]] | None = None
        self.transferred = 0
        self.request: S3Request | None = None

    # crtpy callback thread
    def on_body(self, chunk: Any, offset: int = 0, **kwargs: Any) -> None:
        data = chunk if type(chunk) is bytes else bytes(chunk)
        n = len(data)
        with self.cond:
            while self.buffered > 0 and self.buffered + n > self.limit and not self.stopped:
                self.cond.wait()
            if self.stopped:
                return
            self.buffered += n
        self.stream.push_threadsafe(data)

    def finished(self, fut: Any) -> None:
        exc = None if fut.cancelled() else fut.exception()
        # Forget the request: the finalizer of the AioS3Request holds this object, and
        # the request's error (whose traceback may hold the AioS3Request) must not
        # become reachable from there.
        self.request = None
        self.stream.end_threadsafe(exc)

    # loop
    def consumed(self, chunk: bytes) -> None:
        with self.cond:
            self.buffered -= len(chunk)
            self.cond.notify()

    def stop(self) -> None:
        """No reader any more: release the producer and cancel the request."""
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        req = self.request
        if req is not None and not req.finished_future.done():
            req.cancel()


def _stop_if_alive(ref: weakref.ref[_Body]) -> None:
    body = ref()
    if body is not None:
        body.stop()


class AioS3Request:
    """An S3 request started by :func:`make_request`, :func:`download` or :func:`upload`.

    ``await req`` waits for the end and returns the body not yet read (all of it when
    nothing was iterated; ``b""`` for uploads and ``recv_filepath`` downloads).
    ``async for chunk in req`` yields the body in order and ends when the request
    succeeds (or raises its error).  :attr:`request` is the underlying
    :class:`crtpy.s3.S3Request`.
    """

    def __init__(self, body: _Body, request: S3Request) -> None:
        self._body = body
        self.request = request
        # Weakly: the body may hold the request's error, whose traceback may hold this
        # object; a strong reference from the finalizer registry would keep it forever.
        self._finalizer = weakref.finalize(self, _stop_if_alive, weakref.ref(body))

    @property
    def status_code(self) -> int | None:
        """The response's status, once its headers have arrived."""
        return self._body.status_code

    @property
    def headers(self) -> list[tuple[str, str]] | None:
        """The response's headers, once they have arrived."""
        return self._body.headers

    @property
    def bytes_transferred(self) -> int:
        """Bytes transferred so far, as counted by the progress callback."""
        return self._body.transferred

    @property
    def done(self) -> bool:
        return bool(self.request.finished_future.done())

    def cancel(self) -> None:
        """Cancel the request (no effect once it has finished)."""
        self._body.stop()

    # -- iteration ---------------------------------------------------------------------------
    def __aiter__(self) -> AioS3Request:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._body.stream.__anext__()
        except asyncio.CancelledError:
            self._body.stop()
            raise

    async def __aenter__(self) -> AioS3Request:  # noqa: PYI034
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self.request.finished_future.done():
            self._body.stop()

    # -- completion --------------------------------------------------------------------------
    async def wait(self) -> bytes:
        """Wait for the end of the request; returns the body not yet read."""
        parts = [chunk async for chunk in self]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def __await__(self) -> Generator[Any, None, bytes]:
        return self.wait().__await__()


def make_request(client: S3Client, *, type: S3RequestType, request: HttpRequest,
                 operation_name: str | None = None, recv_filepath: str | None = None,
                 send_filepath: str | None = None, signing_config: AwsSigningConfig | None = None,
                 credential_provider: AwsCredentialsProvider | None = None,
                 checksum_config: S3ChecksumConfig | None = None, part_size: int | None = None,
                 multipart_upload_threshold: int | None = None, fio_options: S3FileIoOptions | None = None,
                 max_active_connections_override: int | None = None,
                 on_headers: Callable[..., None] | None = None,
                 on_progress: Callable[..., None] | None = None,
                 max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES) -> AioS3Request:
    """Start a request on ``client`` (arguments as for :meth:`crtpy.s3.S3Client.make_request`;
    the body comes through the returned object instead of ``on_body``/``on_done``).
    ``on_headers`` and ``on_progress``, if given, still run on a crtpy callback thread.
    Must be called with a running loop."""
    if not isinstance(client, S3Client):
        raise TypeError("client must be a crtpy.s3.S3Client")
    if not isinstance(max_buffered_bytes, int) or isinstance(max_buffered_bytes, bool) or max_buffered_bytes < 1:
        raise ValueError("max_buffered_bytes must be a positive int")
    body = _Body(max_buffered_bytes)

    def headers_cb(status_code: int, headers: Any, **kwargs: Any) -> None:
        body.status_code = status_code
        body.headers = list(headers)
        if on_headers is not None:
            on_headers(status_code=status_code, headers=headers, **kwargs)

    def progress_cb(progress: int, **kwargs: Any) -> None:
        body.transferred += progress
        if on_progress is not None:
            on_progress(progress=progress, **kwargs)

    req = client.make_request(
        type=type, request=request, operation_name=operation_name, recv_filepath=recv_filepath,
        send_filepath=send_filepath, signing_config=signing_config,
        credential_provider=credential_provider, checksum_config=checksum_config,
        part_size=part_size, multipart_upload_threshold=multipart_upload_threshold,
        fio_options=fio_options, max_active_connections_override=max_active_connections_override,
        on_headers=headers_cb, on_body=body.on_body, on_progress=progress_cb)
    body.request = req
    req.finished_future.add_done_callback_inline(body.finished)  # type: ignore[attr-defined]
    return AioS3Request(body, req)


def download(client: S3Client, request: HttpRequest, **kwargs: Any) -> AioS3Request:
    """A GET_OBJECT request (split into ranged parts); keyword arguments as for
    :func:`make_request`."""
    return make_request(client, type=S3RequestType.GET_OBJECT, request=request, **kwargs)


def upload(client: S3Client, request: HttpRequest, **kwargs: Any) -> AioS3Request:
    """A PUT_OBJECT request (multipart above the threshold); keyword arguments as for
    :func:`make_request`."""
    return make_request(client, type=S3RequestType.PUT_OBJECT, request=request, **kwargs)
