# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""crtpy.aio.auth: awaitable credentials and signing, against the local ECS endpoint."""
from __future__ import annotations

import asyncio
import datetime
import threading

import pytest
from helpers.auth_servers import ecs_endpoint  # noqa: F401 - fixture

from crtpy import auth
from crtpy.aio.auth import AioCredentialsProvider, aws_sign_request, get_credentials
from crtpy.exceptions import AwsCrtError
from crtpy.http import HttpHeaders, HttpRequest

pytestmark = pytest.mark.usefixtures("leak_check")

T = 15.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                 "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")


def test_default_chain_from_ecs_endpoint(ecs_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ecs_endpoint.server.url + "/v2/credentials")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", ecs_endpoint.token)

    async def main() -> None:
        provider = auth.AwsCredentialsProvider.new_default_chain()
        c = await asyncio.wait_for(get_credentials(provider), T)
        assert (c.access_key_id, c.session_token) == ("ECSAKID", "ECSTOKEN")
        wrapped = AioCredentialsProvider(provider)
        assert (await asyncio.wait_for(wrapped.get_credentials(), T)).access_key_id == "ECSAKID"
        # failure arrives as the provider's error
        ecs_endpoint.status = 500
        failing = AioCredentialsProvider.new_default_chain()
        with pytest.raises(AwsCrtError):
            await asyncio.wait_for(failing.get_credentials(), T)

    asyncio.run(main())
    assert ecs_endpoint.server.paths()[0] == "GET /v2/credentials"


def test_sign_request_matches_the_synchronous_signer():
    date = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)

    def config() -> auth.AwsSigningConfig:
        return auth.AwsSigningConfig(
            region="us-east-1", service="s3", date=date,
            credentials_provider=auth.AwsCredentialsProvider.new_static("AKID", "SECRET"))

    def request() -> HttpRequest:
        return HttpRequest("GET", "/bucket/key?x=1", HttpHeaders([("host", "example.com")]))

    expected = auth.aws_sign_request(request(), config()).result(T)

    async def main() -> HttpRequest:
        req = request()
        signed = await aws_sign_request(req, config())
        assert signed is req
        return signed

    signed = asyncio.run(main())
    assert list(signed.headers) == list(expected.headers)
    assert signed.headers.get("Authorization").startswith("AWS4-HMAC-SHA256 Credential=AKID/20240506/us-east-1/s3/")
    with pytest.raises(TypeError):
        asyncio.run(get_credentials("not a provider"))  # type: ignore[arg-type]


def test_cancellation_and_a_loop_that_keeps_running():
    release = threading.Event()
    calls: list[int] = []

    def slow() -> auth.AwsCredentials:
        calls.append(1)
        release.wait(T)
        return auth.AwsCredentials("SLOWAK", "SLOWSK")

    async def main() -> None:
        provider = AioCredentialsProvider.new_delegate(slow)
        # cancelled while the delegate is busy: the task ends at once
        task = asyncio.create_task(provider.get_credentials())
        while not calls:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        # the delegate only answers after the ticker has ticked: the loop is never blocked
        release.clear()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                if ticks == 5:
                    release.set()
                await asyncio.sleep(0.001)

        ticking = asyncio.create_task(ticker())
        creds = await asyncio.wait_for(provider.get_credentials(), T)
        ticking.cancel()
        assert creds.access_key_id == "SLOWAK" and ticks >= 5

    asyncio.run(main())


def test_under_uvloop():
    uvloop = pytest.importorskip("uvloop")

    async def main() -> str:
        c = await get_credentials(auth.AwsCredentialsProvider.new_static("UVAK", "UVSK"))
        return c.access_key_id

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(main()) == "UVAK"
    finally:
        loop.close()
