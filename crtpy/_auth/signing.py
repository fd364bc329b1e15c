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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional, Sequence
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
    date: Optional[datetime] = None
    should_sign_header: Optional[Callable[..., bool]] = None
    use_double_uri_encode: bool = True
    should_normalize_uri_path: bool = True
    signed_body_value: Optional[str] = None
    signed_body_header_type: int = BODY_HEADER_NONE
    expiration_in_seconds: Optional[int] = None
    omit_session_token: bool = False


@dataclass(slots=True)
class SigningResult:
    """What signing produced.

    ``headers`` are appended to the request in order; ``path`` (when not None) replaces the
    request's path.  ``signature`` is the hex signature; ``canonical_request`` and
    ``string_to_sign`` are kept for tests and for chunk signing (the seed signature)."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    path: Optional[str] = None
    signature: str = ""
    canonical_request: str = ""
    string_to_sign: str = ""
    amz_date: str = ""
    scope: str = ""


# -- small helpers ----------------------------------------------------------------------

def amz_date(date: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` of ``date`` in UTC (naive dates are local time)."""
    return date.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


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

_KEY_CACHE: dict[tuple[str, str, str, str], bytes] = {}
_KEY_CACHE_MAX = 256
_key_lock = threading.Lock()


def signing_key(secret: str, datestamp: str, region: str, service: str) -> bytes:
    """The SigV4 signing key for a day, region and service (cached)."""
    cache_key = (secret, datestamp, region, service)
    key = _KEY_CACHE.get(cache_key)
    if key is not None:
        return key
    d = hmac.digest
    k = d(("AWS4" + secret).encode(), datestamp.encode(), "sha256")
    k = d(k, region.encode(), "sha256")
    k = d(k, service.encode(), "sha256")
    key = d(k, b"aws4_request", "sha256")
    with _key_lock:
        if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
            _KEY_CACHE.clear()
        _KEY_CACHE[cache_key] = key
    return key


# -- canonical request -------------------------------------------------------------------

def _parse_target(target: str) -> tuple[str, Optional[str], str]:
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
    pc = authority.rfind(":")
    if pc >= 0:
        port = authority[pc + 1:]
        if not port.isdigit() or not port.isascii():
            raise error("AWS_ERROR_MALFORMED_INPUT_STRING")
    return head, query, ("/" if slash < 0 else rest[slash:])


def _canonical_uri(uri_path: str, params: SigningParams) -> str:
    if params.use_double_uri_encode:
        uri_path = quote(uri_path, safe="/~")
    if params.should_normalize_uri_path:
        uri_path = normalize_path(uri_path)
    return uri_path


def _parse_query(query: Optional[str]) -> list[tuple[str, str]]:
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


def _signed_headers(headers: Sequence[tuple[str, str]], params: SigningParams,
                    ) -> list[tuple[str, str]]:
    """Lower-case (name, canonical value) pairs that are signed, sorted by name
    (stable, so duplicates keep their order), duplicates not merged yet."""
    forbidden = _FORBIDDEN_HEADERS_S3EXPRESS if params.algorithm == V4_S3EXPRESS else _FORBIDDEN_HEADERS
    user_filter = params.should_sign_header
    out = []
    for name, value in headers:
        lname = name.lower()
        if lname in forbidden:
            raise error("AWS_AUTH_SIGNING_ILLEGAL_REQUEST_HEADER",
                        f"The request already has a {name} header, which signing adds.")
        if lname in SKIPPED_HEADERS:
            continue
        if user_filter is not None and not user_filter(name=name):
            continue
        out.append((lname, value))
    out.sort(key=_first)
    return out


def _first(pair: tuple[str, str]) -> str:
    return pair[0]


def _header_block(pairs: list[tuple[str, str]]) -> tuple[str, str]:
    """(canonical headers text, signed header names) from sorted pairs."""
    lines: list[str] = []
    names: list[str] = []
    prev = None
    for name, value in pairs:
        v = canonical_header_value(value)
        if name == prev:
            lines[-1] += "," + v
        else:
            lines.append(name + ":" + v)
            names.append(name)
            prev = name
    return "\n".join(lines) + "\n", ";".join(names)


