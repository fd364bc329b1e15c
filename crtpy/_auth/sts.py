"""AWS STS: AssumeRole (signed with the source credentials) and
AssumeRoleWithWebIdentity (unsigned, with the token file's contents).

The endpoint is ``AWS_ENDPOINT_URL_STS``, else ``AWS_ENDPOINT_URL``, else the regional
``https://sts.<region>.amazonaws.com``; the region comes from the profile, else
``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else us-east-1.
"""
from __future__ import annotations

import hashlib
import logging
import os
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlencode

from .._errors import error
from . import httpfetch
from . import signing as S
from .providers import make_credentials, parse_timestamp

_log = logging.getLogger("crtpy.auth")
_FAIL = "AWS_AUTH_CREDENTIALS_PROVIDER_STS_SOURCE_FAILURE"
_FAIL_WEB = "AWS_AUTH_CREDENTIALS_PROVIDER_STS_WEB_IDENTITY_SOURCE_FAILURE"
DURATION_SECONDS = 900


def region_of(region: str | None) -> str:
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def endpoint(region: str) -> httpfetch.Endpoint:
    url = os.environ.get("AWS_ENDPOINT_URL_STS") or os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        url = f"https://sts.{region}.amazonaws.com"
    return httpfetch.parse_endpoint(url)


def _credentials_from_xml(body: bytes, fail: str) -> Any:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise error(fail, "STS answered with a document that is not XML.") from None
    values: dict[str, str] = {}
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration") and el.text:
            values.setdefault(tag, el.text.strip())
    try:
        exp = values.get("Expiration")
        return make_credentials(values["AccessKeyId"], values["SecretAccessKey"], values.get("SessionToken"),
                                parse_timestamp(exp) if exp else None)
    except (KeyError, ValueError):
        raise error(fail, "STS answered without credentials.") from None


def _post(ep: httpfetch.Endpoint, form: dict[str, str], bootstrap: Any, fail: str, signer: Any = None) -> Any:
    body = urlencode(form).encode()
    headers = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), ("Accept", "*/*")]
    try:
        resp = httpfetch.request(ep, "POST", "/", headers, body, bootstrap=bootstrap, signer=signer)
    except Exception as exc:  # noqa: BLE001
        _log.debug("STS request failed: %s", getattr(exc, "name", type(exc).__name__))
        raise error(fail, "STS could not be reached.") from None
    if resp.status != 200:
        raise error(fail, f"STS answered {resp.status}.")
    return _credentials_from_xml(resp.body, fail)


def assume_role_blocking(bootstrap: Any, source_credentials: Any, role_arn: str, session_name: str,
                         region: str | None = None, external_id: str | None = None,
                         duration_seconds: int = DURATION_SECONDS) -> Any:
    region = region_of(region)
    ep = endpoint(region)
    form = {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": role_arn,
            "RoleSessionName": session_name, "DurationSeconds": str(duration_seconds)}
    if external_id:
        form["ExternalId"] = external_id
    body_hash = hashlib.sha256(urlencode(form).encode()).hexdigest()
    params = S.SigningParams(region=region, service="sts")

    def signer(request: Any) -> None:
        pairs = list(request.headers)
        result = S.sign(request.method, request.path, pairs, body_hash, source_credentials.access_key_id,
                        source_credentials.secret_access_key, source_credentials.session_token, params)
        for name, value in result.headers:
            request.headers.add(name, value)

    return _post(ep, form, bootstrap, _FAIL, signer)


def assume_role_with_web_identity_blocking(bootstrap: Any, role_arn: str, session_name: str, token_file: str,
                                           region: str | None = None) -> Any:
    try:
        with open(os.path.expanduser(token_file), encoding="utf-8") as f:
            token = f.read().strip()
    except OSError:
        raise error(_FAIL_WEB, "The web identity token file cannot be read.") from None
    if not token:
        raise error(_FAIL_WEB, "The web identity token file is empty.")
    region = region_of(region)
    form = {"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": role_arn,
            "RoleSessionName": session_name, "WebIdentityToken": token}
    return _post(endpoint(region), form, bootstrap, _FAIL_WEB)
