"""S3 Express One Zone: CreateSession, session-signed requests, the session cache and
its refresh, and failures with the reference's error names — against a fake directory
bucket endpoint on loopback that verifies every signature (tests/helpers/s3express.py)."""
from __future__ import annotations

import concurrent.futures
import datetime
import os
import threading
import time

import pytest
from helpers.s3express import ACCESS_KEY, REGION, SECRET_KEY, FakeS3Express

from crtpy import s3
from crtpy._s3 import express
from crtpy.auth import AwsCredentialsProvider, AwsSigningAlgorithm
from crtpy.exceptions import AwsCrtError
from crtpy.http import HttpHeaders, HttpRequest

BUCKET = "bkt--usw2-az1--x-s3"
TIMEOUT = 30


@pytest.fixture
def server():
    srv = FakeS3Express().start()
    yield srv
    srv.stop()


def _config(access: str = ACCESS_KEY, secret: str = SECRET_KEY, token: str | None = None, service: str = "s3express"):
    provider = AwsCredentialsProvider.new_static(access, secret, token)
    return s3.create_default_s3_signing_config(region=REGION, credential_provider=provider).replace(
        algorithm=AwsSigningAlgorithm.V4_S3EXPRESS, service=service)


def _client(**kwargs):
    kwargs.setdefault("signing_config", _config())
    return s3.S3Client(region=REGION, tls_mode=s3.S3RequestTlsMode.DISABLED, enable_s3express=True, **kwargs)


def _request(server, method: str, key: str, body=None, headers=()):
    h = HttpHeaders([("Host", f"127.0.0.1:{server.port}"), *headers])
    return HttpRequest(method, f"/{BUCKET}/{key}", h, body)


def _get(client, server, key: str, **kwargs) -> bytes:
    chunks: list[bytes] = []
    req = client.make_request(type=s3.S3RequestType.GET_OBJECT, request=_request(server, "GET", key),
                              on_body=lambda chunk, offset, **_: chunks.append(bytes(chunk)), **kwargs)
    req.finished_future.result(TIMEOUT)
    return b"".join(chunks)


def _data_requests(server):
    return [entry for entry in server.log if "session" not in entry[1]]


def test_needs_enable_s3express(server):
    client = s3.S3Client(region=REGION, tls_mode=s3.S3RequestTlsMode.DISABLED, signing_config=_config())
    with pytest.raises(RuntimeError, match="AWS_ERROR_INVALID_ARGUMENT"):
        client.make_request(type=s3.S3RequestType.GET_OBJECT, request=_request(server, "GET", "k"))
    assert server.log == []


def test_get_put_default_with_one_session(server, tmp_path):
    data = os.urandom(12 * 1024 * 1024 + 7)
    src = tmp_path / "src"
    src.write_bytes(data)
    client = _client(part_size=5 * 1024 * 1024)
    # multipart PUT from a file, single PUT from a stream
    client.make_request(type=s3.S3RequestType.PUT_OBJECT, send_filepath=str(src),
                        request=_request(server, "PUT", "big", headers=[("Content-Length", str(len(data)))])
                        ).finished_future.result(TIMEOUT)
    import io

    client.make_request(type=s3.S3RequestType.PUT_OBJECT,
                        request=_request(server, "PUT", "small", io.BytesIO(b"tiny"), [("Content-Length", "4")])
                        ).finished_future.result(TIMEOUT)
    assert server.objects[f"/{BUCKET}/big"] == data
    assert server.objects[f"/{BUCKET}/small"] == b"tiny"
    assert _get(client, server, "big") == data
    dst = tmp_path / "dst"
    client.make_request(type=s3.S3RequestType.GET_OBJECT, recv_filepath=str(dst),
                        request=_request(server, "GET", "big")).finished_future.result(TIMEOUT)
    assert dst.read_bytes() == data
    statuses: list[int] = []
    client.make_request(type=s3.S3RequestType.DEFAULT, operation_name="HeadObject",
                        request=_request(server, "HEAD", "small"),
                        on_headers=lambda status_code, headers, **_: statuses.append(status_code)
                        ).finished_future.result(TIMEOUT)
    client.make_request(type=s3.S3RequestType.DEFAULT, operation_name="DeleteObject",
                        request=_request(server, "DELETE", "small")).finished_future.result(TIMEOUT)
    assert statuses == [200] and f"/{BUCKET}/small" not in server.objects
    assert server.errors == []
    assert server.sessions == 1
    creates = [e for e in server.log if e[1] == "/?session="]
    assert len(creates) == 1 and "/s3express/aws4_request" in creates[0][2]["authorization"]
    assert "x-amz-s3session-token" not in creates[0][2]
    data_requests = _data_requests(server)
    assert len(data_requests) >= 10
    for _, _, headers in data_requests:
        assert headers["x-amz-s3session-token"] == "session-token-1"
        assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=SESSIONKEY1/")


def test_account_session_token_only_on_create_session(server):
    server.objects[f"/{BUCKET}/k"] = b"x" * 100
    client = _client(signing_config=_config(token="account-token", service="s3"))
    assert _get(client, server, "k") == b"x" * 100
    assert server.errors == []
    create = next(e for e in server.log if e[1] == "/?session=")
    assert create[2]["x-amz-security-token"] == "account-token"
    assert all("x-amz-security-token" not in h for _, _, h in _data_requests(server))


