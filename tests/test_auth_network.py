"""Credentials sources that call a service, against local endpoints: an IMDS emulator,
an ECS endpoint, moto's server (STS AssumeRole / AssumeRoleWithWebIdentity / Cognito), an
mTLS IoT credentials endpoint, and a stub STS that checks the SigV4 signature."""
from __future__ import annotations

import datetime
import re
from urllib.parse import parse_qs

import pytest
from helpers.auth_servers import EcsEndpoint, LocalServer, ecs_endpoint, imds, moto_server  # noqa: F401
from helpers.certs import pki  # noqa: F401

import crtpy.io as crt_io
from crtpy import auth

UTC = datetime.timezone.utc
ROLE = "arn:aws:iam::123456789012:role/test-role"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                 "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED",
                 "AWS_EC2_METADATA_V1_DISABLED", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS",
                 "AWS_ENDPOINT_URL_COGNITO_IDENTITY", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    # nothing may ever go to the real link-local addresses
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")


def _result(provider, timeout=15):
    return provider.get_credentials().result(timeout)


def _error_name(provider, timeout=15):
    exc = provider.get_credentials().exception(timeout)
    assert exc is not None
    return exc.name


# -- IMDS --------------------------------------------------------------------------------------

def test_imds_v2_token_flow(imds, monkeypatch, leak_check):  # noqa: F811
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.server.url)
    c = _result(auth.AwsCredentialsProvider.new_default_chain())
    assert (c.access_key_id, c.secret_access_key, c.session_token) == ("IMDSAKID", "IMDSSECRET", "IMDSTOKEN")
    assert c.expiration > datetime.datetime.now(UTC)
    assert imds.server.paths() == ["PUT /latest/api/token", "GET /latest/meta-data/iam/security-credentials/",
                                   "GET /latest/meta-data/iam/security-credentials/test-role"]
    assert all(r.headers.get("x-aws-ec2-metadata-token") == "TOKEN-1" for r in imds.server.requests[1:])


def test_imds_expired_token_is_refreshed(imds, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.server.url)
    imds.reject_tokens = 1
    assert _result(auth.AwsCredentialsProvider.new_default_chain()).access_key_id == "IMDSAKID"
    assert imds.server.paths().count("PUT /latest/api/token") == 2


def test_imds_v1_fallback_when_token_path_missing(imds, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.server.url)
    imds.token_status = 404
    imds.require_token = False
    assert _result(auth.AwsCredentialsProvider.new_default_chain()).access_key_id == "IMDSAKID"
    assert all("x-aws-ec2-metadata-token" not in r.headers for r in imds.server.requests[1:])
    monkeypatch.setenv("AWS_EC2_METADATA_V1_DISABLED", "true")
    assert _error_name(auth.AwsCredentialsProvider.new_default_chain()) == \
        "AWS_AUTH_CREDENTIALS_PROVIDER_IMDS_SOURCE_FAILURE"


@pytest.mark.parametrize("knob,value", [("token_status", 403), ("roles", []), ("credentials_status", 500)])
def test_imds_failures(imds, monkeypatch, knob, value):  # noqa: F811
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.server.url)
    setattr(imds, knob, value)
    assert _error_name(auth.AwsCredentialsProvider.new_default_chain()) == \
        "AWS_AUTH_CREDENTIALS_PROVIDER_IMDS_SOURCE_FAILURE"


def test_imds_unreachable_and_disabled(monkeypatch):
    assert _error_name(auth.AwsCredentialsProvider.new_default_chain()) == \
        "AWS_AUTH_CREDENTIALS_PROVIDER_IMDS_SOURCE_FAILURE"
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # no IMDS link: the chain ends with the environment provider's error
    assert _error_name(auth.AwsCredentialsProvider.new_default_chain()) == \
        "AWS_AUTH_CREDENTIALS_PROVIDER_INVALID_ENVIRONMENT"


def test_default_chain_order(imds, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.server.url)
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id=PROFAK\naws_secret_access_key=PROFSK\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    assert _result(auth.AwsCredentialsProvider.new_default_chain()).access_key_id == "PROFAK"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVAK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ENVSK")
    assert _result(auth.AwsCredentialsProvider.new_default_chain()).access_key_id == "ENVAK"
    assert imds.server.requests == []


# -- ECS ---------------------------------------------------------------------------------------

