"""Host resolution with a small TTL cache (the engine of ``crtpy.io.DefaultHostResolver``).

Lookups run ``socket.getaddrinfo`` on a crtpy I/O worker thread (so any asyncio loop can
await them), and results are kept for ``ttl`` seconds, at most ``max_hosts`` names (LRU).
Names that are not syntactically valid host names fail at once with
``AWS_IO_DNS_INVALID_NAME`` without any query leaving the machine.
"""
from __future__ import annotations

import collections
import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from .._errors import error
from .._runtime.blocking import run_blocking
from .errors import map_connect_error

DEFAULT_TTL_SEC = 30.0

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")


@dataclass(frozen=True)
class ResolvedAddress:
    """One address of a host: ``family`` is ``socket.AF_INET`` or ``socket.AF_INET6``;
    ``sockaddr`` is the getaddrinfo socket address with port 0 (scope id kept for IPv6)."""

    address: str
    family: int
    sockaddr: tuple[Any, ...]

    def with_port(self, port: int) -> tuple[Any, ...]:
        return (self.sockaddr[0], port, *self.sockaddr[2:])


def literal_address(host: str) -> ResolvedAddress | None:
    """The address if ``host`` is an IPv4/IPv6 literal (``[::1]`` accepted), else None."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    base, _, scope = text.partition("%")
    try:
        ip = ipaddress.ip_address(base)
    except ValueError:
        return None
    if ip.version == 4:
        return ResolvedAddress(text, socket.AF_INET, (text, 0))
    scope_id = 0
    if scope:
        try:
            scope_id = int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
        except OSError:
            raise error("AWS_IO_DNS_INVALID_NAME", f"unknown IPv6 scope in {host!r}") from None
    return ResolvedAddress(text, socket.AF_INET6, (base, 0, 0, scope_id))


def check_host_name(host: str) -> str:
    """Return the ASCII (IDNA) form of ``host`` or raise AWS_IO_DNS_INVALID_NAME."""
    if not isinstance(host, str):
        raise TypeError(f"host name must be str, not {type(host).__name__}")
    name = host.removesuffix(".")
    if not name or len(name) > 253:
        raise error("AWS_IO_DNS_INVALID_NAME", f"invalid host name {host!r}")
    try:
        ascii_name = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        raise error("AWS_IO_DNS_INVALID_NAME", f"invalid host name {host!r}") from None
    if not all(_LABEL.match(label) for label in ascii_name.split(".")):
        raise error("AWS_IO_DNS_INVALID_NAME", f"invalid host name {host!r}")
    return ascii_name


class HostCache:
    """Thread-safe cache of resolved host names, shared by every loop that uses it."""

    def __init__(self, max_hosts: int = 16, ttl: float = DEFAULT_TTL_SEC) -> None:
        if max_hosts < 1:
            raise ValueError("max_hosts must be at least 1")
        self.max_hosts = max_hosts
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[str, tuple[float, tuple[ResolvedAddress, ...]]] = \
            collections.OrderedDict()

    def cached(self, name: str) -> tuple[ResolvedAddress, ...] | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._entries[name]
                return None
            self._entries.move_to_end(name)
            return entry[1]

    def store(self, name: str, addresses: tuple[ResolvedAddress, ...]) -> None:
        with self._lock:
            self._entries[name] = (time.monotonic() + self.ttl, addresses)
            self._entries.move_to_end(name)
            while len(self._entries) > self.max_hosts:
                self._entries.popitem(last=False)

    def purge(self, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self._entries.clear()
            else:
                self._entries.pop(name, None)

    async def resolve(self, host: str) -> tuple[ResolvedAddress, ...]:
        """All addresses of ``host`` (IPv6 and IPv4, in the system's preferred order)."""
        literal = literal_address(host)
        if literal is not None:
            return (literal,)
        name = check_host_name(host).lower()
        hit = self.cached(name)
        if hit is not None:
            return hit
        try:
            infos = await run_blocking(socket.getaddrinfo, name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
        except Exception as exc:
            raise map_connect_error(exc, f"resolving {host!r}") from exc
        seen: set[tuple[int, object]] = set()
        addresses = []
        for family, _type, _proto, _canon, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            key = (family, sockaddr[0])
            if key in seen:
                continue
            seen.add(key)
            addresses.append(ResolvedAddress(str(sockaddr[0]), family, (sockaddr[0], 0, *sockaddr[2:])))
        if not addresses:
            raise error("AWS_IO_DNS_NO_ADDRESS_FOR_HOST", f"no address found for {host!r}")
        result = tuple(addresses)
        self.store(name, result)
        return result


_default_cache: HostCache | None = None
_default_lock = threading.Lock()


def default_cache() -> HostCache:
    """The cache used by connections made without a bootstrap."""
    global _default_cache
    with _default_lock:
        if _default_cache is None:
            _default_cache = HostCache()
        return _default_cache


def _reset_in_child() -> None:
    global _default_cache, _default_lock
    _default_cache = None
    _default_lock = threading.Lock()


from .._runtime import fork as _fork

_fork.on_fork_child(_reset_in_child)
