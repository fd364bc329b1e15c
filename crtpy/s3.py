"""S3 client: large object transfers split into parallel parts, with checksums and retries.

:class:`S3Client` sends requests to any S3-compatible endpoint (the endpoint is the
request's ``Host`` header; the scheme follows ``tls_mode``).  ``GET_OBJECT`` and
``PUT_OBJECT`` requests are split into ranged GETs and multipart uploads that run in
parallel over a pool of keep-alive connections; other operations are sent as one signed,
retried request (``DEFAULT``).  The work happens on a crtpy event-loop thread in
:mod:`crtpy._s3`; user callbacks run in order on callback worker threads.
"""
from __future__ import annotations

import fcntl
import os
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from . import NativeResource
from .auth import (
    AwsCredentialsProvider,
    AwsSignedBodyHeaderType,
    AwsSignedBodyValue,
    AwsSigningAlgorithm,
    AwsSigningConfig,
)
from .exceptions import AwsCrtError
from .http import HttpRequest
from .io import ClientBootstrap, TlsConnectionOptions

__all__ = [
    "CrossProcessLock", "S3ChecksumAlgorithm", "S3ChecksumConfig", "S3ChecksumLocation",
    "S3ChecksumValidationMode", "S3Client", "S3FileIoOptions", "S3Request", "S3RequestTlsMode",
    "S3RequestType", "S3ResponseError", "S3RetryConfig", "create_default_s3_signing_config",
    "get_ec2_instance_type", "get_optimized_platforms", "get_recommended_throughput_target_gbps",
    "is_optimized_for_system",
]


class CrossProcessLock(NativeResource):
    """A lock shared by every process of the machine that uses the same ``lock_scope_name``
    (an advisory file lock in the temporary directory).  ``acquire`` does not wait: it
    raises AwsCrtError if another holder has it.

    Args:
        lock_scope_name (str): the name of the lock.
    """

    def __init__(self, lock_scope_name: str) -> None:
        if not isinstance(lock_scope_name, str):
            raise TypeError("lock_scope_name must be a str")
        super().__init__()
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", lock_scope_name)
        import tempfile  # here, not at the top: it costs ~1 MiB of resident memory

        self._path = os.path.join(tempfile.gettempdir(), f"crtpy_cross_process_lock_{safe}.lock")
        self._fd: int | None = None
        self._mutex = threading.Lock()

    def acquire(self) -> None:
        """Take the lock, or raise RuntimeError if it is held."""
        from ._errors import code_of

        def held(why: str) -> RuntimeError:
            name = "AWS_ERROR_MUTEX_CALLER_NOT_OWNER"
            return RuntimeError(f"{code_of(name)} ({name}): {why}")

        with self._mutex:
            if self._fd is not None:
                raise held("this lock object already holds the lock")
            fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise held("the lock is held by another process or object") from None
            self._fd = fd

    def release(self) -> None:
        """Give the lock back (no-op if not held)."""
        with self._mutex:
            fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


class S3RequestType(IntEnum):
    """What kind of request :meth:`S3Client.make_request` sends."""

    DEFAULT = 0
    """Any S3 operation, sent as one request (``operation_name`` is required)."""

    GET_OBJECT = 1
    """GetObject, downloaded as parallel ranged GETs."""

    PUT_OBJECT = 2
    """PutObject, uploaded with one PUT or as a parallel multipart upload."""


class S3RequestTlsMode(IntEnum):
    """Whether connections use TLS."""

    ENABLED = 0
    """https (port 443 unless the Host header names one)."""

    DISABLED = 1
    """plain http (port 80 unless the Host header names one)."""


class S3ChecksumAlgorithm(IntEnum):
    """Checksum algorithms S3 knows."""

    CRC32C = 1
    CRC32 = 2
    SHA1 = 3
    SHA256 = 4
    CRC64NVME = 5
    SHA512 = 6
    XXHASH64 = 7
    XXHASH3 = 8
    XXHASH128 = 9