def test_ecs_full_uri_with_token(ecs_endpoint, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ecs_endpoint.server.url + "/v2/credentials")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", ecs_endpoint.token)
    c = _result(auth.AwsCredentialsProvider.new_default_chain())
    assert (c.access_key_id, c.session_token) == ("ECSAKID", "ECSTOKEN")
    assert ecs_endpoint.server.paths() == ["GET /v2/credentials"]
    # the token file wins over the variable
    token_file = tmp_path / "token"
    token_file.write_text(ecs_endpoint.token + "\n")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token_file))
    assert _result(auth.AwsCredentialsProvider.new_default_chain()).access_key_id == "ECSAKID"


def test_ecs_failures(ecs_endpoint, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ecs_endpoint.server.url + "/creds")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong-token")
    assert _error_name(auth.AwsCredentialsProvider.new_default_chain()) == \
        "AWS_AUTH_CREDENTIALS_PROVIDER_ECS_SOURCE_FAILURE"
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(tmp_path / "missing"))
    assert _error_name(auth.AwsCredentialsProvider.new_default_chain()) == \
        "AWS_AUTH_CREDENTIALS_PROVIDER_ECS_INVALID_TOKEN_FILE_PATH"
    monkeypatch.delenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://192.0.2.1/creds")
    assert _error_name(auth.AwsCredentialsProvider.new_default_chain()) == \
        "AWS_AUTH_CREDENTIALS_PROVIDER_ECS_INVALID_HOST"


# -- STS through profiles ------------------------------------------------------------------------

def test_profile_assume_role_chain_via_moto(moto_server, monkeypatch, tmp_path, leak_check):  # noqa: F811
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_server)
    config = tmp_path / "config"
    config.write_text(f"[profile outer]\nrole_arn = {ROLE}\nsource_profile = middle\nrole_session_name = s1\n"
                      f"[profile middle]\nrole_arn = {ROLE}-2\nsource_profile = base\n"
                      "[profile base]\naws_access_key_id = BASEAK\naws_secret_access_key = BASESK\n"
                      f"[profile loop1]\nrole_arn = {ROLE}\nsource_profile = loop2\n"
                      f"[profile loop2]\nrole_arn = {ROLE}\nsource_profile = loop1\n")
    provider = auth.AwsCredentialsProvider.new_profile(profile_name="outer", config_filepath=str(config),
                                                       credentials_filepath=str(tmp_path / "none"))
    c = _result(provider)
    assert c.access_key_id.startswith("ASIA") and c.session_token and c.expiration is not None
    cycle = auth.AwsCredentialsProvider.new_profile(profile_name="loop1", config_filepath=str(config),
                                                    credentials_filepath=str(tmp_path / "none"))
    assert _error_name(cycle) == "AWS_AUTH_PROFILE_STS_CREDENTIALS_PROVIDER_CYCLE_FAILURE"


def test_web_identity_via_moto(moto_server, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_server)
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.test.token")
    config = tmp_path / "config"
    config.write_text(f"[profile web]\nrole_arn = {ROLE}\nweb_identity_token_file = {token}\n")
    c = _result(auth.AwsCredentialsProvider.new_profile(profile_name="web", config_filepath=str(config)))
    assert c.access_key_id.startswith("ASIA") and c.session_token
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", ROLE)
    assert _result(auth.AwsCredentialsProvider.new_default_chain()).access_key_id.startswith("ASIA")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "missing"))
    assert _error_name(auth.AwsCredentialsProvider.new_default_chain()) == \
        "AWS_AUTH_CREDENTIALS_PROVIDER_IMDS_SOURCE_FAILURE"  # web identity failed, then IMDS (unreachable)


def test_sts_failure_name(monkeypatch, tmp_path):
    stub = LocalServer(lambda req: (403, {}, b"<ErrorResponse/>")).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", stub.url)
        config = tmp_path / "config"
        config.write_text(f"[profile r]\nrole_arn = {ROLE}\nsource_profile = b\n"
                          "[profile b]\naws_access_key_id = A\naws_secret_access_key = B\n")
        provider = auth.AwsCredentialsProvider.new_profile(profile_name="r", config_filepath=str(config))
        assert _error_name(provider) == "AWS_AUTH_CREDENTIALS_PROVIDER_STS_SOURCE_FAILURE"
    finally:
        stub.stop()