def _insert_sorted(pairs: list[tuple[str, str]], extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if not extra:
        return pairs
    out = pairs + extra
    out.sort(key=_first)
    return out


# -- the signer --------------------------------------------------------------------------

def sign(method: str, path: str, headers: Sequence[tuple[str, str]], payload_hash: str,
         access_key_id: str, secret_access_key: str, session_token: Optional[str],
         params: SigningParams) -> SigningResult:
    """Sign a request described by plain data; see :class:`SigningResult`."""
    algorithm = params.algorithm
    date = params.date if params.date is not None else datetime.now(timezone.utc)
    stamp = amz_date(date)
    day = stamp[:8]
    asymmetric = algorithm == V4_ASYMMETRIC
    if asymmetric:
        alg_name = ECDSA_ALGORITHM
        scope = f"{day}/{params.service}/aws4_request"
    else:
        alg_name = HMAC_ALGORITHM
        scope = f"{day}/{params.region}/{params.service}/aws4_request"
    if algorithm == V4_S3EXPRESS:
        token_header, token_param = "X-Amz-S3session-Token", "X-Amz-S3session-Token"
    else:
        token_header, token_param = "X-Amz-Security-Token", "X-Amz-Security-Token"
    if session_token == "":
        session_token = None
    omit_token = params.omit_session_token

    uri_path, query, canonical_path = _parse_target(path)
    raw_query = _parse_query(query)
    for key, _ in raw_query:
        if key.lower() in _FORBIDDEN_PARAMS:
            raise error("AWS_AUTH_SIGNING_ILLEGAL_REQUEST_QUERY_PARAM",
                        f"The request already has a {key} query parameter, which signing adds.")
    canonical_params = [(_canonical_param(k), _canonical_param(v)) for k, v in raw_query]
    signed = _signed_headers(headers, params)
    result = SigningResult(amz_date=stamp, scope=scope)
    added_headers: list[tuple[str, str]] = []
    added_params: list[tuple[str, str]] = []

    if params.signature_type == HEADERS:
        extra: list[tuple[str, str]] = []
        if session_token is not None:
            added_headers.append((token_header, session_token))
            if not omit_token:
                extra.append((token_header.lower(), session_token))
        added_headers.append(("X-Amz-Date", stamp))
        extra.append(("x-amz-date", stamp))
        if asymmetric:
            added_headers.append(("X-Amz-Region-Set", params.region))
            extra.append(("x-amz-region-set", params.region))
        if params.signed_body_header_type == BODY_HEADER_X_AMZ_CONTENT_SHA256:
            added_headers.append(("x-amz-content-sha256", payload_hash))
            extra.append(("x-amz-content-sha256", payload_hash))
        header_text, signed_names = _header_block(_insert_sorted(signed, extra))
    else:
        header_text, signed_names = _header_block(signed)
        added_params.append(("X-Amz-Algorithm", alg_name))
        added_params.append(("X-Amz-Credential", f"{access_key_id}/{scope}"))
        added_params.append(("X-Amz-Date", stamp))
        added_params.append(("X-Amz-SignedHeaders", signed_names))
        if params.expiration_in_seconds:
            added_params.append(("X-Amz-Expires", str(params.expiration_in_seconds)))
        token_index = -1
        if session_token is not None:
            token_index = len(added_params)
            added_params.append((token_param, session_token))
        if asymmetric:
            added_params.append(("X-Amz-Region-Set", params.region))
        encoded_added = [(k, encode_param(v)) for k, v in added_params]
        signed_added = encoded_added
        if omit_token and token_index >= 0:
            signed_added = encoded_added[:token_index] + encoded_added[token_index + 1:]
        canonical_params = canonical_params + signed_added

    if canonical_params:
        canonical_params.sort()
        canonical_query = "&".join([k + "=" + v for k, v in canonical_params])
    else:
        canonical_query = ""

    canonical_request = "\n".join((
        method, _canonical_uri(canonical_path, params), canonical_query, header_text, signed_names,
        payload_hash))
    string_to_sign = (f"{alg_name}\n{stamp}\n{scope}\n"
                      + hashlib.sha256(canonical_request.encode()).hexdigest())
    if asymmetric:
        from . import sigv4a

        signature = sigv4a.sign_hex(access_key_id, secret_access_key, string_to_sign.encode())
    else:
        key = signing_key(secret_access_key, day, params.region, params.service)
        signature = hmac.digest(key, string_to_sign.encode(), "sha256").hex()

    result.signature = signature
    result.canonical_request = canonical_request
    result.string_to_sign = string_to_sign
    if params.signature_type == HEADERS:
        added_headers.append((
            "Authorization",
            f"{alg_name} Credential={access_key_id}/{scope}, SignedHeaders={signed_names}, "
            f"Signature={signature}"))
        result.headers = added_headers
    else:
        encoded_added.append(("X-Amz-Signature", signature))
        # The query is rebuilt from its parsed parameters (empty ones dropped, a bare
        # key gets "="), followed by the signing parameters.
        all_params = raw_query + encoded_added
        result.path = uri_path + "?" + "&".join([k + "=" + v for k, v in all_params])
    return result