class S3ChecksumLocation(IntEnum):
    """Where an upload's checksum goes."""

    HEADER = 1
    """A request header (the body is read once more to compute it first)."""

    TRAILER = 2
    """A trailing header after an aws-chunked body, computed while sending."""


class S3ChecksumValidationMode(IntEnum):
    """How response checksums are validated."""

    DEFAULT = 0
    """The client's choice (currently like REQUEST_ONLY)."""

    REQUEST_ONLY = 1
    """Checksums of the individual responses."""

    FULL_OBJECT = 2
    """Also the whole object's checksum, combined from the parts where possible."""


@dataclass
class S3ChecksumConfig:
    """Checksum settings of one request.

    Attributes:
        algorithm (Optional[S3ChecksumAlgorithm]): the algorithm computed for uploads.
        location (Optional[S3ChecksumLocation]): where an upload's checksum is sent;
            required with ``algorithm``.
        validate_response (bool): validate checksums of downloaded data against the
            server's, when the server sends one.
        expected_checksum (Optional[str]): a full-object checksum (base64) already known
            for an upload, sent instead of a computed one.
        expected_checksum_algorithm (Optional[S3ChecksumAlgorithm]): the algorithm of
            ``expected_checksum`` (defaults to ``algorithm``).
        response_validation_mode (Optional[S3ChecksumValidationMode]): which response
            checksums are checked.
    """

    algorithm: S3ChecksumAlgorithm | None = None
    location: S3ChecksumLocation | None = None
    validate_response: bool = False
    expected_checksum: str | None = None
    expected_checksum_algorithm: S3ChecksumAlgorithm | None = None
    response_validation_mode: S3ChecksumValidationMode | None = None


@dataclass
class S3FileIoOptions:
    """How uploads with ``send_filepath`` read the file (experimental in the reference
    too).  crtpy also applies ``direct_io`` to downloads to ``recv_filepath``.

    Attributes:
        should_stream (bool): treat the file as a stream read once: each part's pages
            are dropped from the page cache after it has been read
            (``posix_fadvise(DONTNEED)``).  A part is still read whole into its
            connection's buffer before it is sent (the connection layer sends buffers),
            so memory stays bounded by connections x part size.
        disk_throughput_gbps (Optional[float]): with ``should_stream``, the disk's
            expected throughput: parts in flight are limited to about one per 1.25 Gbps
            so that connections are not left waiting on the disk.  Ignored otherwise.
        direct_io (bool): read through ``O_DIRECT`` (bypassing the page cache) into
            page-aligned buffers, for parts at 4 KiB-aligned offsets.  Where the
            platform or filesystem refuses O_DIRECT (e.g. not Linux, some tmpfs), or a
            read fails, the file is read normally (logged at debug level).  A
            multipart download to ``recv_filepath`` then writes its parts through
            O_DIRECT as well (gathered into page-aligned buffers; the unaligned tail
            goes through the page cache), so a huge download does not fill the page
            cache with dirty pages.
    """

    should_stream: bool = False
    disk_throughput_gbps: float | None = 0.0
    direct_io: bool = False


@dataclass
class S3RetryConfig:
    """Retry behaviour of the client.  Zero means the default.

    Attributes:
        max_retries (int): retries of one part or request (default 5).
        backoff_scale_factor_ms (int): base delay of the exponential backoff (default 50 ms).
        max_backoff_secs (int): upper bound of one delay (default 20 s).
        jitter_mode (int): a :class:`crtpy.io.ExponentialBackoffJitterMode` value.
        initial_bucket_capacity (int): retry token bucket size (accepted; crtpy does not
            ration retries across requests).
    """

    max_retries: int = 0
    backoff_scale_factor_ms: int = 0
    max_backoff_secs: int = 0
    jitter_mode: int = 0
    initial_bucket_capacity: int = 0