def test_assume_role_request_is_correctly_signed(monkeypatch, tmp_path):
    """A stub STS records the AssumeRole request; the reference signer, given the same
    request and date, must produce the same Authorization header."""
    import io

    import awscrt.auth as ref_auth
    import awscrt.http as ref_http

    xml = (b"<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIASTUB</AccessKeyId>"
           b"<SecretAccessKey>STUBSK</SecretAccessKey><SessionToken>STUBTOK</SessionToken>"
           b"<Expiration>2031-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>")
    stub = LocalServer(lambda req: (200, {"Content-Type": "text/xml"}, xml)).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", stub.url)
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        config = tmp_path / "config"
        config.write_text(f"[profile r]\nrole_arn = {ROLE}\nsource_profile = b\n"
                          "[profile b]\naws_access_key_id = SRCAK\naws_secret_access_key = SRCSK\n"
                          "aws_session_token = SRCTOK\n")
        c = _result(auth.AwsCredentialsProvider.new_profile(profile_name="r", config_filepath=str(config)))
        assert (c.access_key_id, c.secret_access_key, c.session_token) == ("ASIASTUB", "STUBSK", "STUBTOK")
        assert c.expiration == datetime.datetime(2031, 1, 1, tzinfo=UTC)
    finally:
        stub.stop()
    (req,) = stub.requests
    form = parse_qs(req.body.decode())
    assert form["Action"] == ["AssumeRole"] and form["RoleArn"] == [ROLE]
    assert req.headers["x-amz-security-token"] == "SRCTOK"
    date = datetime.datetime.strptime(req.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    skip = {"authorization", "x-amz-date", "x-amz-security-token"}
    headers = [(k, v) for k, v in req.headers.items() if k not in skip]
    ref_req = ref_http.HttpRequest("POST", req.path, ref_http.HttpHeaders(headers), io.BytesIO(req.body))
    cfg = ref_auth.AwsSigningConfig(
        credentials_provider=ref_auth.AwsCredentialsProvider.new_static("SRCAK", "SRCSK", "SRCTOK"),
        region="eu-west-1", service="sts", date=date)
    expected = ref_auth.aws_sign_request(ref_req, cfg).result(5).headers.get("Authorization")
    assert req.headers["authorization"] == expected
    assert re.search(r"Credential=SRCAK/\d{8}/eu-west-1/sts/aws4_request", expected)


# -- Cognito -------------------------------------------------------------------------------------

def test_cognito_via_moto(moto_server, monkeypatch):  # noqa: F811
    boto3 = pytest.importorskip("boto3")
    client = boto3.client("cognito-identity", region_name="us-east-1", endpoint_url=moto_server,
                          aws_access_key_id="x", aws_secret_access_key="y")
    pool = client.create_identity_pool(IdentityPoolName="pool", AllowUnauthenticatedIdentities=True)
    identity = client.get_id(IdentityPoolId=pool["IdentityPoolId"])["IdentityId"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_COGNITO_IDENTITY", moto_server)
    tls = crt_io.ClientTlsContext(crt_io.TlsContextOptions())
    provider = auth.AwsCredentialsProvider.new_cognito(
        endpoint="cognito-identity.us-east-1.amazonaws.com", identity=identity, tls_ctx=tls,
        logins=[("graph.facebook.com", "fb-token")], custom_role_arn=ROLE)
    c = _result(provider)
    assert c.access_key_id and c.secret_access_key and c.session_token and c.expiration is not None
    stub = LocalServer(lambda req: (400, {}, b'{"__type":"ResourceNotFoundException"}')).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_COGNITO_IDENTITY", stub.url)
        assert _error_name(auth.AwsCredentialsProvider.new_cognito(
            endpoint="x", identity="us-east-1:nope", tls_ctx=tls)) == \
            "AWS_AUTH_CREDENTIALS_PROVIDER_COGNITO_SOURCE_FAILURE"
        assert stub.requests[0].headers["x-amz-target"] == "AWSCognitoIdentityService.GetCredentialsForIdentity"
    finally:
        stub.stop()
    with pytest.raises(TypeError):
        auth.AwsCredentialsProvider.new_cognito(endpoint="x", identity="y", tls_ctx=None)


# -- X.509 ---------------------------------------------------------------------------------------

def test_x509_over_mtls(pki):  # noqa: F811
    from helpers.auth_servers import X509Endpoint

    server = X509Endpoint(pki)
    server.server.start()
    try:
        opts = crt_io.TlsContextOptions.create_client_with_mtls_from_path(str(pki.client_cert), str(pki.client_key))
        opts.override_default_trust_store_from_path(None, str(pki.ca_cert))
        tls = crt_io.ClientTlsContext(opts)
        endpoint = f"localhost:{server.server.port}"
        c = _result(auth.AwsCredentialsProvider.new_x509(endpoint=endpoint, thing_name="my-thing",
                                                          role_alias="my-alias", tls_ctx=tls))
        assert (c.access_key_id, c.secret_access_key, c.session_token) == ("X509AKID", "X509SECRET", "X509TOKEN")
        assert _error_name(auth.AwsCredentialsProvider.new_x509(
            endpoint=endpoint, thing_name="other", role_alias="my-alias", tls_ctx=tls)) == \
            "AWS_AUTH_CREDENTIALS_PROVIDER_X509_SOURCE_FAILURE"
        # without a client certificate the handshake fails
        plain = crt_io.TlsContextOptions()
        plain.override_default_trust_store_from_path(None, str(pki.ca_cert))
        assert _error_name(auth.AwsCredentialsProvider.new_x509(
            endpoint=endpoint, thing_name="my-thing", role_alias="my-alias",
            tls_ctx=crt_io.ClientTlsContext(plain))) == "AWS_AUTH_CREDENTIALS_PROVIDER_X509_SOURCE_FAILURE"
    finally:
        server.server.stop()


def test_imds_that_never_answers_fails_without_hanging(monkeypatch):
    import threading

    from crtpy._auth import imds as imds_mod

    release = threading.Event()

    def stall(req):
        release.wait(10)
        return 500, {}, b""

    server = LocalServer(stall).start()
    try:
        monkeypatch.setattr(imds_mod, "TIMEOUT", 0.3)
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url)
        assert _error_name(auth.AwsCredentialsProvider.new_default_chain(), timeout=10) == \
            "AWS_AUTH_CREDENTIALS_PROVIDER_IMDS_SOURCE_FAILURE"
    finally:
        release.set()
        server.stop()


def test_cognito_over_tls_uses_tls_ctx(pki):  # noqa: F811
    import json
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    body = json.dumps({"IdentityId": "us-east-1:abc", "Credentials": {
        "AccessKeyId": "COGAK", "SecretKey": "COGSK", "SessionToken": "COGTOK", "Expiration": 1924992000}}).encode()
    server = LocalServer(lambda req: (200, {"Content-Type": "application/x-amz-json-1.1"}, body), ctx).start()
    try:
        opts = crt_io.TlsContextOptions()
        opts.override_default_trust_store_from_path(None, str(pki.ca_cert))
        provider = auth.AwsCredentialsProvider.new_cognito(
            endpoint=f"localhost:{server.port}", identity="us-east-1:abc", tls_ctx=crt_io.ClientTlsContext(opts),
            logins=[("accounts.google.com", "g-token")])
        c = _result(provider)
        assert (c.access_key_id, c.secret_access_key, c.session_token) == ("COGAK", "COGSK", "COGTOK")
        assert c.expiration == datetime.datetime(2031, 1, 1, tzinfo=UTC)
        sent = json.loads(server.requests[0].body)
        assert sent == {"IdentityId": "us-east-1:abc", "Logins": {"accounts.google.com": "g-token"}}
        # a context that does not trust the server's CA fails the handshake
        untrusted = auth.AwsCredentialsProvider.new_cognito(
            endpoint=f"localhost:{server.port}", identity="us-east-1:abc",
            tls_ctx=crt_io.ClientTlsContext(crt_io.TlsContextOptions()))
        assert _error_name(untrusted) == "AWS_AUTH_CREDENTIALS_PROVIDER_COGNITO_SOURCE_FAILURE"
    finally:
        server.stop()


def test_ecs_relative_uri(ecs_endpoint, monkeypatch):  # noqa: F811
    from crtpy._auth import ecs

    monkeypatch.setattr(ecs, "RELATIVE_URI_BASE", ecs_endpoint.server.url)  # instead of 169.254.170.2
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", ecs_endpoint.token)
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://192.0.2.1/ignored")  # relative wins
    assert _result(auth.AwsCredentialsProvider.new_default_chain()).access_key_id == "ECSAKID"
    assert ecs_endpoint.server.paths() == ["GET /v2/credentials/abc"]


def test_imds_credentials_refreshed_before_expiry(imds, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.server.url)
    provider = auth.AwsCredentialsProvider.new_default_chain()
    _result(provider)
    _result(provider)
    assert imds.server.paths().count("PUT /latest/api/token") == 1  # an hour left: cached
    imds.expires_in = 30  # inside the refresh margin: every call fetches again
    stale = auth.AwsCredentialsProvider.new_default_chain()
    _result(stale)
    _result(stale)
    assert imds.server.paths().count("PUT /latest/api/token") == 3
