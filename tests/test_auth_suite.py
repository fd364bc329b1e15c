"""The AWS signing test suite (v4 and v4a, header and query variants) against crtpy's signer."""
from __future__ import annotations

import json

import pytest
from helpers.auth_suite import SUITE, Case, cases

from crtpy._auth import signing as S
from crtpy._auth import sigv4a

if not SUITE.exists():  # pragma: no cover
    pytest.skip("signing test suite not found", allow_module_level=True)

V4_CASES = cases("v4")
V4A_CASES = cases("v4a")
KINDS = [("header", S.HEADERS), ("query", S.QUERY_PARAMS)]


def _sign(case: Case, algorithm: int, signature_type: int) -> S.SigningResult:
    ctx = case.context
    creds = ctx["credentials"]
    params = S.SigningParams(
        algorithm=algorithm,
        signature_type=signature_type,
        region=ctx["region"],
        service=ctx["service"],
        date=case.date,
        should_normalize_uri_path=ctx["normalize"],
        signed_body_header_type=S.BODY_HEADER_X_AMZ_CONTENT_SHA256 if ctx["sign_body"] else S.BODY_HEADER_NONE,
        expiration_in_seconds=ctx.get("expiration_in_seconds") if signature_type == S.QUERY_PARAMS else None,
        omit_session_token=ctx.get("omit_session_token", False),
    )
    return S.sign(case.method, case.path, case.headers, case.payload_hash, creds["access_key_id"],
                  creds["secret_access_key"], creds.get("token"), params)


def _signed_request_text(case: Case, result: S.SigningResult) -> str:
    path = result.path if result.path is not None else case.path
    lines = [f"{case.method} {path} HTTP/1.1"]
    lines += [f"{k}:{v}" for k, v in case.headers]
    lines += [f"{k}:{v}" for k, v in result.headers]
    return "\n".join(lines) + "\n\n" + case.body.decode()


def test_suite_is_complete():
    assert len(V4_CASES) >= 38
    assert len(V4A_CASES) >= 38


@pytest.mark.parametrize("kind,signature_type", KINDS)
@pytest.mark.parametrize("case", V4_CASES, ids=lambda c: c.name)
def test_v4(case: Case, kind: str, signature_type: int):
    result = _sign(case, S.V4, signature_type)
    assert result.canonical_request == case.text(f"{kind}-canonical-request.txt")
    assert result.string_to_sign == case.text(f"{kind}-string-to-sign.txt")
    assert result.signature == case.text(f"{kind}-signature.txt").strip()
    expected = case.text(f"{kind}-signed-request.txt")
    assert _signed_request_text(case, result).rstrip("\n") == expected.rstrip("\n")


@pytest.mark.parametrize("kind,signature_type", KINDS)
@pytest.mark.parametrize("case", V4A_CASES, ids=lambda c: c.name)
def test_v4a(case: Case, kind: str, signature_type: int):
    expected_cr = case.text(f"{kind}-canonical-request.txt")
    if expected_cr is None:
        pytest.skip("the suite has no expected output for this case")
    result = _sign(case, S.V4_ASYMMETRIC, signature_type)
    assert result.canonical_request == expected_cr
    assert result.string_to_sign == case.text(f"{kind}-string-to-sign.txt")
    pub = json.loads(case.text("public-key.json"))
    x, y = int(pub["X"], 16), int(pub["Y"], 16)
    assert sigv4a.verify_hex(x, y, result.string_to_sign.encode(), result.signature)
    # the suite's own (randomized) signature verifies against the same key and message
    assert sigv4a.verify_hex(x, y, result.string_to_sign.encode(), case.text(f"{kind}-signature.txt").strip())
    # and a tampered message does not
    assert not sigv4a.verify_hex(x, y, result.string_to_sign.encode() + b"x", result.signature)


def test_v4a_key_derivation_matches_suite_public_key():
    case = V4A_CASES[0]
    creds = case.context["credentials"]
    pub = json.loads(case.text("public-key.json"))
    assert sigv4a.public_key_xy(creds["access_key_id"], creds["secret_access_key"]) == (
        int(pub["X"], 16), int(pub["Y"], 16))