class S3ResponseError(AwsCrtError):
    """An unsuccessful response from S3 (a subclass of AwsCrtError).

    Attributes:
        status_code (int): the HTTP status.
        headers (list[tuple[str, str]]): the response headers.
        body (Optional[bytes]): the response body (usually XML), if any.
        operation_name (Optional[str]): the S3 operation that failed (e.g. "UploadPart").
        code (int), name (str), message (str): as in AwsCrtError.
    """

    def __init__(self, *, code: int, name: str, message: str, status_code: int | None = None,
                 headers: list[tuple[str, str]] | None = None, body: bytes | None = None,
                 operation_name: str | None = None) -> None:
        super().__init__(code, name, message)
        self.status_code = status_code
        self.headers = headers
        self.body = body
        self.operation_name = operation_name


def create_default_s3_signing_config(*, region: str, credential_provider: AwsCredentialsProvider,
                                     **kwargs: Any) -> AwsSigningConfig:
    """An AwsSigningConfig for S3: SigV4, service ``s3``, unsigned payload with the
    ``x-amz-content-sha256`` header, no double URI encoding or path normalization.
    Extra keyword arguments are passed on to AwsSigningConfig."""
    options: dict[str, Any] = {
        "algorithm": AwsSigningAlgorithm.V4, "service": "s3",
        "signed_body_header_type": AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256,
        "signed_body_value": AwsSignedBodyValue.UNSIGNED_PAYLOAD, "region": region,
        "credentials_provider": credential_provider, "use_double_uri_encode": False,
        "should_normalize_uri_path": False}
    options.update(kwargs)
    return AwsSigningConfig(**options)


def get_ec2_instance_type() -> str | None:
    """The EC2 instance type of this machine, or None (crtpy does not probe for it)."""
    return None


_OPTIMIZED = ("p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge",
              "p6-b200.48xlarge", "p6-b300.48xlarge", "trn1.32xlarge", "trn1n.32xlarge")


def get_optimized_platforms() -> list[str]:
    """Instance types with tuned defaults."""
    return sorted(_OPTIMIZED, reverse=True)


def is_optimized_for_system() -> bool:
    """Whether this machine is one of :func:`get_optimized_platforms`."""
    return get_ec2_instance_type() in _OPTIMIZED


def get_recommended_throughput_target_gbps() -> float | None:
    """A throughput target for this machine, or None when unknown."""
    return None


def _opt_int(value: Any, name: str, minimum: int = 0) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
    return value


