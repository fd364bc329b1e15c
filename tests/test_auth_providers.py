"""Credentials providers that need no network: static, environment, profile files,
credential_process, chain, delegate, and the caching shared by fetching providers."""
from __future__ import annotations

import datetime
import json
import threading

import pytest

from crtpy import auth
from crtpy._auth import providers as P
from crtpy._auth.profile import parse
from crtpy.exceptions import AwsCrtError

UTC = datetime.timezone.utc


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _get(provider, timeout=10):
    return provider.get_credentials().result(timeout)


def _error_name(provider, timeout=10):
    exc = provider.get_credentials().exception(timeout)
    assert exc is not None
    return exc.name


def test_static():
    c = _get(auth.AwsCredentialsProvider.new_static("AK", "SK", "TOK"))
    assert (c.access_key_id, c.secret_access_key, c.session_token, c.expiration) == ("AK", "SK", "TOK", None)
    assert _get(auth.AwsCredentialsProvider.new_static("AK", "SK")).session_token is None
    with pytest.raises(ValueError):
        auth.AwsCredentialsProvider.new_static("", "SK")
    with pytest.raises(TypeError):
        auth.AwsCredentialsProvider.new_static("AK", 3)


def test_environment(monkeypatch):
    provider = auth.AwsCredentialsProvider.new_environment()
    assert _error_name(provider) == "AWS_AUTH_CREDENTIALS_PROVIDER_INVALID_ENVIRONMENT"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVAK")
    assert _error_name(provider) == "AWS_AUTH_CREDENTIALS_PROVIDER_INVALID_ENVIRONMENT"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ENVSK")
    c = _get(provider)
    assert (c.access_key_id, c.secret_access_key, c.session_token) == ("ENVAK", "ENVSK", None)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "ENVTOK")
    assert _get(provider).session_token == "ENVTOK"  # read again at each call
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "")
    assert _error_name(provider) == "AWS_AUTH_CREDENTIALS_PROVIDER_INVALID_ENVIRONMENT"


def test_delegate():
    calls = []

    def fn():
        calls.append(threading.current_thread())
        return auth.AwsCredentials("DAK", "DSK")

    provider = auth.AwsCredentialsProvider.new_delegate(fn)
    assert _get(provider).access_key_id == "DAK"
    assert _get(provider).access_key_id == "DAK"
    assert len(calls) == 2
    assert _error_name(auth.AwsCredentialsProvider.new_delegate(lambda: "nope")) == \
        "AWS_AUTH_CREDENTIALS_PROVIDER_DELEGATE_FAILURE"

    def boom():
        raise RuntimeError("boom")

    assert _error_name(auth.AwsCredentialsProvider.new_delegate(boom)) == \
        "AWS_AUTH_CREDENTIALS_PROVIDER_DELEGATE_FAILURE"
    with pytest.raises(TypeError):
        auth.AwsCredentialsProvider.new_delegate(5)


def test_chain(monkeypatch):
    chain = auth.AwsCredentialsProvider.new_chain([
        auth.AwsCredentialsProvider.new_environment(),
        auth.AwsCredentialsProvider.new_delegate(lambda: None),
        auth.AwsCredentialsProvider.new_static("CHAINAK", "CHAINSK"),
    ])
    assert _get(chain).access_key_id == "CHAINAK"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ENVAK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ENVSK")
    assert _get(chain).access_key_id == "ENVAK"
    failing = auth.AwsCredentialsProvider.new_chain([
        auth.AwsCredentialsProvider.new_delegate(lambda: None),
        auth.AwsCredentialsProvider.new_delegate(lambda: 1),
    ])
    assert _error_name(failing) == "AWS_AUTH_CREDENTIALS_PROVIDER_DELEGATE_FAILURE"
    with pytest.raises(ValueError):
        auth.AwsCredentialsProvider.new_chain([])
    with pytest.raises(TypeError):
        auth.AwsCredentialsProvider.new_chain(["x"])


# -- profile files ---------------------------------------------------------------------------

