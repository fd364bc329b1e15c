"""I/O: event-loop threads, host resolution, client bootstraps, sockets, TLS and streams.

TLS is provided by Python's :mod:`ssl` module (OpenSSL); PKCS#12 files are read with
``cryptography``.  Every connection crtpy makes is opened by its private network layer
(``crtpy._net``) with the objects defined here.
"""
from __future__ import annotations

import io as _pyio
import itertools
import os
import threading
import weakref
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from . import NativeResource
from ._errors import error
from ._net import tls as _tls
from ._net.resolver import HostCache as _HostCache
from ._runtime import fork as _fork
from ._runtime import logs as _logs
from ._runtime.backoff import JitterMode as _JitterMode
from ._runtime.loop import LoopThread as _LoopThread

if TYPE_CHECKING:
    import ssl

    from ._net.resolver import ResolvedAddress as _ResolvedAddress

__all__ = [
    "ClientBootstrap", "ClientTlsContext", "DefaultHostResolver", "EventLoopGroup",
    "ExponentialBackoffJitterMode", "HostResolverBase", "InputStream", "LogLevel", "Pkcs11Lib",
    "SocketDomain", "SocketOptions", "SocketType", "TlsCipherPref", "TlsConnectionOptions",
    "TlsContextOptions", "TlsVersion", "init_logging", "is_alpn_available", "set_log_level",
]


# ----------------------------------------------------------------------------------------
# logging
class LogLevel(IntEnum):
    """Log levels of :func:`init_logging`."""

    NoLogs = 0
    Fatal = 1
    Error = 2
    Warn = 3
    Info = 4
    Debug = 5
    Trace = 6


_PY_LEVELS = {0: 0, 1: 50, 2: 40, 3: 30, 4: 20, 5: 10, 6: _logs.TRACE}


def _py_level(log_level: int) -> int:
    if isinstance(log_level, bool) or not isinstance(log_level, int):
        raise TypeError(f"log_level must be a LogLevel, not {type(log_level).__name__}")
    try:
        return _PY_LEVELS[int(log_level)]
    except KeyError:
        raise ValueError(f"invalid log level {log_level}") from None


def init_logging(log_level: int, file_name: str) -> None:
    """Write crtpy's log records at ``log_level`` and above to a file or console.

    Records also propagate to the application's :mod:`logging` handlers (the
    ``crtpy`` logger).  Calling it again replaces the output and level.

    Args:
        log_level (LogLevel): the lowest level written.
        file_name (str): ``"stdout"``, ``"stderr"`` or the path of a file to append to.
    """
    level = _py_level(log_level)
    if not isinstance(file_name, str) or not file_name:
        raise TypeError("file_name must be 'stdout', 'stderr' or a file path")
    try:
        _logs.attach_output(level, file_name)
    except OSError as exc:
        raise error("AWS_ERROR_FILE_OPEN_FAILURE", f"cannot open log file {file_name!r}: {exc.strerror}") from None


def set_log_level(log_level: int) -> None:
    """Change the level set by :func:`init_logging` (``LogLevel.NoLogs`` silences crtpy).

    Args:
        log_level (LogLevel): the new lowest level.
    """
    _logs.set_level(_py_level(log_level))


# ----------------------------------------------------------------------------------------
# event loops, host resolution, bootstraps
def _default_thread_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_group_serial = itertools.count(1)


def _stop_loops(loops: list[_LoopThread], event: threading.Event) -> None:
    """Stop every loop thread; set ``event`` once all of them have finished."""
    remaining = [len(loops)]
    lock = threading.Lock()

    def one_stopped() -> None:
        with lock:
            remaining[0] -= 1
            done = remaining[0] == 0
        if done:
            event.set()

    if not loops:
        event.set()
        return
    for lt in loops:
        lt.stop()
        if lt._fork_generation != _fork.generation():
            one_stopped()  # the thread does not exist in this process
        else:
            lt.add_stopped_callback(one_stopped)


