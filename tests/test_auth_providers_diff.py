"""The file- and environment-based providers of crtpy and of the reference, given the same
files and variables, give the same credentials or the same error name."""
from __future__ import annotations

import json

import awscrt.auth as ref_auth
import pytest

from crtpy import auth

CONFIG = """\
[default]
region = us-east-1
[profile cfg]
aws_access_key_id = CFGAK
aws_secret_access_key = CFGSK
aws_session_token = CFGTOK
[profile both]
aws_access_key_id = CONFIGAK
aws_secret_access_key = CONFIGSK
[profile keyonly]
aws_access_key_id = ONLYAK
[profile proc]
credential_process = {proc}
[profile badproc]
credential_process = {bad}
"""
CREDENTIALS = """\
[default]
aws_access_key_id = DEFAK
aws_secret_access_key = DEFSK
[both]
aws_access_key_id = CREDSAK
aws_secret_access_key = CREDSSK
"""


@pytest.fixture
def files(tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    doc = {"Version": 1, "AccessKeyId": "PAK", "SecretAccessKey": "PSK", "SessionToken": "PTOK",
           "Expiration": "2031-05-29T00:21:43Z"}
    proc = tmp_path / "proc.sh"
    proc.write_text(f"#!/bin/sh\necho '{json.dumps(doc)}'\n")
    proc.chmod(0o755)
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nexit 1\n")
    bad.chmod(0o755)
    config = tmp_path / "config"
    config.write_text(CONFIG.format(proc=proc, bad=bad))
    creds = tmp_path / "credentials"
    creds.write_text(CREDENTIALS)
    return str(config), str(creds)


def _outcome(make):
    try:
        provider = make()
    except Exception as exc:  # noqa: BLE001
        return ("raise", _name(exc))
    try:
        c = provider.get_credentials().result(20)
    except Exception as exc:  # noqa: BLE001
        return ("error", _name(exc))
    return ("ok", c.access_key_id, c.secret_access_key, c.session_token, c.expiration)


def _name(exc):
    name = getattr(exc, "name", None)
    if name:
        return name
    # the reference raises RuntimeError("<code> (<NAME>): ...") from some constructors
    text = str(exc)
    if "(" in text and ")" in text:
        return text[text.index("(") + 1:text.index(")")]
    return type(exc).__name__


@pytest.mark.parametrize("profile", [None, "cfg", "both", "keyonly", "proc", "badproc", "missing"])
def test_profile_provider_matches_reference(files, profile):
    config, creds = files
    ours = _outcome(lambda: auth.AwsCredentialsProvider.new_profile(
        profile_name=profile, config_filepath=config, credentials_filepath=creds))
    ref = _outcome(lambda: ref_auth.AwsCredentialsProvider.new_profile(
        profile_name=profile, config_filepath=config, credentials_filepath=creds))
    assert ours == ref


@pytest.mark.parametrize("profile", [None, "proc", "badproc", "cfg", "missing"])
def test_process_provider_matches_reference(files, profile, monkeypatch):
    config, _ = files
    monkeypatch.setenv("AWS_CONFIG_FILE", config)
    ours = _outcome(lambda: auth.AwsCredentialsProvider.new_process(profile))
    ref = _outcome(lambda: ref_auth.AwsCredentialsProvider.new_process(profile))
    assert ours == ref


@pytest.mark.parametrize("env", [{}, {"AWS_ACCESS_KEY_ID": "A"}, {"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S"},
                                 {"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S", "AWS_SESSION_TOKEN": "T"},
                                 {"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S", "AWS_SESSION_TOKEN": ""},
                                 {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "S"}])
def test_environment_provider_matches_reference(files, env, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert _outcome(auth.AwsCredentialsProvider.new_environment) == \
        _outcome(ref_auth.AwsCredentialsProvider.new_environment)


def test_profile_selected_by_environment_matches_reference(files, monkeypatch):
    config, creds = files
    monkeypatch.setenv("AWS_CONFIG_FILE", config)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
    for profile in ("cfg", "both", "default"):
        monkeypatch.setenv("AWS_PROFILE", profile)
        assert _outcome(auth.AwsCredentialsProvider.new_profile) == \
            _outcome(ref_auth.AwsCredentialsProvider.new_profile)