class S3Client(NativeResource):
    """A client that moves objects to and from S3 with parallel requests.

    Args:
        bootstrap (Optional[ClientBootstrap]): the bootstrap whose event loops and host
            resolver connections use (the static default when None).
        region (str): the region used for signing.
        tls_mode (Optional[S3RequestTlsMode]): TLS on (default) or off.
        signing_config (Optional[AwsSigningConfig]): how requests are signed (see
            :func:`create_default_s3_signing_config`); unsigned when neither this nor
            ``credential_provider`` is given.
        credential_provider (Optional[AwsCredentialsProvider]): deprecated shortcut for
            a default signing config with this provider.
        tls_connection_options (Optional[TlsConnectionOptions]): TLS settings of every
            connection (server name is set per endpoint).
        part_size (Optional[int]): part size in bytes (default 8 MiB).
        multipart_upload_threshold (Optional[int]): uploads larger than this use
            multipart (default: the part size).
        throughput_target_gbps (Optional[float]): drives the number of parallel connections
            (default 10: about one connection per 1.25 Gbps, 2 to 64).  To an endpoint on
            this machine (loopback address or localhost), where connections are limited
            by CPU rather than latency, no more connections than CPUs (at least 2) are
            used unless ``max_active_connections_override`` is given.
        enable_s3express (bool): allow requests signed with
            ``AwsSigningAlgorithm.V4_S3EXPRESS`` (directory buckets).  For those the client
            calls CreateSession on the request's endpoint with the config's credentials,
            caches the session per endpoint and credentials (refreshed in the background
            during its last minute) and signs with the session credentials and the
            ``x-amz-s3session-token`` header.  Without it such requests are refused with
            AWS_ERROR_INVALID_ARGUMENT; a failed CreateSession fails the request with
            AWS_ERROR_S3EXPRESS_CREATE_SESSION_FAILED.
        memory_limit (Optional[int]): bound, in bytes, of part data buffered at once.
        network_interface_names (Optional[Sequence[str]]): network interfaces to spread
            the connections over, taken in turn; each socket is bound to its interface
            (Linux SO_BINDTODEVICE).  A name that is not an interface of this machine is
            refused with AWS_ERROR_INVALID_ARGUMENT.  Empty or None: no binding.
        fio_options (Optional[S3FileIoOptions]): how uploads read ``send_filepath``.
        max_active_connections_override (Optional[int]): caps parallel connections.
        retry_config (Optional[S3RetryConfig]): retry settings.
        connect_timeout_ms (Optional[int]): connection timeout.

    Attributes:
        shutdown_event (threading.Event): set once the client has been released and its
            requests and connections are gone.
    """

    __slots__ = ("shutdown_event",)


    def __init__(self, *, bootstrap: ClientBootstrap | None = None, region: str,
                 tls_mode: S3RequestTlsMode | None = None, signing_config: AwsSigningConfig | None = None,
                 credential_provider: AwsCredentialsProvider | None = None,
                 tls_connection_options: TlsConnectionOptions | None = None, part_size: int | None = None,
                 multipart_upload_threshold: int | None = None, throughput_target_gbps: float | None = None,
                 enable_s3express: bool = False, memory_limit: int | None = None,
                 network_interface_names: Sequence[str] | None = None,
                 fio_options: S3FileIoOptions | None = None,
                 max_active_connections_override: int | None = None,
                 retry_config: S3RetryConfig | None = None, connect_timeout_ms: int | None = None) -> None:
        if not isinstance(region, str):
            raise TypeError("region must be a str")
        if bootstrap is not None and not isinstance(bootstrap, ClientBootstrap):
            raise TypeError("bootstrap must be a ClientBootstrap or None")
        if signing_config is not None and not isinstance(signing_config, AwsSigningConfig):
            raise TypeError("signing_config must be an AwsSigningConfig or None")
        if credential_provider is not None and not isinstance(credential_provider, AwsCredentialsProvider):
            raise TypeError("credential_provider must be an AwsCredentialsProvider or None")
        if tls_connection_options is not None and not isinstance(tls_connection_options, TlsConnectionOptions):
            raise TypeError("tls_connection_options must be a TlsConnectionOptions or None")
        tls_mode = S3RequestTlsMode(tls_mode if tls_mode is not None else S3RequestTlsMode.ENABLED)
        part_size = _opt_int(part_size, "part_size", 1)
        multipart_upload_threshold = _opt_int(multipart_upload_threshold, "multipart_upload_threshold", 1)
        memory_limit = _opt_int(memory_limit, "memory_limit", 0)
        max_active_connections_override = _opt_int(max_active_connections_override,
                                                   "max_active_connections_override", 0)
        connect_timeout_ms = _opt_int(connect_timeout_ms, "connect_timeout_ms", 0)
        if throughput_target_gbps is not None:
            if isinstance(throughput_target_gbps, bool) or not isinstance(throughput_target_gbps, (int, float)):
                raise TypeError("throughput_target_gbps must be a number or None")
            if throughput_target_gbps <= 0:
                raise ValueError("throughput_target_gbps must be positive")
        if memory_limit and part_size and part_size > memory_limit:
            from ._errors import error

            raise error("AWS_ERROR_S3_PART_SIZE_EXCEEDS_MEMORY_LIMIT")
        if network_interface_names is not None:
            if isinstance(network_interface_names, str) or not all(
                    isinstance(n, str) for n in network_interface_names):
                raise TypeError("network_interface_names must be a sequence of str")
            network_interface_names = list(network_interface_names)
        if retry_config is not None and not isinstance(retry_config, S3RetryConfig):
            raise TypeError("retry_config must be an S3RetryConfig or None")
        if fio_options is not None and not isinstance(fio_options, S3FileIoOptions):
            raise TypeError("fio_options must be an S3FileIoOptions or None")
        if signing_config is None and credential_provider is not None:
            signing_config = create_default_s3_signing_config(region=region, credential_provider=credential_provider)
        super().__init__()
        from ._s3.client import ClientImpl

        self.shutdown_event = threading.Event()
        self._impl = ClientImpl(
            bootstrap=bootstrap, region=region, tls_mode=int(tls_mode), signing_config=signing_config,
            tls_connection_options=tls_connection_options, part_size=part_size,
            multipart_upload_threshold=multipart_upload_threshold, throughput_target_gbps=throughput_target_gbps,
            enable_s3express=bool(enable_s3express), memory_limit=memory_limit,
            network_interface_names=network_interface_names, fio_options=fio_options,
            max_active_connections_override=max_active_connections_override, retry_config=retry_config,
            connect_timeout_ms=connect_timeout_ms, shutdown_event=self.shutdown_event)
        self._finalizer = weakref.finalize(self, self._impl.release)

    def make_request(self, *, type: S3RequestType, request: HttpRequest, operation_name: str | None = None,
                     recv_filepath: str | None = None, send_filepath: str | None = None,
                     signing_config: AwsSigningConfig | None = None,
                     credential_provider: AwsCredentialsProvider | None = None,
                     checksum_config: S3ChecksumConfig | None = None, part_size: int | None = None,
                     multipart_upload_threshold: int | None = None, fio_options: S3FileIoOptions | None = None,
                     max_active_connections_override: int | None = None,
                     on_headers: Callable[..., None] | None = None, on_body: Callable[..., None] | None = None,
                     on_done: Callable[..., None] | None = None,
                     on_progress: Callable[..., None] | None = None) -> S3Request:
        """Start a request; returns its :class:`S3Request` at once.

        Keyword Args:
            type (S3RequestType): GET_OBJECT and PUT_OBJECT are split into parts.
            request (HttpRequest): the S3 request (method, path, headers with ``Host``,
                optional body stream).
            operation_name (Optional[str]): the S3 operation, required for DEFAULT.
            recv_filepath (Optional[str]): write the response body to this file (no
                ``on_body`` calls).
            send_filepath (Optional[str]): read the request body from this file.
            signing_config (Optional[AwsSigningConfig]): overrides the client's signing
                configuration for this request.
            credential_provider (Optional[AwsCredentialsProvider]): overrides the client's
                credentials for this request.
            checksum_config (Optional[S3ChecksumConfig]): checksums to send and validate.
            part_size (Optional[int]): overrides the client's part size.
            multipart_upload_threshold (Optional[int]): overrides the client's threshold.
            fio_options (Optional[S3FileIoOptions]): overrides the client's file I/O options.
            max_active_connections_override (Optional[int]): caps this request's parallel
                connections.
            on_headers (Optional[Callable]): ``on_headers(status_code, headers, **kwargs)``, once.
            on_body (Optional[Callable]): ``on_body(chunk, offset, **kwargs)``, in offset order.
            on_done (Optional[Callable]): ``on_done(error, error_headers, error_body,
                error_operation_name, status_code, did_validate_checksum,
                checksum_validation_algorithm, **kwargs)``.
            on_progress (Optional[Callable]): ``on_progress(progress)`` with the bytes just
                transferred (positional, as the reference calls it).
        """
        return S3Request(client=self, type=type, request=request, operation_name=operation_name,
                         recv_filepath=recv_filepath, send_filepath=send_filepath, signing_config=signing_config,
                         credential_provider=credential_provider, checksum_config=checksum_config,
                         part_size=part_size, multipart_upload_threshold=multipart_upload_threshold,
                         fio_options=fio_options, max_active_connections_override=max_active_connections_override,
                         on_headers=on_headers, on_body=on_body, on_done=on_done, on_progress=on_progress)


