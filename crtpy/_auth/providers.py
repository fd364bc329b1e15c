"""Credentials sources behind ``crtpy.auth.AwsCredentialsProvider``.

Every source has ``get() -> CrtFuture`` (resolving to ``crtpy.auth.AwsCredentials``) and
``peek()``, which returns credentials at once when the source has them without any work
(static credentials, a fresh cache) so that signing can skip the future.

Blocking work (reading files, running a credential process) runs on the shared I/O worker
pool; network sources run on a loop thread through crtpy's HTTP client.  Sources that
fetch are wrapped in :class:`CachingSource`, which keeps the credentials until shortly
before they expire and lets concurrent callers share one fetch.

Credentials never reach a log line or an exception message from here: errors carry only
the error name and a fixed description.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import error
from .._runtime.futures import CrtFuture, completed, failed

if TYPE_CHECKING:
    from ..auth import AwsCredentials

_log = logging.getLogger("crtpy.auth")

#: Credentials are refreshed when they expire within this many seconds.
REFRESH_MARGIN_SEC = 60.0
#: How long credentials without an expiration are kept by a cache.
NON_EXPIRING_CACHE_SEC = 15 * 60.0

def _worker_pool() -> Any:
    # The runtime's shared I/O pool: leak checks retire its idle workers.
    from .._runtime import blocking

    return blocking._pool


def make_credentials(access_key_id: str, secret_access_key: str, session_token: str | None = None,
                     expiration: float | None = None) -> Any:
    """Build a ``crtpy.auth.AwsCredentials`` (expiration as a POSIX timestamp)."""
    from ..auth import AwsCredentials

    return AwsCredentials._new(access_key_id, secret_access_key, session_token or None,
                               None if expiration is None else int(expiration))


class _Job:
    """One blocking call for the worker pool; it drops its references once done, so an
    idle worker keeps no credentials alive."""

    __slots__ = ("fn", "fut")

    def __init__(self, fn: Callable[[], Any], fut: CrtFuture) -> None:
        self.fn: Any = fn
        self.fut: Any = fut

    def __call__(self) -> None:
        fn, fut = self.fn, self.fut
        self.fn = self.fut = None
        if not fut.set_running_or_notify_cancel():
            return
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the future
            fut.try_set_exception(exc)
        else:
            fut.try_set_result(value)


def run_blocking(fn: Callable[[], Any]) -> CrtFuture:
    """Run ``fn()`` on an I/O worker thread; the future gets its result or exception."""
    fut = CrtFuture()
    _worker_pool().submit(_Job(fn, fut))
    return fut


class Source:
    """Base of all credentials sources."""

    def get(self) -> CrtFuture:  # pragma: no cover - abstract
        raise NotImplementedError

    def peek(self) -> Any:
        """Credentials available right now without work, or None."""
        return None


class StaticSource(Source):
    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials
        self._future = completed(credentials)

    def get(self) -> CrtFuture:
        return self._future

    def peek(self) -> Any:
        return self._credentials


class EnvironmentSource(Source):
    """AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, read on every call."""

    def fetch(self) -> Any:
        env = os.environ
        ak = env.get("AWS_ACCESS_KEY_ID")
        sk = env.get("AWS_SECRET_ACCESS_KEY")
        if not ak or not sk:
            raise error("AWS_AUTH_CREDENTIALS_PROVIDER_INVALID_ENVIRONMENT")
        return make_credentials(ak, sk, env.get("AWS_SESSION_TOKEN") or None)

    def get(self) -> CrtFuture:
        try:
            return completed(self.fetch())
        except BaseException as exc:  # noqa: BLE001
            return failed(exc)


class DelegateSource(Source):
    """A user callable returning AwsCredentials, called on the caller's thread."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn

    def get(self) -> CrtFuture:
        from ..auth import AwsCredentials

        try:
            creds = self._fn()
        except Exception as exc:  # noqa: BLE001 - reported through the future
            # The exception text could hold anything the callable saw: log only its type.
            _log.warning("credentials delegate raised %s", type(exc).__name__)
            return failed(error("AWS_AUTH_CREDENTIALS_PROVIDER_DELEGATE_FAILURE"))
        if not isinstance(creds, AwsCredentials):
            _log.warning("credentials delegate returned %s, not AwsCredentials", type(creds).__name__)
            return failed(error("AWS_AUTH_CREDENTIALS_PROVIDER_DELEGATE_FAILURE"))
        return completed(creds)


