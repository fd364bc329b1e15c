"""crtpy.auth public types: credentials, signing config, aws_sign_request behaviour,
streaming signatures, and secrets staying out of reprs, logs and exceptions."""
from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import hmac
import io
import logging
import threading

import pytest

from crtpy import auth, http
from crtpy._auth import signing as S
from crtpy._auth import streaming
from crtpy.exceptions import AwsCrtError

UTC = datetime.timezone.utc
DATE = datetime.datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _static(token=None):
    return auth.AwsCredentialsProvider.new_static("AKIDEXAMPLE", SECRET, token)


def _request(path="/", body=None, headers=(("Host", "example.amazonaws.com"),)):
    return http.HttpRequest("GET", path, http.HttpHeaders(list(headers)), body)


# -- AwsCredentials ------------------------------------------------------------------------

def test_credentials_fields_and_expiration():
    c = auth.AwsCredentials("AK", "SK", "TOK", datetime.datetime(2030, 1, 2, 3, 4, 5, 999999, tzinfo=UTC))
    assert (c.access_key_id, c.secret_access_key, c.session_token) == ("AK", "SK", "TOK")
    assert c.expiration == datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert auth.AwsCredentials("AK", "SK").expiration is None
    assert auth.AwsCredentials("AK", "SK").session_token is None
    other_tz = datetime.timezone(datetime.timedelta(hours=2))
    c2 = auth.AwsCredentials("AK", "SK", expiration=datetime.datetime(2030, 1, 1, 2, 0, 0, tzinfo=other_tz))
    assert c2.expiration == datetime.datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC)
    import copy
    assert copy.deepcopy(c) is c


def test_credentials_bad_arguments():
    with pytest.raises(TypeError):
        auth.AwsCredentials(1, "SK")
    with pytest.raises(TypeError):
        auth.AwsCredentials("AK", None)
    with pytest.raises(OverflowError):
        auth.AwsCredentials("AK", "SK", expiration=datetime.datetime(1960, 1, 1, tzinfo=UTC))


def test_secrets_not_in_repr_or_str():
    c = auth.AwsCredentials("AKIDEXAMPLE", "TOP-SECRET-VALUE", "SESSION-TOKEN-VALUE")
    for text in (repr(c), str(c), repr(_static("SESSION-TOKEN-VALUE")),
                 repr(auth.AwsSigningConfig(credentials_provider=_static("SESSION-TOKEN-VALUE")))):
        assert "TOP-SECRET-VALUE" not in text
        assert SECRET not in text
        assert "SESSION-TOKEN-VALUE" not in text
    assert "AKIDEXAMPLE" not in repr(c)  # only a prefix of the key id is shown


# -- AwsSigningConfig ----------------------------------------------------------------------

def test_enum_values_match_reference():
    import awscrt.auth as ref

    for name in ("AwsSigningAlgorithm", "AwsSignatureType", "AwsSignedBodyHeaderType"):
        ours, theirs = getattr(auth, name), getattr(ref, name)
        assert {m.name: m.value for m in ours} == {m.name: m.value for m in theirs}
    for name in ("EMPTY_SHA256", "UNSIGNED_PAYLOAD", "STREAMING_AWS4_HMAC_SHA256_PAYLOAD",
                 "STREAMING_AWS4_HMAC_SHA256_EVENTS"):
        assert getattr(auth.AwsSignedBodyValue, name) == getattr(ref.AwsSignedBodyValue, name)