class EventLoopGroup(NativeResource):
    """A group of event-loop threads that connections and clients run on.

    Each thread runs an asyncio event loop (uvloop when installed).  The threads stop
    when the group is released (garbage collected, after every object using it is);
    :attr:`shutdown_event` is set once they have all finished.

    Args:
        num_threads (Optional[int]): number of threads; None or 0 for one per processor.
        cpu_group (Optional[int]): processor group (NUMA node) to pin the threads to;
            None for no pinning.

    Attributes:
        shutdown_event (threading.Event): set when every thread of the group has stopped.
    """

    __slots__ = ("_cpus", "_finalizer", "_loops", "_rr", "_serial", "_size", "_start_lock", "shutdown_event")

    _static_event_loop_group: EventLoopGroup | None = None
    _static_event_loop_group_lock = threading.Lock()

    def __init__(self, num_threads: int | None = None, cpu_group: int | None = None) -> None:
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)):
            raise TypeError("num_threads must be an int or None")
        if num_threads is not None and num_threads < 0:
            raise ValueError("num_threads must not be negative")
        if cpu_group is not None and (isinstance(cpu_group, bool) or not isinstance(cpu_group, int)):
            raise TypeError("cpu_group must be an int or None")
        super().__init__()
        cpus: list[int] | None = None
        if cpu_group is not None:
            from .common import _numa_nodes, get_cpu_group_count

            if not 0 <= cpu_group < get_cpu_group_count():
                raise error("AWS_ERROR_INVALID_ARGUMENT", f"cpu_group {cpu_group} does not exist")
            nodes = _numa_nodes()
            cpus = nodes[cpu_group] if nodes else None
        self._size = num_threads or (len(cpus) if cpus else _default_thread_count())
        self._cpus = cpus
        self._serial = next(_group_serial)
        self._start_lock = threading.Lock()
        self.shutdown_event = threading.Event()
        # Threads start on first use (round-robin order), not here: a client that runs on
        # one loop of the default group never pays for the others (~0.6 MiB each).
        self._loops: list[_LoopThread] = []
        self._rr = itertools.count()
        self._finalizer = weakref.finalize(self, _stop_loops, self._loops, self.shutdown_event)

    def _next_loop_thread(self) -> _LoopThread:
        """One of the group's loop threads, round-robin (started here if it is new)."""
        self._check_fork()
        i = next(self._rr) % self._size
        loops = self._loops
        if i >= len(loops):
            with self._start_lock:
                while i >= len(loops):
                    loops.append(self._start_loop(len(loops)))
        lt = loops[i]
        lt.check_usable()
        return lt

    def _start_loop(self, index: int) -> _LoopThread:
        if not self._finalizer.alive:
            raise error("AWS_IO_EVENT_LOOP_SHUTDOWN", "the event loop group is shut down")
        lt = _LoopThread(f"crtpy-loop-{self._serial}.{index}")
        if self._cpus and hasattr(os, "sched_setaffinity"):
            try:
                native_id = lt.thread.native_id
                if native_id is not None:
                    os.sched_setaffinity(native_id, self._cpus)
            except OSError:
                pass
        return lt

    @property
    def _num_threads(self) -> int:
        return self._size

    @staticmethod
    def get_or_create_static_default() -> EventLoopGroup:
        """The process-wide default group (created on first use, one thread per processor)."""
        with EventLoopGroup._static_event_loop_group_lock:
            if EventLoopGroup._static_event_loop_group is None:
                EventLoopGroup._static_event_loop_group = EventLoopGroup()
            return EventLoopGroup._static_event_loop_group

    @staticmethod
    def release_static_default() -> None:
        """Forget the default group; its threads stop once nothing else uses it."""
        with EventLoopGroup._static_event_loop_group_lock:
            EventLoopGroup._static_event_loop_group = None


class HostResolverBase(NativeResource):
    """Base class of host resolvers."""

    __slots__ = ()


