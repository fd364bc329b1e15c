"""SigV4 / SigV4a / S3 Express request signing on plain data (no I/O, no crtpy.http).

The entry point is :func:`sign`: it takes the request's method, path (with query string),
header pairs, the payload hash and the credentials, and returns a :class:`SigningResult`
describing the headers to append or the new path.  Canonicalization follows the rules of
the AWS signing test suite and the reference runtime byte for byte.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from hashlib import sha256
from operator import itemgetter
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from .._errors import error

# Algorithms (values of crtpy.auth.AwsSigningAlgorithm)
V4 = 0
V4_ASYMMETRIC = 1
V4_S3EXPRESS = 2
# Signature types (values of crtpy.auth.AwsSignatureType)
HEADERS = 0
QUERY_PARAMS = 1
# Signed body header types
BODY_HEADER_NONE = 0
BODY_HEADER_X_AMZ_CONTENT_SHA256 = 1

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
HMAC_ALGORITHM = "AWS4-HMAC-SHA256"
ECDSA_ALGORITHM = "AWS4-ECDSA-P256-SHA256"

# Headers never part of the canonical request (compared lower-case).
SKIPPED_HEADERS = frozenset({
    "x-amzn-trace-id", "user-agent", "expect", "transfer-encoding", "upgrade",
    "sec-websocket-key", "sec-websocket-protocol", "sec-websocket-version",
})
# Headers that signing adds, so the caller may not set them.
_FORBIDDEN_HEADERS = frozenset({
    "authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token",
    "x-amz-region-set",
})
_FORBIDDEN_HEADERS_S3EXPRESS = _FORBIDDEN_HEADERS | {"x-amz-s3session-token"}
_FORBIDDEN_PARAMS = frozenset({
    "x-amz-signature", "x-amz-date", "x-amz-credential", "x-amz-algorithm",
    "x-amz-signedheaders", "x-amz-security-token", "x-amz-expires", "x-amz-region-set",
})

_WS = " \t\n\v\f\r"
_WS_RUN = re.compile(r"[ \t\n\v\f\r]{2,}|[\t\n\v\f\r]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(slots=True)
class SigningParams:
    """Everything from an ``AwsSigningConfig`` that signing needs, as plain values."""

    algorithm: int = V4
    signature_type: int = HEADERS
    region: str = ""
    service: str = ""
    date: datetime | None = None
    should_sign_header: Callable[..., bool] | None = None
    use_double_uri_encode: bool = True
    should_normalize_uri_path: bool = True
    signed_body_value: str | None = None
    signed_body_header_type: int = BODY_HEADER_NONE
    expiration_in_seconds: int | None = None
    omit_session_token: bool = False
    _memo: _Memo | None = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class SigningResult:
    """What signing produced.

    ``headers`` are appended to the request in order; ``path`` (when not None) replaces the
    request's path.  ``signature`` is the hex signature; ``canonical_request`` and
    ``string_to_sign`` are kept for tests and for chunk signing (the seed signature)."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    path: str | None = None
    signature: str = ""
    canonical_request: str = ""
    string_to_sign: str = ""
    amz_date: str = ""
    scope: str = ""


# -- small helpers ----------------------------------------------------------------------

_STAMPS: dict[int, str] = {}