def test_signing_config_defaults_and_replace():
    before = datetime.datetime.now(UTC)
    cfg = auth.AwsSigningConfig()
    assert cfg.algorithm is auth.AwsSigningAlgorithm.V4
    assert cfg.signature_type is auth.AwsSignatureType.HTTP_REQUEST_HEADERS
    assert cfg.credentials_provider is None
    assert (cfg.region, cfg.service) == ("", "")
    assert before <= cfg.date <= datetime.datetime.now(UTC)
    assert cfg.should_sign_header is None
    assert cfg.use_double_uri_encode is True and cfg.should_normalize_uri_path is True
    assert cfg.signed_body_value is None
    assert cfg.signed_body_header_type is auth.AwsSignedBodyHeaderType.NONE
    assert cfg.expiration_in_seconds is None and cfg.omit_session_token is False

    provider = _static()

    def only_host(name):
        return name.lower() == "host"

    full = auth.AwsSigningConfig(
        auth.AwsSigningAlgorithm.V4_ASYMMETRIC, auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS, provider,
        "us-west-2", "s3", DATE, only_host, False, False, auth.AwsSignedBodyValue.UNSIGNED_PAYLOAD,
        auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256, 600, True)
    copy = full.replace(region="eu-west-1")
    for name in auth.AwsSigningConfig._attributes:
        if name != "region":
            assert getattr(copy, name) == getattr(full, name), name
    assert copy.region == "eu-west-1" and full.region == "us-west-2"
    assert copy.credentials_provider is provider and copy.should_sign_header is only_host
    with pytest.raises(TypeError):
        full.replace(no_such_field=1)


@pytest.mark.parametrize("kwargs,exc", [
    ({"algorithm": "V4"}, TypeError),
    ({"algorithm": 7}, ValueError),
    ({"region": 5}, TypeError),
    ({"credentials_provider": "p"}, TypeError),
    ({"should_sign_header": 3}, TypeError),
    ({"signed_body_value": ""}, ValueError),
    ({"expiration_in_seconds": 0}, ValueError),
    ({"date": "today"}, TypeError),
])
def test_signing_config_rejects_bad_input(kwargs, exc):
    with pytest.raises(exc):
        auth.AwsSigningConfig(**kwargs)


# -- aws_sign_request ------------------------------------------------------------------------