class DefaultHostResolver(HostResolverBase):
    """Resolves host names (IPv4 and IPv6) without blocking an event loop, and caches
    the answers for a while.

    Args:
        event_loop_group (EventLoopGroup): the group this resolver serves.
        max_hosts (int): how many host names are cached at most.
    """

    __slots__ = ("_cache", "_event_loop_group")

    _static_host_resolver: DefaultHostResolver | None = None
    _static_host_resolver_lock = threading.Lock()

    def __init__(self, event_loop_group: EventLoopGroup, max_hosts: int = 16) -> None:
        if not isinstance(event_loop_group, EventLoopGroup):
            raise TypeError("event_loop_group must be an EventLoopGroup")
        if isinstance(max_hosts, bool) or not isinstance(max_hosts, int):
            raise TypeError("max_hosts must be an int")
        if max_hosts < 1:
            raise ValueError("max_hosts must be at least 1")
        event_loop_group._check_fork()
        super().__init__()
        self._event_loop_group = event_loop_group
        self._cache = _HostCache(max_hosts)

    def _resolve(self, host: str) -> Any:
        """Resolve ``host`` on one of the group's loops: a future of a list of
        ``crtpy._net.resolver.ResolvedAddress`` (IPv6 and IPv4)."""
        self._check_fork()

        async def run() -> list[_ResolvedAddress]:
            return list(await self._cache.resolve(host))

        return self._event_loop_group._next_loop_thread().run_coroutine(run())

    @staticmethod
    def get_or_create_static_default() -> DefaultHostResolver:
        """The process-wide default resolver (on the default event-loop group)."""
        with DefaultHostResolver._static_host_resolver_lock:
            if DefaultHostResolver._static_host_resolver is None:
                DefaultHostResolver._static_host_resolver = DefaultHostResolver(
                    EventLoopGroup.get_or_create_static_default())
            return DefaultHostResolver._static_host_resolver

    @staticmethod
    def release_static_default() -> None:
        """Forget the default resolver."""
        with DefaultHostResolver._static_host_resolver_lock:
            DefaultHostResolver._static_host_resolver = None


class ClientBootstrap(NativeResource):
    """What a client needs to open connections: an event-loop group and a host resolver.

    Args:
        event_loop_group (EventLoopGroup): where connections run.
        host_resolver (HostResolverBase): resolves host names.

    Attributes:
        shutdown_event (threading.Event): set once the bootstrap has been released.
    """

    __slots__ = ("_event_loop_group", "_finalizer", "_host_resolver", "shutdown_event")

    _static_client_bootstrap: ClientBootstrap | None = None
    _static_client_bootstrap_lock = threading.Lock()

    def __init__(self, event_loop_group: EventLoopGroup, host_resolver: HostResolverBase) -> None:
        if not isinstance(event_loop_group, EventLoopGroup):
            raise TypeError("event_loop_group must be an EventLoopGroup")
        if not isinstance(host_resolver, DefaultHostResolver):
            raise TypeError("host_resolver must be a DefaultHostResolver")
        event_loop_group._check_fork()
        host_resolver._check_fork()
        super().__init__()
        self.shutdown_event = threading.Event()
        self._event_loop_group = event_loop_group
        self._host_resolver = host_resolver
        self._finalizer = weakref.finalize(self, self.shutdown_event.set)

    @staticmethod
    def get_or_create_static_default() -> ClientBootstrap:
        """The process-wide default bootstrap (default group and resolver)."""
        with ClientBootstrap._static_client_bootstrap_lock:
            if ClientBootstrap._static_client_bootstrap is None:
                ClientBootstrap._static_client_bootstrap = ClientBootstrap(
                    EventLoopGroup.get_or_create_static_default(),
                    DefaultHostResolver.get_or_create_static_default())
            return ClientBootstrap._static_client_bootstrap

    @staticmethod
    def release_static_default() -> None:
        """Forget the default bootstrap."""
        with ClientBootstrap._static_client_bootstrap_lock:
            ClientBootstrap._static_client_bootstrap = None