class S3Request(NativeResource):
    """One request in progress; made by :meth:`S3Client.make_request`.

    Attributes:
        shutdown_event (threading.Event): set once the request has finished and released
            everything.
    """

    __slots__ = ("shutdown_event",)


    def __init__(self, *, client: S3Client, type: S3RequestType, request: HttpRequest,
                 operation_name: str | None = None, recv_filepath: str | None = None,
                 send_filepath: str | None = None, signing_config: AwsSigningConfig | None = None,
                 credential_provider: AwsCredentialsProvider | None = None,
                 checksum_config: S3ChecksumConfig | None = None, part_size: int | None = None,
                 multipart_upload_threshold: int | None = None, fio_options: S3FileIoOptions | None = None,
                 max_active_connections_override: int | None = None,
                 on_headers: Callable[..., None] | None = None, on_body: Callable[..., None] | None = None,
                 on_done: Callable[..., None] | None = None, on_progress: Callable[..., None] | None = None,
                 region: str | None = None) -> None:
        if not isinstance(client, S3Client):
            raise TypeError("client must be an S3Client")
        if not isinstance(request, HttpRequest):
            raise TypeError("request must be a crtpy.http.HttpRequest")
        type = S3RequestType(type)
        if type == S3RequestType.DEFAULT and not operation_name:
            raise ValueError("operation_name is required for S3RequestType.DEFAULT")
        if operation_name is not None and not isinstance(operation_name, str):
            raise TypeError("operation_name must be a str or None")
        for name, value in (("recv_filepath", recv_filepath), ("send_filepath", send_filepath)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{name} must be a path or None")
        if signing_config is not None and not isinstance(signing_config, AwsSigningConfig):
            raise TypeError("signing_config must be an AwsSigningConfig or None")
        if credential_provider is not None and not isinstance(credential_provider, AwsCredentialsProvider):
            raise TypeError("credential_provider must be an AwsCredentialsProvider or None")
        if checksum_config is not None:
            if not isinstance(checksum_config, S3ChecksumConfig):
                raise TypeError("checksum_config must be an S3ChecksumConfig or None")
            if checksum_config.algorithm is not None and checksum_config.location is None:
                raise ValueError("checksum_config.location is required when an algorithm is set")
        part_size = _opt_int(part_size, "part_size", 1)
        multipart_upload_threshold = _opt_int(multipart_upload_threshold, "multipart_upload_threshold", 1)
        max_active_connections_override = _opt_int(max_active_connections_override,
                                                   "max_active_connections_override", 0)
        for name, cb in (("on_headers", on_headers), ("on_body", on_body), ("on_done", on_done),
                         ("on_progress", on_progress)):
            if cb is not None and not callable(cb):
                raise TypeError(f"{name} must be callable or None")
        client._check_fork()
        super().__init__()
        if credential_provider is not None and signing_config is None:
            signing_config = create_default_s3_signing_config(region=region or client._impl.region,
                                                              credential_provider=credential_provider)
        from ._runtime.futures import CrtFuture
        from ._s3.meta import MetaRequest

        self.shutdown_event = threading.Event()
        self._finished_future: Future[None] = CrtFuture()
        self._meta = MetaRequest(
            client._impl, type=int(type), request=request, operation_name=operation_name,
            recv_filepath=os.fspath(recv_filepath) if recv_filepath is not None else None,
            send_filepath=os.fspath(send_filepath) if send_filepath is not None else None,
            signing_config=signing_config, checksum_config=checksum_config, part_size=part_size,
            multipart_upload_threshold=multipart_upload_threshold, fio_options=fio_options,
            max_active_connections_override=max_active_connections_override, on_headers=on_headers,
            on_body=on_body, on_done=on_done, on_progress=on_progress, region=region,
            finished_future=self._finished_future, shutdown_event=self.shutdown_event)
        self._meta.start()

    @property
    def finished_future(self) -> Future[None]:
        """concurrent.futures.Future: None when the request succeeded, else the error
        (an S3ResponseError for an unsuccessful response); completes after ``on_done``."""
        return self._finished_future

    def cancel(self) -> None:
        """Stop the request as soon as possible; it fails with AWS_ERROR_S3_CANCELED and
        a multipart upload in progress is aborted."""
        self._meta.cancel()