def test_sign_request_returns_same_request_signed():
    req = _request()
    cfg = auth.AwsSigningConfig(credentials_provider=_static(), region="us-east-1", service="service", date=DATE)
    fut = auth.aws_sign_request(req, cfg)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(5) is req
    # the signature of the suite's get-vanilla case
    assert req.headers.get("Authorization").endswith(
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    assert req.headers.get("X-Amz-Date") == "20150830T123600Z"
    done = threading.Event()
    fut.add_done_callback(lambda f: done.set())
    assert done.wait(5)
    assert concurrent.futures.wait([fut], timeout=5).done == {fut}


def test_sign_request_argument_errors():
    cfg = auth.AwsSigningConfig(credentials_provider=_static())
    with pytest.raises(TypeError):
        auth.aws_sign_request("GET /", cfg)
    with pytest.raises(TypeError):
        auth.aws_sign_request(_request(), {})
    with pytest.raises(AwsCrtError) as ei:
        auth.aws_sign_request(_request(), auth.AwsSigningConfig())
    assert ei.value.name == "AWS_AUTH_SIGNING_INVALID_CONFIGURATION"


@pytest.mark.parametrize("header", ["Authorization", "X-Amz-Date", "x-amz-content-sha256",
                                    "X-Amz-Security-Token", "X-Amz-Region-Set"])
def test_sign_request_illegal_header(header):
    cfg = auth.AwsSigningConfig(credentials_provider=_static(), region="r", service="s")
    fut = auth.aws_sign_request(_request(headers=[("Host", "h"), (header, "x")]), cfg)
    assert fut.exception(5).name == "AWS_AUTH_SIGNING_ILLEGAL_REQUEST_HEADER"


def test_sign_request_illegal_query_param_and_malformed_path():
    cfg = auth.AwsSigningConfig(credentials_provider=_static(), region="r", service="s")
    assert auth.aws_sign_request(_request("/?X-Amz-Signature=1"), cfg).exception(5).name == \
        "AWS_AUTH_SIGNING_ILLEGAL_REQUEST_QUERY_PARAM"
    assert auth.aws_sign_request(_request("/?a=%zz"), cfg).exception(5).name == "AWS_ERROR_MALFORMED_INPUT_STRING"


def test_body_is_hashed_from_start_and_rewound():
    body = io.BytesIO(b"xxhello")
    body.seek(2)
    cfg = auth.AwsSigningConfig(credentials_provider=_static(), region="r", service="s", date=DATE,
                                signed_body_header_type=auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256)
    req = auth.aws_sign_request(_request(body=body), cfg).result(5)
    assert req.headers.get("x-amz-content-sha256") == hashlib.sha256(b"xxhello").hexdigest()
    assert body.tell() == 0


def test_file_body_is_hashed(tmp_path):
    data = bytes(range(256)) * 5000
    path = tmp_path / "body.bin"
    path.write_bytes(data)
    cfg = auth.AwsSigningConfig(credentials_provider=_static(), region="r", service="s", date=DATE,
                                signed_body_header_type=auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256)
    with open(path, "rb") as f:
        req = auth.aws_sign_request(_request(body=f), cfg).result(5)
        assert f.tell() == 0
    assert req.headers.get("x-amz-content-sha256") == hashlib.sha256(data).hexdigest()


def test_sign_with_slow_provider_completes_later():
    from crtpy._auth.providers import BlockingSource

    gate = threading.Event()

    def fetch():
        assert gate.wait(5)
        return auth.AwsCredentials("AKIDEXAMPLE", SECRET)

    # a blocking source delivers the credentials later, from a worker thread
    provider = auth.AwsCredentialsProvider(BlockingSource(fetch))
    cfg = auth.AwsSigningConfig(credentials_provider=provider, region="us-east-1", service="service", date=DATE)
    fut = auth.aws_sign_request(_request(), cfg)
    assert not fut.done()
    gate.set()
    req = fut.result(5)
    assert "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31" in req.headers.get("Authorization")


def test_provider_failure_reaches_sign_future():
    provider = auth.AwsCredentialsProvider.new_delegate(lambda: None)
    cfg = auth.AwsSigningConfig(credentials_provider=provider, region="r", service="s")
    assert auth.aws_sign_request(_request(), cfg).exception(5).name == "AWS_AUTH_CREDENTIALS_PROVIDER_DELEGATE_FAILURE"


def test_should_sign_header_is_called_by_keyword():
    seen = []

    def only_host(name):
        seen.append(name)
        return name.lower() == "host"

    cfg = auth.AwsSigningConfig(credentials_provider=_static(), region="r", service="s", date=DATE,
                                should_sign_header=only_host)
    req = auth.aws_sign_request(_request(headers=[("Host", "h"), ("X-Custom", "1")]), cfg).result(5)
    assert "SignedHeaders=host;x-amz-date," in req.headers.get("Authorization")
    assert "X-Custom" in seen


def test_query_signing_with_session_token_and_omit():
    cfg = auth.AwsSigningConfig(credentials_provider=_static("TOK"), region="r", service="s", date=DATE,
                                signature_type=auth.AwsSignatureType.HTTP_REQUEST_QUERY_PARAMS,
                                expiration_in_seconds=60, omit_session_token=True)
    req = auth.aws_sign_request(_request("/p?a=1"), cfg).result(5)
    assert req.path.startswith("/p?a=1&X-Amz-Algorithm=AWS4-HMAC-SHA256&")
    assert "&X-Amz-Expires=60&X-Amz-Security-Token=TOK&X-Amz-Signature=" in req.path
    assert req.headers.get("Authorization") is None


def test_s3express_token_header():
    cfg = auth.AwsSigningConfig(auth.AwsSigningAlgorithm.V4_S3EXPRESS, credentials_provider=_static("SESSION"),
                                region="us-west-2", service="s3express", date=DATE)
    req = auth.aws_sign_request(_request(), cfg).result(5)
    assert req.headers.get("X-Amz-S3session-Token") == "SESSION"
    assert req.headers.get("X-Amz-Security-Token") is None
    assert "x-amz-s3session-token" in req.headers.get("Authorization")


def test_signing_key_cache_and_v4a_key_cache():
    from crtpy._auth import sigv4a

    k1 = S.signing_key("secret", "20240101", "us-east-1", "s3")
    k2 = S.signing_key("secret", "20240101", "us-east-1", "s3")
    assert k1 == k2
    expected = b"AWS4secret"
    for part in (b"20240101", b"us-east-1", b"s3", b"aws4_request"):
        expected = hmac.digest(expected, part, "sha256")
    assert k1 == expected
    assert sigv4a.private_key("AK", "SK") is sigv4a.private_key("AK", "SK")
    assert sigv4a.private_key("AK", "SK2") is not sigv4a.private_key("AK", "SK")


# -- streaming ----------------------------------------------------------------------------

AWS_DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_aws_chunked_signatures_match_aws_documentation_example():
    date = datetime.datetime(2013, 5, 24, tzinfo=UTC)
    params = S.SigningParams(region="us-east-1", service="s3", date=date, use_double_uri_encode=False,
                             should_normalize_uri_path=False,
                             signed_body_value="STREAMING-AWS4-HMAC-SHA256-PAYLOAD", signed_body_header_type=1)
    headers = [("Host", "s3.amazonaws.com"), ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
               ("Content-Encoding", "aws-chunked"), ("x-amz-decoded-content-length", "66560"),
               ("Content-Length", "66824")]
    seed = S.sign("PUT", "/examplebucket/chunkObject.txt", headers, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                  "AKIAIOSFODNN7EXAMPLE", AWS_DOC_SECRET, None, params)
    assert seed.signature == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    signer = streaming.ChunkSigner("AKIAIOSFODNN7EXAMPLE", AWS_DOC_SECRET, params, seed.signature)
    assert signer.sign_chunk(b"a" * 65536) == "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    assert signer.sign_chunk(memoryview(b"a" * 1024)) == \
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    assert signer.sign_chunk(b"") == "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
    assert streaming.chunked_length(66560, 65536) == 66824
    frame = b"".join(bytes(p) for p in streaming.encode_chunk(b"abc", "f" * 64))
    assert frame == b"3;chunk-signature=" + b"f" * 64 + b"\r\nabc\r\n"


def test_trailer_signature_chains_from_last_chunk():
    params = S.SigningParams(region="us-east-1", service="s3", date=DATE)
    signer = streaming.ChunkSigner("AK", "SK", params, "seed")
    last = signer.sign_chunk(b"")
    trailer = [("x-amz-checksum-crc32c", "sOO8/Q==")]
    sig = signer.sign_trailer(trailer)
    scope = "20150830/us-east-1/s3/aws4_request"
    sts = "\n".join(("AWS4-HMAC-SHA256-TRAILER", "20150830T123600Z", scope, last,
                     hashlib.sha256(b"x-amz-checksum-crc32c:sOO8/Q==\n").hexdigest()))
    assert sig == hmac.digest(S.signing_key("SK", "20150830", "us-east-1", "s3"), sts.encode(), "sha256").hex()
    assert streaming.encode_trailer(trailer, sig) == \
        f"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{sig}\r\n\r\n".encode()
    with pytest.raises(AwsCrtError):
        streaming.ChunkSigner("AK", "SK", params, "")


def test_event_signatures_chain_and_verify():
    params = S.SigningParams(region="us-east-1", service="transcribe", date=DATE)
    signer = streaming.EventSigner("AK", "SK", params, "ab" * 32)
    millis, sig1 = signer.sign_event(b"payload-1", DATE)
    assert millis == int(DATE.timestamp()) * 1000 and len(sig1) == 32
    _, sig2 = signer.sign_event(b"payload-1", DATE)
    assert sig2 != sig1  # chained from the previous signature
    assert signer.previous_signature == sig2.hex()
    v4a = streaming.EventSigner("AK", "SK", S.SigningParams(algorithm=S.V4_ASYMMETRIC, service="s"), "ab" * 32)
    _, der = v4a.sign_event(b"x", DATE)
    assert der[0] == 0x30  # a DER ECDSA signature


# -- secrets stay out of logs and exceptions ---------------------------------------------------

def test_secrets_never_logged_or_in_errors(tmp_path, monkeypatch, caplog):
    secret = "VERY-SECRET-KEY-MATERIAL"
    script = tmp_path / "proc.sh"
    script.write_text(f"#!/bin/sh\necho '{{\"Version\": 2, \"AccessKeyId\": \"AK\", \"SecretAccessKey\": \"{secret}\"}}'\n"
                      f"echo {secret} >&2\nexit 0\n")
    script.chmod(0o755)
    config = tmp_path / "config"
    config.write_text(f"[default]\ncredential_process = {script}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    caplog.set_level(logging.DEBUG)
    provider = auth.AwsCredentialsProvider.new_process()
    exc = provider.get_credentials().exception(10)
    assert exc is not None
    delegate = auth.AwsCredentialsProvider.new_delegate(lambda: (_ for _ in ()).throw(RuntimeError(secret)))
    exc2 = delegate.get_credentials().exception(5)
    cfg = auth.AwsSigningConfig(credentials_provider=auth.AwsCredentialsProvider.new_static("AK", secret, secret),
                                region="r", service="s")
    exc3 = auth.aws_sign_request(_request(headers=[("Host", "h"), ("Authorization", "x")]), cfg).exception(5)
    for e in (exc, exc2, exc3):
        assert secret not in repr(e) and secret not in str(e)
    assert secret not in caplog.text
    assert "credential_process" in caplog.text or "delegate" in caplog.text  # something was logged


def test_sigv4a_chunks_are_padded_and_chain_unpadded():
    from crtpy._auth import sigv4a

    params = S.SigningParams(algorithm=S.V4_ASYMMETRIC, region="us-east-1", service="s3", date=DATE)
    seed = streaming.pad_sigv4a_signature("30" + "ab" * 30)
    signer = streaming.ChunkSigner("AK", "SK", params, seed)
    assert signer.previous_signature == "30" + "ab" * 30
    sig = signer.sign_chunk(b"data")
    sts = "\n".join(("AWS4-ECDSA-P256-SHA256-PAYLOAD", "20150830T123600Z", "20150830/s3/aws4_request",
                     "30" + "ab" * 30, S.EMPTY_SHA256, hashlib.sha256(b"data").hexdigest()))
    assert sigv4a.verify_hex(*sigv4a.public_key_xy("AK", "SK"), sts.encode(), sig)
    head = bytes(streaming.encode_chunk(b"data", sig)[0])
    assert head.startswith(b"4;chunk-signature=" + sig.encode()) and len(head) == len("4;chunk-signature=") + 144 + 2
    assert b"".join(bytes(p) for p in streaming.encode_unsigned_chunk(b"abc")) == b"3\r\nabc\r\n"
    assert streaming.encode_unsigned_trailer([("x-amz-checksum-crc32", "AAAAAA==")]) == \
        b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"


def test_unseekable_body_is_kept_for_sending():
    class Pipe:
        def __init__(self, data):
            self._data = io.BytesIO(data)

        def read(self, n=-1):
            return self._data.read(n)

        def seekable(self):
            return False

    payload = b"streamed-body" * 1000
    req = _request(body=Pipe(payload))
    cfg = auth.AwsSigningConfig(credentials_provider=_static(), region="r", service="s", date=DATE,
                                signed_body_header_type=auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256)
    auth.aws_sign_request(req, cfg).result(5)
    assert req.headers.get("x-amz-content-sha256") == hashlib.sha256(payload).hexdigest()
    from crtpy._http.body import _raw

    assert _raw(req.body_stream).read() == payload
