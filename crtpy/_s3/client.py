"""Client-wide state of the S3 client: its loop thread, connection pools per endpoint,
parallelism and memory settings, retry settings and signing."""
from __future__ import annotations

import asyncio
import datetime
import math
import os
import threading
from typing import Any

from .._errors import code_of, error
from .._net.connect import pick_loop
from .._runtime.backoff import Backoff
from ..io import SocketOptions
from .conn import ConnectionPool, S3Connection
from .express import ExpressSessions

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MIB
MIN_UPLOAD_PART = 5 * MIB
MAX_PARTS = 10_000
DEFAULT_THROUGHPUT_GBPS = 10.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_BACKOFF_MS = 50
DEFAULT_MAX_BACKOFF_SEC = 20


def connections_for(gbps: float) -> int:
    """Parallel connections for a throughput target: about 1.25 Gbps per connection
    (measured on loopback: more connections than this only add buffered memory), 2 to 64."""
    return max(2, min(64, math.ceil(gbps / 1.25)))


def is_loopback_host(host: str) -> bool:
    """An endpoint on this machine: a loopback address or ``localhost``."""
    import ipaddress

    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def loopback_connections() -> int:
    """Parallel connections worth opening to an endpoint on this machine: there a
    connection is limited by CPU (copies), not by latency, so connections beyond the
    number of CPUs only add buffered memory and context switches (measured on 2 CPUs,
    1 GiB from nginx: 2 connections 2.3 GB/s through on_body, 8 connections 1.8 GB/s)."""
    return max(2, os.cpu_count() or 2)


_IFNAMSIZ = 16  # Linux interface names are at most 15 bytes


def check_interface_names(names: list[str] | None) -> list[str] | None:
    """The interfaces to spread connections over (None for no binding).  An unknown or
    malformed name is refused the way the reference does (RuntimeError with
    AWS_ERROR_INVALID_ARGUMENT), as is a platform without SO_BINDTODEVICE."""
    import socket

    if not names:
        return None
    if not hasattr(socket, "SO_BINDTODEVICE"):
        raise RuntimeError(f"{code_of('AWS_ERROR_PLATFORM_NOT_SUPPORTED')} (AWS_ERROR_PLATFORM_NOT_SUPPORTED): "
                           "network_interface_names needs SO_BINDTODEVICE (Linux)")
    for name in names:
        try:
            ok = 0 < len(name.encode()) < _IFNAMSIZ and socket.if_nametoindex(name) > 0
        except (OSError, UnicodeError, ValueError):
            ok = False
        if not ok:
            raise RuntimeError(f"{code_of('AWS_ERROR_INVALID_ARGUMENT')} (AWS_ERROR_INVALID_ARGUMENT): "
                               f"no network interface named {name!r}")
    return list(names)


class _BoundSocketOptions(SocketOptions):
    """Socket options whose connections are bound to one network interface (read by
    ``crtpy._net.connect.open_connection``)."""

    __slots__ = ("_interface_name",)

    def __init__(self, interface_name: str) -> None:
        super().__init__()
        self._interface_name = interface_name


class SpreadPool:
    """Connections to one endpoint spread over several network interfaces: one
    ConnectionPool per interface, taken in turn."""

    def __init__(self, pools: list[ConnectionPool]) -> None:
        self.pools = pools
        self._turn = 0
        self._owner: dict[S3Connection, ConnectionPool] = {}

    async def acquire(self) -> S3Connection:
        pool = self.pools[self._turn % len(self.pools)]
        self._turn += 1
        conn = await pool.acquire()
        self._owner[conn] = pool
        return conn

    def release(self, conn: S3Connection) -> None:
        pool = self._owner.pop(conn, None)
        if pool is not None:
            pool.release(conn)
        else:
            conn.close()

    def close(self) -> None:
        for pool in self.pools:
            pool.close()