CONFIG = """\
# comment
[default]
region = us-east-1
[profile p2]
aws_access_key_id = CFGAK
aws_secret_access_key = CFGSK ; trailing comment
s3 =
  max_concurrent_requests = 20
[profile both]
aws_access_key_id = FROMCONFIG
aws_secret_access_key = FROMCONFIG
[sso-session my-sso]
aws_access_key_id = NOTAPROFILE
[profile nokeys]
region = eu-west-1
"""
CREDENTIALS = """\
[default]
aws_access_key_id = DEFAK
aws_secret_access_key = DEFSK
aws_session_token = DEFTOK
[both]
aws_access_key_id = FROMCREDS
aws_secret_access_key = FROMCREDS
[credonly]
aws_access_key_id=COAK
aws_secret_access_key=COSK
"""


@pytest.fixture
def profile_files(tmp_path):
    config = tmp_path / "config"
    creds = tmp_path / "credentials"
    config.write_text(CONFIG)
    creds.write_text(CREDENTIALS)
    return str(config), str(creds)


def test_profile_parsing():
    profiles = parse(CONFIG, is_config=True)
    assert set(profiles) == {"default", "p2", "both", "nokeys"}
    assert profiles["p2"]["aws_secret_access_key"] == "CFGSK"
    assert "max_concurrent_requests" not in profiles["p2"]
    assert set(parse(CREDENTIALS, is_config=False)) == {"default", "both", "credonly"}


def test_profile_provider_selection(profile_files, monkeypatch):
    config, creds = profile_files
    new = auth.AwsCredentialsProvider.new_profile
    c = _get(new(config_filepath=config, credentials_filepath=creds))
    assert (c.access_key_id, c.secret_access_key, c.session_token) == ("DEFAK", "DEFSK", "DEFTOK")
    assert _get(new(profile_name="p2", config_filepath=config, credentials_filepath=creds)).access_key_id == "CFGAK"
    assert _get(new(profile_name="both", config_filepath=config, credentials_filepath=creds)).access_key_id == \
        "FROMCREDS"
    assert _error_name(new(profile_name="nokeys", config_filepath=config, credentials_filepath=creds)) == \
        "AWS_AUTH_CREDENTIALS_PROVIDER_PROFILE_SOURCE_FAILURE"
    with pytest.raises(AwsCrtError) as ei:
        new(profile_name="my-sso", config_filepath=config, credentials_filepath=creds)
    assert ei.value.name == "AWS_ERROR_STRING_MATCH_NOT_FOUND"
    # environment variables pick the profile and the files
    monkeypatch.setenv("AWS_PROFILE", "credonly")
    monkeypatch.setenv("AWS_CONFIG_FILE", config)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
    assert _get(new()).access_key_id == "COAK"
    with pytest.raises(FileNotFoundError):
        new(config_filepath=config + ".missing", credentials_filepath=creds + ".missing")


def _process_script(tmp_path, name, body):
    script = tmp_path / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def _creds_json(expiration=None, token="PTOK", ak="PAK"):
    doc = {"Version": 1, "AccessKeyId": ak, "SecretAccessKey": "PSK", "SessionToken": token}
    if expiration is not None:
        doc["Expiration"] = expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(doc)


def test_credential_process_in_profile_and_process_provider(tmp_path, monkeypatch):
    exp = datetime.datetime(2031, 5, 29, 0, 21, 43, tzinfo=UTC)
    good = _process_script(tmp_path, "good.sh", f"cat <<'EOF'\n{_creds_json(exp)}\nEOF\n")
    failing = _process_script(tmp_path, "fail.sh", "echo oops >&2\nexit 3\n")
    garbage = _process_script(tmp_path, "garbage.sh", "echo not-json\n")
    config = tmp_path / "config"
    config.write_text(f"[default]\ncredential_process = {good}\n[profile bad]\ncredential_process = {failing}\n"
                      f"[profile garbage]\ncredential_process = {garbage}\n[profile none]\nregion=x\n")
    c = _get(auth.AwsCredentialsProvider.new_profile(config_filepath=str(config),
                                                     credentials_filepath=str(tmp_path / "nothing")))
    assert (c.access_key_id, c.session_token, c.expiration) == ("PAK", "PTOK", exp)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    c = _get(auth.AwsCredentialsProvider.new_process())
    assert (c.access_key_id, c.secret_access_key, c.expiration) == ("PAK", "PSK", exp)
    assert _error_name(auth.AwsCredentialsProvider.new_process("bad")) == "AWS_ERROR_STRING_MATCH_NOT_FOUND"
    assert _error_name(auth.AwsCredentialsProvider.new_process("garbage")) == "AWS_ERROR_STRING_MATCH_NOT_FOUND"
    with pytest.raises(AwsCrtError):
        auth.AwsCredentialsProvider.new_process("none")
    monkeypatch.setenv("AWS_PROFILE", "bad")
    assert _error_name(auth.AwsCredentialsProvider.new_process()) == "AWS_ERROR_STRING_MATCH_NOT_FOUND"