def amz_date(date: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` of ``date`` in UTC (naive dates are local time); cached per
    second, since configs made per request share their second."""
    seconds = int(date.replace(microsecond=0).timestamp())
    stamp = _STAMPS.get(seconds)
    if stamp is None:
        stamp = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        if len(_STAMPS) >= 64:
            _STAMPS.clear()
        _STAMPS[seconds] = stamp
    return stamp


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_param(value: str | bytes) -> str:
    """Percent-encode everything but the unreserved characters (A-Z a-z 0-9 - _ . ~)."""
    return quote(value, safe="")


def _canonical_param(raw: str) -> str:
    if "%" in raw:
        if _BAD_ESCAPE.search(raw):
            raise error("AWS_ERROR_MALFORMED_INPUT_STRING")
        return quote(unquote_to_bytes(raw), safe="")
    return quote(raw, safe="")


def normalize_path(path: str) -> str:
    """Remove empty and ``.`` segments and resolve ``..`` (never above the root)."""
    if path == "/":
        return path
    out: list[str] = []
    for seg in path.split("/"):
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    if not out:
        return "/"
    result = "/" + "/".join(out)
    if path.endswith("/"):
        result += "/"
    return result


def canonical_header_value(value: str) -> str:
    value = value.strip(_WS)
    if _WS_RUN.search(value) is None:
        return value
    return _WS_RUN.sub(" ", value)


# -- signing keys ----------------------------------------------------------------------

_KEY_CACHE: dict[tuple[str, str, str, str], HmacKey] = {}
_KEY_CACHE_MAX = 256
_key_lock = threading.Lock()


class HmacKey:
    """An HMAC-SHA256 key with its inner and outer pad states precomputed, so each
    signature costs two hash-object copies instead of a full HMAC setup."""

    __slots__ = ("_inner", "_outer", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        block = key.ljust(64, b"\0")
        self._inner = sha256(block.translate(_IPAD))
        self._outer = sha256(block.translate(_OPAD))

    def digest(self, msg: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def signing_hmac_key(secret: str, datestamp: str, region: str, service: str) -> HmacKey:
    """The SigV4 signing key for a day, region and service (cached)."""
    cache_key = (secret, datestamp, region, service)
    entry = _KEY_CACHE.get(cache_key)
    if entry is not None:
        return entry
    d = hmac.digest
    k = d(("AWS4" + secret).encode(), datestamp.encode(), "sha256")
    k = d(k, region.encode(), "sha256")
    k = d(k, service.encode(), "sha256")
    entry = HmacKey(d(k, b"aws4_request", "sha256"))
    with _key_lock:
        if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
            _KEY_CACHE.clear()
        _KEY_CACHE[cache_key] = entry
    return entry


def signing_key(secret: str, datestamp: str, region: str, service: str) -> bytes:
    """The SigV4 signing key bytes for a day, region and service (cached)."""
    return signing_hmac_key(secret, datestamp, region, service).key


# -- canonical request -------------------------------------------------------------------

def _parse_target(target: str) -> tuple[str, str | None, str]:
    """Split a request target as the reference's URI parser does.

    Returns (the target without its query, the query or None, the path to canonicalize).
    A first ":" followed by "//" starts ``scheme://authority[/path][?query]`` (followed by
    a single "/" it is malformed); a target not starting with "/" begins with an
    authority (``host[:port]``); otherwise it is ``path[?query]``."""
    if not target:
        raise error("AWS_ERROR_MALFORMED_INPUT_STRING")
    colon = target.find(":")
    if colon >= 0 and target.startswith("/", colon + 1):
        if not target.startswith("//", colon + 1):
            raise error("AWS_ERROR_MALFORMED_INPUT_STRING")
        base = colon + 3
        if base >= len(target):
            raise error("AWS_ERROR_MALFORMED_INPUT_STRING")
    elif target[0] == "/":
        q = target.find("?")
        if q < 0:
            return target, None, target
        return target[:q], target[q + 1:], target[:q]
    else:
        base = 0
    q = target.find("?", base)
    head = target if q < 0 else target[:q]
    query = None if q < 0 else target[q + 1:]
    rest = head[base:]
    slash = rest.find("/")
    authority = rest if slash < 0 else rest[:slash]
    path = "" if slash < 0 else rest[slash:]
    host = authority[authority.find("@") + 1:]  # user info is dropped
    pc = host.rfind(":")
    if pc >= 0:
        port = host[pc + 1:]
        if port and not (port.isdigit() and port.isascii()):
            raise error("AWS_ERROR_MALFORMED_INPUT_STRING")
        host = host[:pc] + (":" + port if port and int(port) else "")
    # A rebuilt target (query-parameter signing) is scheme://host[:port]path, as the
    # reference's URI builder writes it.
    rebuilt = target[:base] + host + path
    return rebuilt, query, path


def _parse_query(query: str | None) -> list[tuple[str, str]]:
    """Raw (key, value) pairs of a query string, empty parameters dropped."""
    if not query:
        return []
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        eq = part.find("=")
        if eq < 0:
            pairs.append((part, ""))
        else:
            pairs.append((part[:eq], part[eq + 1:]))
    return pairs


_HEADER_CACHE: dict[tuple[str, str], Any] = {}
_PARAM_CACHE: dict[str, str] = {}
_CACHE_MAX = 4096
_SKIP = ("", "", "")


def _header_entry(pair: tuple[str, str]) -> tuple[str, str, str]:
    """(lower-case name, canonical value, "name:value") of a header pair, cached."""
    entry = _HEADER_CACHE.get(pair)
    if entry is None:
        name, value = pair
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("header names and values must be str")
        lname = name.lower()
        if lname in SKIPPED_HEADERS:
            entry = _SKIP
        else:
            cval = canonical_header_value(value)
            entry = (lname, cval, lname + ":" + cval)
        if len(_HEADER_CACHE) >= _CACHE_MAX:
            _HEADER_CACHE.clear()
        _HEADER_CACHE[(name, value)] = entry
    return entry


def _canonical_param_cached(raw: str) -> str:
    enc = _PARAM_CACHE.get(raw)
    if enc is None:
        enc = _canonical_param(raw)
        if len(_PARAM_CACHE) >= _CACHE_MAX:
            _PARAM_CACHE.clear()
        _PARAM_CACHE[raw] = enc
    return enc


def _header_block(entries: list[tuple[str, str, str]]) -> tuple[str, str]:
    """(canonical headers text, signed header names) from entries sorted by name."""
    if not entries:
        return "\n", ""
    names, _, texts = zip(*entries)
    if len(set(names)) == len(names):
        return "\n".join(texts) + "\n", ";".join(names)
    lines: list[str] = []
    unique: list[str] = []
    prev = None
    for name, value, line in entries:
        if name == prev:
            lines[-1] += "," + value
        else:
            lines.append(line)
            unique.append(name)
            prev = name
    return "\n".join(lines) + "\n", ";".join(unique)


def _entry(name: str, value: str) -> tuple[str, str, str]:
    return (name, value, name + ":" + value)


_by_name = itemgetter(0)
_SAFE_PATH = re.compile(r"[A-Za-z0-9\-._~/]*")


class _Memo:
    """Values derived from a SigningParams and a date, computed once per config."""

    __slots__ = ("alg_name", "date", "day", "scope", "stamp", "token_name")

    def __init__(self, params: SigningParams, date: datetime) -> None:
        self.date = date
        self.stamp = amz_date(date)
        self.day = self.stamp[:8]
        if params.algorithm == V4_ASYMMETRIC:
            self.alg_name = ECDSA_ALGORITHM
            self.scope = f"{self.day}/{params.service}/aws4_request"
        else:
            self.alg_name = HMAC_ALGORITHM
            self.scope = f"{self.day}/{params.region}/{params.service}/aws4_request"
        self.token_name = "X-Amz-S3session-Token" if params.algorithm == V4_S3EXPRESS else "X-Amz-Security-Token"


def _memo(params: SigningParams) -> _Memo:
    date = params.date
    memo = params._memo
    if memo is not None and date is not None and memo.date is date:
        return memo
    memo = _Memo(params, date if date is not None else datetime.now(timezone.utc))
    if date is not None:
        params._memo = memo
    return memo


def _canonical_uri(uri_path: str, params: SigningParams) -> str:
    if params.use_double_uri_encode and _SAFE_PATH.fullmatch(uri_path) is None:
        uri_path = quote(uri_path, safe="/~")
    if params.should_normalize_uri_path and ("//" in uri_path or "/." in uri_path or uri_path[:1] != "/"):
        uri_path = normalize_path(uri_path)
    return uri_path


# -- the signer --------------------------------------------------------------------------

_sigv4a_sign: Any = None  # crtpy._auth.sigv4a.sign_hex, imported on first SigV4a use

def sign(method: str, path: str, headers: Sequence[tuple[str, str]], payload_hash: str,
         access_key_id: str, secret_access_key: str, session_token: str | None,
         params: SigningParams) -> SigningResult:
    """Sign a request described by plain data; see :class:`SigningResult`."""
    memo = _memo(params)
    stamp = memo.stamp
    scope = memo.scope
    alg_name = memo.alg_name
    asymmetric = params.algorithm == V4_ASYMMETRIC
    token_name = memo.token_name
    if not session_token:
        session_token = None
    omit_token = params.omit_session_token

    if path[:1] == "/" and ":" not in path:
        q = path.find("?")
        if q < 0:
            uri_path = canonical_path = path
            query = None
        else:
            uri_path = canonical_path = path[:q]
            query = path[q + 1:]
    else:
        uri_path, query, canonical_path = _parse_target(path)
    if query:
        raw_query = _parse_query(query)
        canonical_params = []
        pcache = _PARAM_CACHE
        for key, value in raw_query:
            if key[:6].lower() == "x-amz-" and key.lower() in _FORBIDDEN_PARAMS:
                raise error("AWS_AUTH_SIGNING_ILLEGAL_REQUEST_QUERY_PARAM",
                            f"The request already has a {key} query parameter, which signing adds.")
            k = pcache.get(key)
            if k is None:
                k = _canonical_param_cached(key)
            v = pcache.get(value)
            if v is None:
                v = _canonical_param_cached(value)
            canonical_params.append((k, v))
    else:
        raw_query = []
        canonical_params = []
    # signed headers, in request order (sorted below)
    forbidden = _FORBIDDEN_HEADERS_S3EXPRESS if params.algorithm == V4_S3EXPRESS else _FORBIDDEN_HEADERS
    user_filter = params.should_sign_header
    hcache = _HEADER_CACHE
    entries = []
    for pair in headers:
        entry = hcache.get(pair)
        if entry is None:
            entry = _header_entry(pair)
        lname = entry[0]
        if not lname:
            continue
        if lname in forbidden:
            raise error("AWS_AUTH_SIGNING_ILLEGAL_REQUEST_HEADER",
                        f"The request already has a {pair[0]} header, which signing adds.")
        if user_filter is not None and not user_filter(name=pair[0]):
            continue
        entries.append(entry)
    added_headers: list[tuple[str, str]] = []
    encoded_added: list[tuple[str, str]] = []

    if params.signature_type == HEADERS:
        if session_token is not None:
            added_headers.append((token_name, session_token))
            if not omit_token:
                entries.append(_entry(token_name.lower(), session_token))
        added_headers.append(("X-Amz-Date", stamp))
        entries.append(("x-amz-date", stamp, "x-amz-date:" + stamp))
        if asymmetric:
            added_headers.append(("X-Amz-Region-Set", params.region))
            entries.append(_entry("x-amz-region-set", params.region))
        if params.signed_body_header_type == BODY_HEADER_X_AMZ_CONTENT_SHA256:
            added_headers.append(("x-amz-content-sha256", payload_hash))
            entries.append(_entry("x-amz-content-sha256", payload_hash))
        entries.sort(key=_by_name)
        header_text, signed_names = _header_block(entries)
    else:
        entries.sort(key=_by_name)
        header_text, signed_names = _header_block(entries)
        encoded_added.append(("X-Amz-Algorithm", alg_name))
        encoded_added.append(("X-Amz-Credential", encode_param(f"{access_key_id}/{scope}")))
        encoded_added.append(("X-Amz-Date", stamp))
        encoded_added.append(("X-Amz-SignedHeaders", encode_param(signed_names)))
        if params.expiration_in_seconds:
            encoded_added.append(("X-Amz-Expires", str(params.expiration_in_seconds)))
        token_index = -1
        if session_token is not None:
            token_index = len(encoded_added)
            encoded_added.append((token_name, encode_param(session_token)))
        if asymmetric:
            encoded_added.append(("X-Amz-Region-Set", encode_param(params.region)))
        if omit_token and token_index >= 0:
            canonical_params += encoded_added[:token_index] + encoded_added[token_index + 1:]
        else:
            canonical_params += encoded_added

    if canonical_params:
        if len(canonical_params) > 1:
            canonical_params.sort()
        canonical_query = "&".join([k + "=" + v for k, v in canonical_params])
    else:
        canonical_query = ""

    canonical_request = (f"{method}\n{_canonical_uri(canonical_path, params)}\n{canonical_query}\n"
                         f"{header_text}\n{signed_names}\n{payload_hash}")
    string_to_sign = (f"{alg_name}\n{stamp}\n{scope}\n"
                      + sha256(canonical_request.encode()).hexdigest())
    if asymmetric:
        global _sigv4a_sign
        if _sigv4a_sign is None:
            from .sigv4a import sign_hex as _sigv4a_sign
        signature = _sigv4a_sign(access_key_id, secret_access_key, string_to_sign.encode())
    else:
        hkey = _KEY_CACHE.get((secret_access_key, memo.day, params.region, params.service))
        if hkey is None:
            hkey = signing_hmac_key(secret_access_key, memo.day, params.region, params.service)
        signature = hkey.digest(string_to_sign.encode()).hex()

    if params.signature_type == HEADERS:
        authorization = (f"{alg_name} Credential={access_key_id}/{scope}, SignedHeaders={signed_names}, "
                         f"Signature={signature}")
        added_headers.append(("Authorization", authorization))
        return SigningResult(added_headers, None, signature, canonical_request, string_to_sign, stamp, scope)
    # The query is rebuilt from its parsed parameters (empty ones dropped, a bare key
    # gets "="), followed by the signing parameters.
    encoded_added.append(("X-Amz-Signature", signature))
    new_path = uri_path + "?" + "&".join([k + "=" + v for k, v in raw_query + encoded_added])
    return SigningResult([], new_path, signature, canonical_request, string_to_sign, stamp, scope)