@_fork.on_fork_child
def _forget_static_defaults_in_child() -> None:
    # The parent's locks may be held by threads that do not exist here.
    EventLoopGroup._static_event_loop_group = None
    EventLoopGroup._static_event_loop_group_lock = threading.Lock()
    DefaultHostResolver._static_host_resolver = None
    DefaultHostResolver._static_host_resolver_lock = threading.Lock()
    ClientBootstrap._static_client_bootstrap = None
    ClientBootstrap._static_client_bootstrap_lock = threading.Lock()


# ----------------------------------------------------------------------------------------
# sockets
class SocketDomain(IntEnum):
    """Socket address family."""

    IPv4 = 0
    IPv6 = 1
    Local = 2  #: Unix domain socket (the host is a file path)


class SocketType(IntEnum):
    """Socket type."""

    Stream = 0  #: TCP (or a stream Unix socket)
    DGram = 1  #: UDP


class SocketOptions:
    """Options of the sockets a client opens.

    Attributes:
        domain (SocketDomain): address family; for TCP connections to a host name the
            family of each resolved address is used.  ``Local`` connects to a Unix socket.
        type (SocketType): ``Stream`` for connections.
        connect_timeout_ms (int): milliseconds allowed for the TCP connect (default 5000).
        keep_alive (bool): enable TCP keep-alive.
        keep_alive_timeout_secs (int): idle seconds before the first keep-alive probe.
        keep_alive_interval_secs (int): seconds between probes.
        keep_alive_max_probes (int): unanswered probes before the connection is dropped.
    """

    __slots__ = (
        "connect_timeout_ms",
        "domain",
        "keep_alive",
        "keep_alive_interval_secs",
        "keep_alive_max_probes",
        "keep_alive_timeout_secs",
        "type",
    )

    def __init__(self) -> None:
        self.domain = SocketDomain.IPv6
        self.type = SocketType.Stream
        self.connect_timeout_ms = 5000
        self.keep_alive = False
        self.keep_alive_timeout_secs = 0
        self.keep_alive_interval_secs = 0
        self.keep_alive_max_probes = 0

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"SocketOptions({fields})"


# ----------------------------------------------------------------------------------------
# TLS
class TlsVersion(IntEnum):
    """Minimum TLS protocol version.  ``DEFAULT`` is TLS 1.2."""

    SSLv3 = 0
    TLSv1 = 1
    TLSv1_1 = 2
    TLSv1_2 = 3
    TLSv1_3 = 4
    DEFAULT = 128


class TlsCipherPref(IntEnum):
    """TLS cipher-suite preference."""

    DEFAULT = 0  #: OpenSSL's recommended suites
    PQ_TLSv1_0_2021_05 = 6  #: post-quantum hybrid key exchange (not available in crtpy)
    PQ_DEFAULT = 8  #: post-quantum preferred (not available in crtpy)
    TLSv1_2_2025_07 = 9  #: TLS 1.2+ with ECDHE and AEAD suites only

    def is_supported(self) -> bool:
        """Whether this preference can be used on this platform."""
        return _tls.cipher_pref_supported(int(self))


class Pkcs11Lib(NativeResource):
    """A PKCS#11 library.  crtpy has no PKCS#11 support: constructing one raises
    ``AwsCrtError(AWS_ERROR_PLATFORM_NOT_SUPPORTED)``.

    Args:
        file (str): path of the PKCS#11 shared library.
        behavior (Optional[Pkcs11Lib.InitializeFinalizeBehavior]): when to call
            ``C_Initialize``/``C_Finalize``.
    """

    class InitializeFinalizeBehavior(IntEnum):
        """When the library's ``C_Initialize`` and ``C_Finalize`` are called."""

        DEFAULT = 0
        OMIT = 1
        STRICT = 2

    def __init__(self, *, file: str, behavior: Pkcs11Lib.InitializeFinalizeBehavior | None = None) -> None:
        if not isinstance(file, str):
            raise TypeError("file must be a str path")
        raise error("AWS_ERROR_PLATFORM_NOT_SUPPORTED",
                    "PKCS#11 is not available in crtpy (pure-Python TLS cannot use hardware keys)")


