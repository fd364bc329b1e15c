"""``aws_sign_request``: credentials, payload hash, the signer, and applying the result."""
from __future__ import annotations

import hashlib
import io
from typing import Any

from .._errors import error
from .._runtime.futures import CrtFuture
from . import signing
from .done_future import DoneFuture

_CHUNK = 256 * 1024


def payload_hash(body: Any, keep: list[bytes] | None = None) -> str:
    """Hex SHA-256 of a request body (None is empty), read from its start; the stream is
    left rewound to its start, as the reference does.  A stream that cannot seek is read
    to its end: its bytes are appended to ``keep`` so the caller can send them."""
    if body is None:
        return signing.EMPTY_SHA256
    from .._http.body import _raw

    raw = _raw(body)
    if isinstance(raw, io.BytesIO):
        raw.seek(0)
        with raw.getbuffer() as view:
            return hashlib.sha256(view).hexdigest()
    seekable = False
    try:
        seekable = bool(raw.seekable())
    except (AttributeError, OSError, ValueError):
        pass
    if seekable:
        raw.seek(0)
    h = hashlib.sha256()
    readinto = getattr(raw, "readinto", None)
    if readinto is not None:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = readinto(view)
            if not n:
                break
            h.update(view[:n])
            if not seekable and keep is not None:
                keep.append(bytes(view[:n]))
    else:
        while True:
            data = raw.read(_CHUNK)
            if not data:
                break
            h.update(data)
            if not seekable and keep is not None:
                keep.append(bytes(data))
    if seekable:
        raw.seek(0)
    return h.hexdigest()


def _seekable(body: Any) -> bool:
    from .._http.body import _raw

    raw = _raw(body)
    try:
        return bool(raw.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _headers_of(request: Any) -> Any:
    headers = request.headers
    pairs = getattr(headers, "_pairs", None)
    return pairs if isinstance(pairs, list) else list(headers)


def sign_now(request: Any, config: Any, creds: Any) -> Any:
    """Sign ``request`` in place with ``creds``; returns the request."""
    if creds is None:
        raise error("AWS_AUTH_SIGNING_NO_CREDENTIALS")
    params = config._params
    body_value = params.signed_body_value
    if body_value is None:
        body = request.body_stream
        kept: list[bytes] = []
        body_value = payload_hash(body, kept)
        if kept or (body is not None and not _seekable(body)):
            # the body could not be rewound: send the bytes that were read
            request.body_stream = io.BytesIO(b"".join(kept))
    result = signing.sign(request.method, request.path, _headers_of(request), body_value,
                          creds._access_key_id, creds._secret_access_key, creds._session_token, params)
    if result.path is not None:
        request.path = result.path
    if result.headers:
        headers = request.headers
        pairs = getattr(headers, "_pairs", None)
        if type(pairs) is list:
            pairs.extend(result.headers)  # already-checked str pairs: skip per-pair checks
        else:
            for name, value in result.headers:
                headers.add(name, value)
    return request


def sign_request(request: Any, config: Any) -> CrtFuture:
    provider = config._credentials_provider
    if provider is None:
        raise error("AWS_AUTH_SIGNING_INVALID_CONFIGURATION", "The signing config has no credentials provider.")
    source = provider._binding
    creds = source.peek()
    if creds is not None:
        try:
            return DoneFuture(sign_now(request, config, creds))
        except Exception as exc:  # noqa: BLE001 - reported through the future
            return DoneFuture(None, exc)
    fut = CrtFuture()
    creds_future = source.get()

    def got(f: Any) -> None:
        if f.cancelled():
            fut.cancel()
            return
        exc = f.exception()
        if exc is not None:
            fut.try_set_exception(exc)
            return
        try:
            fut.try_set_result(sign_now(request, config, f.result()))
        except BaseException as exc2:  # noqa: BLE001
            fut.try_set_exception(exc2)

    creds_future.add_done_callback_inline(got)
    return fut