def test_process_provider_caches_until_near_expiry(tmp_path, monkeypatch):
    counter = tmp_path / "count"
    counter.write_text("")
    far = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
    near = datetime.datetime.now(UTC) + datetime.timedelta(seconds=30)  # inside the refresh margin
    for name, exp in (("far", far), ("near", near)):
        _process_script(tmp_path, f"{name}.sh", f"echo x >> {counter}\ncat <<'EOF'\n{_creds_json(exp)}\nEOF\n")
    config = tmp_path / "config"
    config.write_text(f"[profile far]\ncredential_process = {tmp_path}/far.sh\n"
                      f"[profile near]\ncredential_process = {tmp_path}/near.sh\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    far_provider = auth.AwsCredentialsProvider.new_process("far")
    for _ in range(3):
        assert _get(far_provider).access_key_id == "PAK"
    assert counter.read_text().count("x") == 1
    near_provider = auth.AwsCredentialsProvider.new_process("near")
    for _ in range(3):
        _get(near_provider)
    assert counter.read_text().count("x") == 4


# -- caching ---------------------------------------------------------------------------------

class _GatedSource(P.Source):
    def __init__(self, expiration=None):
        self.gate = threading.Event()
        self.calls = 0
        self.expiration = expiration

    def get(self):
        self.calls += 1
        n = self.calls

        def work():
            assert self.gate.wait(10)
            return P.make_credentials(f"AK{n}", "SK", None, self.expiration)

        return P.run_blocking(work)


def test_concurrent_callers_share_one_fetch(leak_check):
    inner = _GatedSource()
    provider = auth.AwsCredentialsProvider(P.CachingSource(inner))
    results = []
    threads = [threading.Thread(target=lambda: results.append(provider.get_credentials())) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 16 and not any(f.done() for f in results)
    inner.gate.set()
    assert {f.result(10).access_key_id for f in results} == {"AK1"}
    assert inner.calls == 1
    assert provider.get_credentials().result(10).access_key_id == "AK1"  # cached
    assert inner.calls == 1


def test_refresh_before_expiry_with_clock():
    now = [1000.0]
    inner = _GatedSource(expiration=2000)
    inner.gate.set()
    cache = P.CachingSource(inner, margin=60, clock=lambda: now[0])
    assert cache.get().result(10).access_key_id == "AK1"
    now[0] = 1900.0
    assert cache.get().result(10).access_key_id == "AK1"
    now[0] = 1941.0  # within 60 s of the expiration: refreshed
    assert cache.get().result(10).access_key_id == "AK2"
    assert inner.calls == 2


def test_failed_fetch_is_not_cached():
    attempts = []

    class Flaky(P.Source):
        def get(self):
            attempts.append(1)
            if len(attempts) == 1:
                return P.failed(AwsCrtError(0, "AWS_AUTH_CREDENTIALS_PROVIDER_ECS_SOURCE_FAILURE", "x"))
            return P.completed(P.make_credentials("OK", "SK"))

    cache = P.CachingSource(Flaky())
    assert cache.get().exception(5).name == "AWS_AUTH_CREDENTIALS_PROVIDER_ECS_SOURCE_FAILURE"
    assert cache.get().result(5).access_key_id == "OK"