class ClientImpl:
    def __init__(self, *, bootstrap: Any, region: str, tls_mode: int, signing_config: Any,
                 tls_connection_options: Any, part_size: int | None, multipart_upload_threshold: int | None,
                 throughput_target_gbps: float | None, enable_s3express: bool, memory_limit: int | None,
                 network_interface_names: list[str] | None, fio_options: Any,
                 max_active_connections_override: int | None, retry_config: Any,
                 connect_timeout_ms: int | None, shutdown_event: threading.Event) -> None:
        self.bootstrap = bootstrap
        self.loop_thread = pick_loop(bootstrap)
        self.region = region
        self.tls = tls_mode == 0
        self.signing_config = signing_config
        self.tls_connection_options = tls_connection_options
        self.part_size = part_size or DEFAULT_PART_SIZE
        self.part_size_set = part_size is not None
        self.multipart_upload_threshold = multipart_upload_threshold
        self.throughput_target_gbps = throughput_target_gbps or DEFAULT_THROUGHPUT_GBPS
        self.enable_s3express = enable_s3express
        self.express = ExpressSessions()  # S3 Express sessions (loop thread only)
        self.memory_limit = memory_limit or None
        self.network_interface_names = check_interface_names(network_interface_names)
        self.fio_options = fio_options
        self.max_connections = max_active_connections_override or connections_for(self.throughput_target_gbps)
        self.connections_overridden = bool(max_active_connections_override)
        rc = retry_config
        self.max_retries = (rc.max_retries if rc is not None and rc.max_retries else DEFAULT_MAX_RETRIES)
        self.backoff_ms = (rc.backoff_scale_factor_ms if rc is not None and rc.backoff_scale_factor_ms
                           else DEFAULT_BACKOFF_MS)
        self.max_backoff_sec = (rc.max_backoff_secs if rc is not None and rc.max_backoff_secs
                                else DEFAULT_MAX_BACKOFF_SEC)
        self.jitter = rc.jitter_mode if rc is not None else 0
        self.connect_timeout_ms = connect_timeout_ms
        #: on_progress granularity inside parts, in bytes (0: once per finished part, as the
        #: reference does); crtpy's own knob, set by ``crtpy s3 cp`` or $CRTPY_S3_PROGRESS_STEP
        try:
            self.progress_step = max(0, int(os.environ.get("CRTPY_S3_PROGRESS_STEP", "0")))
        except ValueError:
            self.progress_step = 0
        self.shutdown_event = shutdown_event
        self._pools: dict[tuple[str, int, bool], ConnectionPool | SpreadPool] = {}
        self._lock = threading.Lock()
        self._active = 0
        self._released = False
        # connections in use across all requests of this client (loop thread only)
        self._slots: asyncio.Semaphore | None = None

    # -- lifetime ---------------------------------------------------------------------------
    def request_started(self) -> None:
        with self._lock:
            self._active += 1

    def request_finished(self) -> None:
        with self._lock:
            self._active -= 1
            done = self._released and self._active == 0
        if done:
            self._shutdown()

    def release(self) -> None:
        with self._lock:
            self._released = True
            done = self._active == 0
        if done:
            self._shutdown()

    def _shutdown(self) -> None:
        def close_all() -> None:
            with self._lock:
                pools = list(self._pools.values())
                self._pools.clear()
            for pool in pools:
                pool.close()
            self.express.clear()
            self.shutdown_event.set()

        try:
            self.loop_thread.call_soon(close_all)
        except BaseException:  # noqa: BLE001 - the loop is gone: nothing left to close
            self.shutdown_event.set()

    # -- loop side -------------------------------------------------------------------------------
    def connection_slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(self.max_connections, 1) * 2)
        return self._slots

    def pool_for(self, host: str, port: int, tls: bool) -> ConnectionPool | SpreadPool:
        key = (host, port, tls)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._new_pool(host, port, tls)
                self._pools[key] = pool
        return pool

    def _new_pool(self, host: str, port: int, tls: bool) -> ConnectionPool | SpreadPool:
        tls_options = self._tls_options_for(host) if tls else None
        names = self.network_interface_names
        if names:
            # one pool per interface; its sockets are bound to it (SO_BINDTODEVICE)
            pools = []
            for name in names:
                opts = _BoundSocketOptions(name)
                if self.connect_timeout_ms:
                    opts.connect_timeout_ms = self.connect_timeout_ms
                pools.append(ConnectionPool(host, port, tls_options=tls_options, bootstrap=self.bootstrap,
                                            socket_options=opts))
            return SpreadPool(pools)
        socket_options = None
        if self.connect_timeout_ms:
            from ..io import SocketOptions

            socket_options = SocketOptions()
            socket_options.connect_timeout_ms = self.connect_timeout_ms
        return ConnectionPool(host, port, tls_options=tls_options, bootstrap=self.bootstrap,
                              socket_options=socket_options)

    def _tls_options_for(self, host: str) -> Any:
        from ..io import ClientTlsContext, TlsConnectionOptions, TlsContextOptions

        base = self.tls_connection_options
        ctx = base.tls_ctx if base is not None else ClientTlsContext(TlsContextOptions())
        opts = TlsConnectionOptions(ctx)
        opts.set_alpn_list(None)  # this client speaks HTTP/1.1 only
        opts.set_server_name((base._server_name if base is not None else None) or host)
        return opts

    def new_backoff(self) -> Backoff:
        return Backoff(self.backoff_ms / 1000.0, max(self.max_backoff_sec, self.backoff_ms / 1000.0), self.jitter)

    # -- signing -----------------------------------------------------------------------------------
    @staticmethod
    def signing_config_for(base: Any, region: str, body_value: str) -> Any:
        from ..auth import AwsSignedBodyHeaderType

        changes: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc),
                                       "signed_body_value": body_value,
                                       "signed_body_header_type": AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256}
        if not base.service:
            changes["service"] = "s3"
        if not base.region:
            changes["region"] = region
        return base.replace(**changes)


async def sign(config: Any, method: str, path: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Sign a request described by method/path/headers; returns the signed headers."""
    from ..auth import aws_sign_request
    from ..http import HttpHeaders, HttpRequest

    if config.credentials_provider is None:
        raise error("AWS_AUTH_SIGNING_INVALID_CONFIGURATION", "the signing config has no credentials provider")
    req = HttpRequest(method, path, HttpHeaders(headers))
    fut = aws_sign_request(req, config)
    if not fut.done():
        await asyncio.wrap_future(fut)
    signed = fut.result()
    return list(signed.headers)
