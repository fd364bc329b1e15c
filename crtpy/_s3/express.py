"""S3 Express One Zone sessions.

A request signed with ``AwsSigningAlgorithm.V4_S3EXPRESS`` is not signed with the
account credentials: the client first calls CreateSession (``GET /?session=`` on the
request's endpoint, signed with SigV4 for the ``s3express`` service with the account
credentials), which answers with short-lived session credentials; the request is then
signed with those, the session token travelling in ``x-amz-s3session-token``.

Sessions are cached per (endpoint, account credentials), at most ``CAPACITY`` of them,
least recently used dropped first.  A session within ``EXPIRED_MARGIN`` seconds of its
expiration is not used; one within ``REFRESH_MARGIN`` seconds is still used while a new
one is fetched in the background, so busy clients never wait for a refresh.  Concurrent
requests for the same endpoint share one CreateSession call.

Failures use the reference's names: an error response to CreateSession gives
AWS_ERROR_S3EXPRESS_CREATE_SESSION_FAILED, an unreadable reply
AWS_AUTH_PROVIDER_PARSER_UNEXPECTED_RESPONSE, a success status other than 200
AWS_AUTH_CREDENTIALS_PROVIDER_HTTP_STATUS_FAILURE; connection failures keep their own.

Everything here runs on the client's loop thread.
"""
from __future__ import annotations

import asyncio
import collections
import datetime
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

_log = logging.getLogger("crtpy.s3")

SERVICE = "s3express"
SESSION_TARGET = "/?session="
USER_AGENT = "crtpy/s3express-session"
CAPACITY = 100
EXPIRED_MARGIN = 5.0
REFRESH_MARGIN = 60.0

_FIELD = {name: re.compile(rb"<(?:\w+:)?" + name.encode() + rb">\s*([^<]*?)\s*</(?:\w+:)?" + name.encode() + rb">")
          for name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")}
_CREDENTIALS = re.compile(rb"<(?:\w+:)?Credentials[\s>].*?</(?:\w+:)?Credentials>", re.DOTALL)


class SessionFailure(Exception):
    """CreateSession failed; ``name`` is the error name the request fails with."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def parse_expiration(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 (or RFC 1123) timestamp."""
    value = text.strip()
    try:
        dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            dt = parsedate_to_datetime(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad Expiration {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def parse_create_session(body: bytes) -> tuple[str, str, str, float]:
    """(access key id, secret, session token, expiration epoch) of a CreateSession
    reply; raises SessionFailure(AWS_AUTH_PROVIDER_PARSER_UNEXPECTED_RESPONSE)."""
    block = _CREDENTIALS.search(body)
    values: dict[str, str] = {}
    if block is not None:
        for name, pattern in _FIELD.items():
            m = pattern.search(block.group(0))
            if m is not None and m.group(1):
                from .xml import _unescape

                values[name] = _unescape(m.group(1))
    try:
        if len(values) != len(_FIELD):
            raise ValueError("the reply lacks some of the session credentials")
        expires = parse_expiration(values["Expiration"])
    except ValueError as exc:
        raise SessionFailure("AWS_AUTH_PROVIDER_PARSER_UNEXPECTED_RESPONSE",
                             f"CreateSession reply not understood: {exc}") from None
    return values["AccessKeyId"], values["SecretAccessKey"], values["SessionToken"], expires


class _Session:
    __slots__ = ("expires", "provider")

    def __init__(self, provider: Any, expires: float) -> None:
        self.provider = provider  # a static AwsCredentialsProvider holding the session
        self.expires = expires

    def usable(self, now: float) -> bool:
        return now + EXPIRED_MARGIN < self.expires

    def ageing(self, now: float) -> bool:
        return now + REFRESH_MARGIN >= self.expires


#: fetch(host_header, account signing config) -> (status, body) of a CreateSession call,
#: raising the request's failure types for error responses and connection problems
Fetch = Callable[[str, Any], Awaitable[tuple[int, bytes]]]


class ExpressSessions:
    """The client's session cache (loop thread only)."""

    def __init__(self) -> None:
        self._cache: collections.OrderedDict[tuple[str, str], _Session] = collections.OrderedDict()
        self._pending: dict[tuple[str, str], asyncio.Future[_Session]] = {}
        self.created = 0  # CreateSession calls that succeeded (for tests and logs)

    @staticmethod
    async def _account_key(config: Any) -> str:
        fut = config.credentials_provider.get_credentials()
        creds = await asyncio.wrap_future(fut) if not fut.done() else fut.result()
        digest = hashlib.sha256((creds.access_key_id + "\0" + creds.secret_access_key).encode()).hexdigest()
        return digest

    async def provider_for(self, host_header: str, config: Any, fetch: Fetch) -> Any:
        """A credentials provider with a valid session for ``host_header``, creating or
        refreshing the session as needed."""
        key = (host_header, await self._account_key(config))
        now = time.time()
        session = self._cache.get(key)
        if session is not None:
            self._cache.move_to_end(key)
            if session.usable(now):
                if session.ageing(now) and key not in self._pending:
                    self._start(key, host_header, config, fetch)  # refreshed in the background
                return session.provider
            del self._cache[key]
        fut = self._pending.get(key) or self._start(key, host_header, config, fetch)
        return (await asyncio.shield(fut)).provider

    def _start(self, key: tuple[str, str], host_header: str, config: Any,
               fetch: Fetch) -> asyncio.Future[_Session]:
        # its own task: a cancelled request must not cancel a session others wait for
        fut = asyncio.ensure_future(self._create(key, host_header, config, fetch))
        fut.add_done_callback(_consume)  # its failure is seen even if every waiter went away
        self._pending[key] = fut
        return fut

    async def _create(self, key: tuple[str, str], host_header: str, config: Any, fetch: Fetch) -> _Session:
        from ..auth import AwsCredentialsProvider

        try:
            status, body = await fetch(host_header, config)
            if status != 200:
                raise SessionFailure("AWS_AUTH_CREDENTIALS_PROVIDER_HTTP_STATUS_FAILURE",
                                     f"CreateSession answered HTTP {status}")
            akid, secret, token, expires = parse_create_session(body)
            session = _Session(AwsCredentialsProvider.new_static(akid, secret, token), expires)
        except BaseException:
            self._cache.pop(key, None)  # a failed refresh drops the old session too
            raise
        finally:
            self._pending.pop(key, None)
        self.created += 1
        _log.debug("S3 Express session for %s valid for %.0fs", host_header, expires - time.time())
        self._cache[key] = session
        self._cache.move_to_end(key)
        while len(self._cache) > CAPACITY:
            self._cache.popitem(last=False)
        return session

    def clear(self) -> None:
        self._cache.clear()
        for fut in list(self._pending.values()):
            fut.cancel()
        self._pending.clear()


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        _log.debug("S3 Express CreateSession failed: %s", fut.exception())