class BlockingSource(Source):
    """A source whose fetch blocks (files, processes): run on a worker thread."""

    def __init__(self, fetch: Callable[[], Any]) -> None:
        self._fetch = fetch

    def get(self) -> CrtFuture:
        return run_blocking(self._fetch)


class ChainSource(Source):
    """Ask each source in turn; the first success wins, else the last error."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self._sources = list(sources)

    def get(self) -> CrtFuture:
        result = CrtFuture()
        self._try(0, result, None)
        return result

    def _try(self, index: int, result: CrtFuture, last_exc: BaseException | None) -> None:
        while index < len(self._sources):
            source = self._sources[index]
            try:
                fut = source.get()
            except BaseException as exc:  # noqa: BLE001
                last_exc = exc
                index += 1
                continue
            if fut.done():
                err = fut.exception()
                if err is None:
                    result.try_set_result(fut.result())
                    return
                last_exc = err
                index += 1
                continue
            nxt = index + 1

            def done(f: Any, nxt: int = nxt) -> None:
                e = f.exception()
                if e is None:
                    result.try_set_result(f.result())
                else:
                    self._try(nxt, result, e)

            fut.add_done_callback_inline(done)
            return
        result.try_set_exception(last_exc if last_exc is not None
                                 else error("AWS_AUTH_SIGNING_NO_CREDENTIALS"))


def _expiry_of(creds: AwsCredentials) -> float | None:
    return creds._expiration_ts


class CachingSource(Source):
    """Keeps the inner source's credentials until ``margin`` seconds before they expire;
    callers arriving while a fetch runs share it."""

    def __init__(self, inner: Source, margin: float = REFRESH_MARGIN_SEC,
                 non_expiring_ttl: float = NON_EXPIRING_CACHE_SEC,
                 clock: Callable[[], float] = time.time) -> None:
        self._inner = inner
        self._margin = margin
        self._ttl = non_expiring_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._creds: Any = None
        self._valid_until = 0.0
        self._pending: CrtFuture | None = None

    def peek(self) -> Any:
        creds = self._creds
        if creds is not None and self._clock() < self._valid_until:
            return creds
        return None

    def get(self) -> CrtFuture:
        creds = self.peek()
        if creds is not None:
            return completed(creds)
        with self._lock:
            creds = self.peek()
            if creds is not None:
                return completed(creds)
            if self._pending is not None:
                return _follow(self._pending)
            pending = CrtFuture()
            self._pending = pending
        try:
            inner = self._inner.get()
        except BaseException as exc:  # noqa: BLE001
            inner = failed(exc)
        inner.add_done_callback_inline(self._fetched)
        return _follow(pending)

    def _fetched(self, f: Any) -> None:
        exc = f.exception()
        with self._lock:
            pending, self._pending = self._pending, None
            if exc is None:
                creds = f.result()
                exp = _expiry_of(creds)
                now = self._clock()
                self._creds = creds
                self._valid_until = now + self._ttl if exp is None else exp - self._margin
        if pending is None:
            return
        if exc is None:
            pending.try_set_result(creds)
        else:
            pending.try_set_exception(exc)

    def invalidate(self) -> None:
        with self._lock:
            self._creds = None
            self._valid_until = 0.0


def _follow(source: CrtFuture) -> CrtFuture:
    """A new future completing like ``source`` (so one caller's cancel hurts no other)."""
    out = CrtFuture()

    def done(f: Any) -> None:
        if f.cancelled():
            out.cancel()
            return
        exc = f.exception()
        if exc is None:
            out.try_set_result(f.result())
        else:
            out.try_set_exception(exc)

    source.add_done_callback_inline(done)
    return out


# -- credential_process -------------------------------------------------------------------

def parse_timestamp(text: str) -> float:
    """POSIX time of an ISO 8601 timestamp such as ``2019-05-29T00:21:43Z``."""
    from datetime import datetime, timezone

    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def run_credential_process(command: str) -> Any:
    """Run a ``credential_process`` command through the shell and parse its JSON output.

    Failures give ``AWS_ERROR_STRING_MATCH_NOT_FOUND`` as the reference does; neither the
    output nor stderr is ever logged (both may hold secrets)."""
    import json
    import subprocess

    try:
        proc = subprocess.run(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        _log.warning("credential_process could not be run")
        raise error("AWS_ERROR_STRING_MATCH_NOT_FOUND", "The credential process failed.") from None
    if proc.returncode != 0:
        _log.warning("credential_process exited with status %d", proc.returncode)
        raise error("AWS_ERROR_STRING_MATCH_NOT_FOUND", "The credential process failed.")
    try:
        doc = json.loads(proc.stdout)
        if not isinstance(doc, dict) or doc.get("Version") != 1:
            raise ValueError("unsupported version")
        ak = doc["AccessKeyId"]
        sk = doc["SecretAccessKey"]
        token = doc.get("SessionToken")
        exp_text = doc.get("Expiration")
        if not isinstance(ak, str) or not isinstance(sk, str) or not ak or not sk:
            raise ValueError("bad keys")
        if token is not None and not isinstance(token, str):
            raise ValueError("bad token")
        expiration = parse_timestamp(exp_text) if exp_text else None
    except (ValueError, KeyError, TypeError):
        _log.warning("credential_process printed no valid credentials document")
        raise error("AWS_ERROR_STRING_MATCH_NOT_FOUND",
                    "The credential process printed no valid credentials.") from None
    return make_credentials(ak, sk, token, expiration)


def new_process_source(profile_to_use: str | None) -> Source:
    from . import profile as _profile

    profiles = _profile.load(require_any=False)
    prof = profiles.get(_profile.profile_name(profile_to_use))
    command = prof.get("credential_process") if prof else None
    if not command:
        raise error("AWS_ERROR_STRING_MATCH_NOT_FOUND", "No credential_process in the selected profile.")
    return CachingSource(BlockingSource(lambda: run_credential_process(command)))


# -- profile --------------------------------------------------------------------------------

class ProfileSource(Source):
    """Credentials from a profile: static keys, ``credential_process``, or a role assumed
    through STS (``role_arn`` with ``source_profile`` / ``web_identity_token_file``)."""

    def __init__(self, bootstrap: Any, name: str | None, config_file: str | None,
                 credentials_file: str | None) -> None:
        from . import profile as _profile

        self._bootstrap = bootstrap
        self._profiles = _profile.load(config_file, credentials_file)
        self._name = _profile.profile_name(name)
        prof = self._profiles.get(self._name)
        if prof is None:
            raise error("AWS_ERROR_STRING_MATCH_NOT_FOUND", "The selected profile is in neither file.")
        self._profile = prof
        self._inner = CachingSource(BlockingSource(self._resolve_blocking))

    def get(self) -> CrtFuture:
        return self._inner.get()

    def peek(self) -> Any:
        return self._inner.peek()

    def _resolve_blocking(self) -> Any:
        return resolve_profile(self._profiles, self._name, self._bootstrap, set())


def _static_from(prof: dict[str, str]) -> Any:
    ak = prof.get("aws_access_key_id")
    sk = prof.get("aws_secret_access_key")
    if not ak or not sk:
        return None
    return make_credentials(ak, sk, prof.get("aws_session_token") or None)


def resolve_profile(profiles: Any, name: str, bootstrap: Any, visited: set[str]) -> Any:
    """Credentials of profile ``name`` (blocking: may run a process or call STS)."""
    prof = profiles.get(name)
    if prof is None:
        raise error("AWS_AUTH_CREDENTIALS_PROVIDER_PROFILE_SOURCE_FAILURE")
    role_arn = prof.get("role_arn")
    if role_arn:
        if name in visited:
            raise error("AWS_AUTH_PROFILE_STS_CREDENTIALS_PROVIDER_CYCLE_FAILURE")
        visited.add(name)
        from . import sts

        token_file = prof.get("web_identity_token_file")
        session_name = prof.get("role_session_name") or f"aws-common-runtime-profile-config-{int(time.time())}"
        if token_file and not prof.get("source_profile"):
            return sts.assume_role_with_web_identity_blocking(
                bootstrap, role_arn, session_name, token_file, region=prof.get("region"))
        source_name = prof.get("source_profile")
        if source_name:
            if source_name == name:
                base = _static_from(prof)
                if base is None:
                    raise error("AWS_AUTH_CREDENTIALS_PROVIDER_PROFILE_SOURCE_FAILURE")
            else:
                base = resolve_profile(profiles, source_name, bootstrap, visited)
        else:
            source = prof.get("credential_source")
            if source == "Environment":
                base = EnvironmentSource().fetch()
            else:
                raise error("AWS_AUTH_CREDENTIALS_PROVIDER_PROFILE_SOURCE_FAILURE")
        return sts.assume_role_blocking(bootstrap, base, role_arn, session_name,
                                        region=prof.get("region"), external_id=prof.get("external_id"))
    command = prof.get("credential_process")
    if command:
        return run_credential_process(command)
    creds = _static_from(prof)
    if creds is None:
        raise error("AWS_AUTH_CREDENTIALS_PROVIDER_PROFILE_SOURCE_FAILURE")
    return creds
