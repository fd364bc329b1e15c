"""Drop-in: botocore's CRT signers, running on crtpy (``install_as_awscrt``), sign requests
that a moto server verifying SigV4 accepts, byte-identical to botocore's own signer.

tests/test_auth_botocore.py already compares crtpy with the reference awscrt offline; this
adds the server's verdict and the comparison with botocore's pure-Python signer.
"""
from __future__ import annotations

import base64
from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import free_port
from helpers.dropin_run import reference, run_script

pytest.importorskip("botocore")
pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def result() -> dict:
    return run_script("dropin_botocore_script.py", str(free_port()))


def test_awscrt_is_crtpy_and_botocore_picks_crt_signers(result):
    assert result["awscrt_module"].startswith("crtpy")
    assert result["auth_map_s3v4"] == "botocore.crt.auth"
    assert result["auth_map_v4"] == "botocore.crt.auth"


def test_boto3_clients_signed_by_crtpy_are_accepted(result):
    assert result["boto3_get"] == "hello from crtpy"
    assert result["boto3_sts_arn"].endswith(":user/dropin")
    assert result["boto3_iam_users"] == ["dropin"]
    assert result["boto3_presigned_has_sig"] and result["boto3_presigned_get"] == "hello from crtpy"
    # the server does verify: a wrong secret is refused
    assert result["bad_secret"] == "SignatureDoesNotMatch"


@pytest.mark.parametrize("name", ["s3-put-header", "s3-get-header", "s3-list-header", "sts-post-header",
                                  "iam-post-header", "s3-get-presign", "sts-get-presign"])
def test_crt_signature_identical_to_botocore_and_accepted(result, name):
    case = next(c for c in result["cases"] if c["name"] == name)
    assert case["status"] == 200, case["body"]
    if case["query"]:
        a, b = urlsplit(case["crt_url"]), urlsplit(case["py_url"])
        assert (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path)
        qa, qb = parse_qsl(a.query, keep_blank_values=True), parse_qsl(b.query, keep_blank_values=True)
        assert sorted(qa) == sorted(qb)  # the CRT orders the X-Amz-* parameters differently
        assert dict(qa)["X-Amz-Signature"] == dict(qb)["X-Amz-Signature"]
    else:
        assert case["crt_auth"] and case["crt_auth"] == case["py_auth"]
        assert case["crt_url"] == case["py_url"]
        # the CRT signer also leaves the Host header it signed on the request
        crt = [h for h in map(tuple, case["crt_headers"]) if h[0] != "host"]
        assert crt == [tuple(h) for h in case["py_headers"]]
        assert case["tampered_status"] == 403


def test_object_put_by_hand_signed_request_is_stored(result):
    assert result["signed_object"] == "signed by crtpy"


def test_botocore_flexible_checksums_computed_by_crtpy(result):
    awscrt_checksums = reference("awscrt.checksums")  # the reference, as the oracle
    body = bytes(range(256)) * 4099
    expected = {"CRC32C": base64.b64encode(awscrt_checksums.crc32c(body).to_bytes(4, "big")).decode(),
                "CRC64NVME": base64.b64encode(awscrt_checksums.crc64nvme(body).to_bytes(8, "big")).decode()}
    for algo, value in expected.items():
        got = result["flexible"][algo]
        assert got["stored"] == value, algo
        # botocore checked the GET body against the header with crtpy's CRC (else FlexibleChecksumError)
        assert got["get_ok"] and got["get_header"] == value