def test_concurrent_requests_share_one_session(server):
    server.objects[f"/{BUCKET}/k"] = os.urandom(300_000)
    client = _client()
    results: list[bytes] = []
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: _get(client, server, "k"), range(6)))
    assert all(r == server.objects[f"/{BUCKET}/k"] for r in results)
    assert server.sessions == 1 and server.errors == []


def test_sessions_per_account_credentials(server):
    server.objects[f"/{BUCKET}/k"] = b"abc"
    client = _client()
    other = _config()
    _get(client, server, "k")
    _get(client, server, "k", signing_config=other)  # same account: cached
    assert server.sessions == 1
    # a request-level config with other credentials that the server does not know
    with pytest.raises(AwsCrtError) as info:
        _get(client, server, "k", signing_config=_config(access="someone-else", secret="x"))
    assert info.value.name == "AWS_ERROR_S3EXPRESS_CREATE_SESSION_FAILED"


def test_expired_session_is_replaced(server):
    server.lifetime = datetime.timedelta(seconds=express.EXPIRED_MARGIN - 2)  # never usable
    server.objects[f"/{BUCKET}/k"] = b"abc"
    client = _client()
    for n in range(1, 4):
        assert _get(client, server, "k") == b"abc"
        assert server.sessions == n
    assert server.errors == []


def test_ageing_session_refreshed_in_background(server):
    # usable, but inside the refresh window: used, and a new one fetched meanwhile
    server.lifetime = datetime.timedelta(seconds=express.REFRESH_MARGIN - 20)
    server.objects[f"/{BUCKET}/k"] = b"abc"
    client = _client()
    assert _get(client, server, "k") == b"abc"
    assert server.sessions == 1
    assert _get(client, server, "k") == b"abc"
    deadline = time.monotonic() + TIMEOUT
    while server.sessions < 2 and time.monotonic() < deadline:
        threading.Event().wait(0.02)
    assert server.sessions == 2
    assert _get(client, server, "k") == b"abc"
    assert server.errors == []
    tokens = [h["x-amz-s3session-token"] for _, _, h in _data_requests(server)]
    # the second request was signed with the first session (no waiting); a later one uses the new one
    assert tokens[:2] == ["session-token-1", "session-token-1"] and tokens[-1] == "session-token-2"


@pytest.mark.parametrize("mode, name", [("fail_create_session", "AWS_ERROR_S3EXPRESS_CREATE_SESSION_FAILED"),
                                        ("garbage_create_session", "AWS_AUTH_PROVIDER_PARSER_UNEXPECTED_RESPONSE")])
def test_create_session_failures(server, mode, name):
    setattr(server, mode, True)
    client = _client()
    done: list[dict] = []
    req = client.make_request(type=s3.S3RequestType.GET_OBJECT, request=_request(server, "GET", "k"),
                              on_done=lambda **kw: done.append(kw))
    with pytest.raises(AwsCrtError) as info:
        req.finished_future.result(TIMEOUT)
    assert info.value.name == name
    assert not isinstance(info.value, s3.S3ResponseError)
    assert done and done[0]["status_code"] is None and done[0]["error_body"] is None
    assert _data_requests(server) == []  # nothing was sent unsigned or with the account keys


def test_create_session_failure_matches_reference(server):
    import awscrt.auth
    import awscrt.http
    import awscrt.s3

    server.fail_create_session = True
    provider = awscrt.auth.AwsCredentialsProvider.new_static(ACCESS_KEY, SECRET_KEY)
    cfg = awscrt.s3.create_default_s3_signing_config(region=REGION, credential_provider=provider).replace(
        algorithm=awscrt.auth.AwsSigningAlgorithm.V4_S3EXPRESS)
    ref = awscrt.s3.S3Client(region=REGION, tls_mode=awscrt.s3.S3RequestTlsMode.DISABLED, signing_config=cfg,
                             enable_s3express=True)
    req = awscrt.http.HttpRequest("GET", f"/{BUCKET}/k",
                                  awscrt.http.HttpHeaders([("Host", f"127.0.0.1:{server.port}")]))
    with pytest.raises(Exception) as theirs:
        ref.make_request(type=awscrt.s3.S3RequestType.GET_OBJECT, request=req).finished_future.result(TIMEOUT)
    with pytest.raises(AwsCrtError) as ours:
        _get(_client(signing_config=_config(service="s3")), server, "k")
    assert ours.value.name == theirs.value.name and type(theirs.value).__name__ == "AwsCrtError"


def test_parse_create_session_reply():
    body = (b"<?xml version='1.0'?><ns:CreateSessionResult xmlns:ns='x'><ns:Credentials>"
            b"<ns:SessionToken>t&amp;k</ns:SessionToken><ns:SecretAccessKey>s</ns:SecretAccessKey>"
            b"<ns:AccessKeyId>a</ns:AccessKeyId><ns:Expiration>2030-01-02T03:04:05Z</ns:Expiration>"
            b"</ns:Credentials></ns:CreateSessionResult>")
    akid, secret, token, expires = express.parse_create_session(body)
    assert (akid, secret, token) == ("a", "s", "t&k")
    assert expires == 1893553445.0
    assert express.parse_expiration("2030-01-02T03:04:05.123+00:00") == pytest.approx(1893553445.123)
    with pytest.raises(express.SessionFailure) as info:
        express.parse_create_session(body.replace(b"<ns:AccessKeyId>a</ns:AccessKeyId>", b""))
    assert info.value.name == "AWS_AUTH_PROVIDER_PARSER_UNEXPECTED_RESPONSE"