def _check_bytes_like(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be str or bytes-like, not {type(value).__name__}")


def _check_path(value: Any, name: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str path, not {type(value).__name__}")
    return value


class TlsContextOptions:
    """Settings for a :class:`ClientTlsContext`.  Peer verification is on by default.

    Attributes:
        min_tls_ver (TlsVersion): lowest TLS version accepted.
        ca_dirpath (Optional[str]): directory of trusted CA certificates (OpenSSL hashed layout).
        ca_buffer (Optional[bytes]): trusted CA certificates, PEM.
        cipher_pref (TlsCipherPref): cipher-suite preference.
        alpn_list (Optional[List[str]]): ALPN protocols offered, most preferred first.
        certificate_buffer (Optional[bytes]): own certificate (chain), PEM.
        private_key_buffer (Optional[bytes]): own private key, PEM.
        pkcs12_filepath (Optional[str]): own certificate and key as a PKCS#12 file.
        pkcs12_password (Optional[str]): password of the PKCS#12 file.
        verify_peer (bool): verify the peer's certificate (and, for clients, its name).
        no_certificate_revocation (bool): accepted for compatibility; revocation lists
            are not consulted.
    """

    __slots__ = (
        "_is_server",
        "alpn_list",
        "ca_buffer",
        "ca_dirpath",
        "certificate_buffer",
        "cipher_pref",
        "min_tls_ver",
        "no_certificate_revocation",
        "pkcs12_filepath",
        "pkcs12_password",
        "private_key_buffer",
        "verify_peer",
    )

    def __init__(self) -> None:
        self.min_tls_ver = TlsVersion.DEFAULT
        self.ca_dirpath: str | None = None
        self.ca_buffer: bytes | None = None
        self.cipher_pref = TlsCipherPref.DEFAULT
        self.alpn_list: list[str] | None = None
        self.certificate_buffer: bytes | None = None
        self.private_key_buffer: bytes | None = None
        self.pkcs12_filepath: str | None = None
        self.pkcs12_password: str | None = None
        self.verify_peer = True
        self.no_certificate_revocation = False
        self._is_server = False

    def __repr__(self) -> str:  # never shows key material or passwords
        return (f"TlsContextOptions(server={self._is_server}, min_tls_ver={self.min_tls_ver!r}, "
                f"verify_peer={self.verify_peer}, alpn_list={self.alpn_list!r}, "
                f"has_certificate={self.certificate_buffer is not None or self.pkcs12_filepath is not None})")

    # -- client constructors --------------------------------------------------------
    @staticmethod
    def create_client_with_mtls_from_path(cert_filepath: str, pk_filepath: str) -> TlsContextOptions:
        """Options for a client that authenticates with a certificate and private key
        read from PEM files.

        Args:
            cert_filepath (str): path of the certificate (chain), PEM.
            pk_filepath (str): path of the private key, PEM.
        """
        cert = _tls.read_file(_check_path(cert_filepath, "cert_filepath"), "certificate")
        key = _tls.read_file(_check_path(pk_filepath, "pk_filepath"), "private key")
        return TlsContextOptions.create_client_with_mtls(cert, key)

    @staticmethod
    def create_client_with_mtls(cert_buffer: bytes, key_buffer: bytes) -> TlsContextOptions:
        """Options for a client that authenticates with a certificate and private key
        given in memory (PEM).

        Args:
            cert_buffer (bytes): certificate (chain), PEM.
            key_buffer (bytes): private key, PEM.
        """
        opt = TlsContextOptions()
        opt.certificate_buffer = _check_bytes_like(cert_buffer, "cert_buffer")
        opt.private_key_buffer = _check_bytes_like(key_buffer, "key_buffer")
        return opt

    @staticmethod
    def create_client_with_mtls_pkcs11(*, pkcs11_lib: Pkcs11Lib, user_pin: str | None,
                                       slot_id: int | None = None, token_label: str | None = None,
                                       private_key_label: str | None = None,
                                       cert_file_path: str | None = None,
                                       cert_file_contents: Any = None) -> TlsContextOptions:
        """Client mTLS with a key held by a PKCS#11 token.  Not available in crtpy:
        raises ``AwsCrtError(AWS_ERROR_PLATFORM_NOT_SUPPORTED)``."""
        raise error("AWS_ERROR_PLATFORM_NOT_SUPPORTED", "PKCS#11 is not available in crtpy")

    @staticmethod
    def create_client_with_mtls_pkcs12(pkcs12_filepath: str, pkcs12_password: str) -> TlsContextOptions:
        """Options for a client that authenticates with a certificate and key from a
        PKCS#12 file.

        Args:
            pkcs12_filepath (str): path of the PKCS#12 file.
            pkcs12_password (str): its password.
        """
        opt = TlsContextOptions()
        opt.pkcs12_filepath = _check_path(pkcs12_filepath, "pkcs12_filepath")
        if pkcs12_password is not None and not isinstance(pkcs12_password, str):
            raise TypeError("pkcs12_password must be a str")
        opt.pkcs12_password = pkcs12_password
        return opt

    @staticmethod
    def create_client_with_mtls_windows_cert_store_path(cert_path: str) -> TlsContextOptions:
        """Client mTLS with a certificate from the Windows certificate store.  Not
        available in crtpy: raises ``AwsCrtError(AWS_ERROR_PLATFORM_NOT_SUPPORTED)``."""
        _check_path(cert_path, "cert_path")
        raise error("AWS_ERROR_PLATFORM_NOT_SUPPORTED",
                    "the Windows certificate store is not available in crtpy")

    # -- server constructors --------------------------------------------------------
    @staticmethod
    def create_server_from_path(cert_filepath: str, pk_filepath: str) -> TlsContextOptions:
        """Options for a TLS server, certificate and key read from PEM files.
        Clients are not asked for certificates (``verify_peer`` is False)."""
        cert = _tls.read_file(_check_path(cert_filepath, "cert_filepath"), "certificate")
        key = _tls.read_file(_check_path(pk_filepath, "pk_filepath"), "private key")
        return TlsContextOptions.create_server(cert, key)

    @staticmethod
    def create_server(cert_buffer: bytes, key_buffer: bytes) -> TlsContextOptions:
        """Options for a TLS server, certificate and key given in memory (PEM)."""
        opt = TlsContextOptions.create_client_with_mtls(cert_buffer, key_buffer)
        opt.verify_peer = False
        opt._is_server = True
        return opt

    @staticmethod
    def create_server_pkcs12(pkcs12_filepath: str, pkcs12_password: str) -> TlsContextOptions:
        """Options for a TLS server, certificate and key from a PKCS#12 file."""
        opt = TlsContextOptions.create_client_with_mtls_pkcs12(pkcs12_filepath, pkcs12_password)
        opt.verify_peer = False
        opt._is_server = True
        return opt

    # -- trust store ----------------------------------------------------------------
    def override_default_trust_store_from_path(self, ca_dirpath: str | None = None,
                                               ca_filepath: str | None = None) -> None:
        """Trust only these CA certificates instead of the system's.

        Args:
            ca_dirpath (Optional[str]): directory of CA certificates (OpenSSL hashed layout).
            ca_filepath (Optional[str]): PEM file of CA certificates.
        """
        if ca_dirpath is None and ca_filepath is None:
            raise ValueError("give ca_dirpath, ca_filepath or both")
        if ca_filepath is not None:
            self.override_default_trust_store(_tls.read_file(_check_path(ca_filepath, "ca_filepath"),
                                                             "CA certificate"))
        if ca_dirpath is not None:
            path = _check_path(ca_dirpath, "ca_dirpath")
            if not os.path.isdir(path):
                raise error("AWS_ERROR_FILE_INVALID_PATH", f"CA directory not found: {path}")
            self.ca_dirpath = path

    def override_default_trust_store(self, rootca_buffer: bytes) -> None:
        """Trust only the CA certificates in ``rootca_buffer`` (PEM) instead of the system's."""
        self.ca_buffer = _check_bytes_like(rootca_buffer, "rootca_buffer")


class ClientTlsContext(NativeResource):
    """A TLS context built from :class:`TlsContextOptions` (Python ``ssl`` underneath).

    Invalid certificates, keys or settings raise here, not at connect time.

    Args:
        options (TlsContextOptions): the settings.
    """

    __slots__ = ("_contexts", "_lock", "_options")

    def __init__(self, options: TlsContextOptions) -> None:
        if not isinstance(options, TlsContextOptions):
            raise TypeError("options must be a TlsContextOptions")
        super().__init__()
        # a private snapshot, so later changes to ``options`` do not leak in
        snap = TlsContextOptions()
        for name in TlsContextOptions.__slots__:
            setattr(snap, name, getattr(options, name))
        snap.alpn_list = _check_alpn(options.alpn_list)
        self._options = snap
        self._lock = threading.Lock()
        self._contexts: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._ssl_context_for(tuple(snap.alpn_list or ()))  # validate now

    def _ssl_context_for(self, alpn: tuple[str, ...]) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get(alpn)
            if ctx is None:
                ctx = _tls.build_context(self._options, server=self._options._is_server, alpn=alpn)
                self._contexts[alpn] = ctx
            return ctx

    @property
    def _is_server(self) -> bool:
        return bool(self._options._is_server)

    def new_connection_options(self) -> TlsConnectionOptions:
        """Connection options using this context (server name and ALPN can be set on them)."""
        return TlsConnectionOptions(self)

    def __repr__(self) -> str:
        return f"ClientTlsContext({self._options!r})"


def _check_alpn(alpn_list: Any) -> list[str] | None:
    if alpn_list is None:
        return None
    if isinstance(alpn_list, str):
        raise TypeError("alpn_list must be a list of str, not a str")
    result = []
    for p in alpn_list:
        if not isinstance(p, str):
            raise TypeError("alpn_list must hold str items")
        if not 0 < len(p.encode()) < 256:
            raise ValueError(f"invalid ALPN protocol name {p!r}")
        result.append(p)
    return result


class TlsConnectionOptions(NativeResource):
    """Per-connection TLS settings: the context plus server name and ALPN list.

    Args:
        tls_ctx (ClientTlsContext): the TLS context.

    Attributes:
        tls_ctx (ClientTlsContext): the TLS context.
    """

    __slots__ = ("_alpn_list", "_server_name", "tls_ctx")

    def __init__(self, tls_ctx: ClientTlsContext) -> None:
        if not isinstance(tls_ctx, ClientTlsContext):
            raise TypeError("tls_ctx must be a ClientTlsContext")
        super().__init__()
        self.tls_ctx = tls_ctx
        self._server_name: str | None = None
        self._alpn_list: list[str] | None = tls_ctx._options.alpn_list

    def set_alpn_list(self, alpn_list: list[str] | None) -> None:
        """Offer these ALPN protocols (most preferred first) instead of the context's.

        Args:
            alpn_list (Optional[List[str]]): protocol names, or None for none.
        """
        self._alpn_list = _check_alpn(alpn_list)

    def set_server_name(self, server_name: str) -> None:
        """The name sent in SNI and checked against the server's certificate
        (default: the host connected to).

        Args:
            server_name (str): a host name or IP address.
        """
        if not isinstance(server_name, str):
            raise TypeError("server_name must be a str")
        self._server_name = server_name

    def _ssl_context(self) -> ssl.SSLContext:
        """The ``ssl.SSLContext`` for connections made with these options."""
        self._check_fork()
        return self.tls_ctx._ssl_context_for(tuple(self._alpn_list or ()))

    def __repr__(self) -> str:
        return f"TlsConnectionOptions(server_name={self._server_name!r}, alpn_list={self._alpn_list!r})"


def is_alpn_available() -> bool:
    """Whether ALPN can be used with TLS connections (always True with Python's ssl)."""
    import ssl

    return bool(getattr(ssl, "HAS_ALPN", False))


# ----------------------------------------------------------------------------------------
# streams
class InputStream(NativeResource):
    """A readable stream given to crtpy (for example a request body).

    Wraps a file-like object with ``readinto`` (preferred, no copy) or ``read``, and
    optionally ``seek``/``tell``.  A non-blocking stream may return None to mean "no data
    yet".

    Args:
        stream (io.IOBase): the file-like object.
    """

    __slots__ = ("_stream",)

    def __init__(self, stream: _pyio.IOBase) -> None:
        if isinstance(stream, InputStream):
            raise TypeError("stream is already an InputStream")
        if not (hasattr(stream, "readinto") or hasattr(stream, "read")):
            raise TypeError("stream must be a file-like object with readinto() or read()")
        super().__init__()
        self._stream = stream

    @classmethod
    def wrap(cls, stream: _pyio.IOBase | InputStream | None, allow_none: bool = False) -> InputStream | None:
        """Return ``stream`` if it already is an InputStream, else wrap it.

        Args:
            stream: a file-like object, an InputStream, or None.
            allow_none (bool): return None for None instead of raising.
        """
        if stream is None:
            if allow_none:
                return None
            raise TypeError("stream must not be None")
        if isinstance(stream, InputStream):
            return stream
        return cls(stream)

    def _read_into(self, buf: memoryview | bytearray) -> int | None:
        """Read up to ``len(buf)`` bytes into ``buf``: the count, 0 at end of stream,
        None when a non-blocking stream has no data yet."""
        stream = self._stream
        readinto = getattr(stream, "readinto", None)
        try:
            if readinto is not None:
                return readinto(buf)  # type: ignore[no-any-return]
            data = stream.read(len(buf))
        except BlockingIOError:
            return None
        except Exception as exc:
            raise error("AWS_IO_STREAM_READ_FAILED", f"reading the stream failed: {exc!r}") from exc
        if data is None:
            return None
        n = len(data)
        buf[:n] = data
        return n

    def _seek(self, offset: int, whence: int = 0) -> int:
        seek = getattr(self._stream, "seek", None)
        if seek is None:
            raise error("AWS_IO_STREAM_SEEK_UNSUPPORTED", "the stream cannot seek")
        try:
            return int(seek(offset, whence))
        except (OSError, ValueError) as exc:
            raise error("AWS_IO_STREAM_SEEK_FAILED", f"seeking the stream failed: {exc}") from exc

    def _length(self) -> int | None:
        """Total length if the stream can tell it (seekable), else None."""
        stream = self._stream
        try:
            if hasattr(stream, "getbuffer"):
                return len(stream.getbuffer())
            if not (hasattr(stream, "seek") and hasattr(stream, "tell")):
                return None
            if hasattr(stream, "seekable") and not stream.seekable():
                return None
            pos = stream.tell()
            end = stream.seek(0, 2)
            stream.seek(pos, 0)
            return int(end)
        except (OSError, ValueError, AttributeError):
            return None


# ----------------------------------------------------------------------------------------
#: Jitter applied to retry delays (defined once, in the runtime's backoff helper).
ExponentialBackoffJitterMode = _JitterMode
ExponentialBackoffJitterMode.__module__ = __name__
