"""ECS / EKS container credentials endpoint.

``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` is appended to ``http://169.254.170.2``;
otherwise ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` is used as is (plain http only to a
loopback address or the ECS/EKS link-local hosts).  The ``Authorization`` header comes
from the file named by ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` or from
``AWS_CONTAINER_AUTHORIZATION_TOKEN``.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
from typing import Any

from .._errors import error
from . import httpfetch
from .providers import make_credentials, parse_timestamp

_log = logging.getLogger("crtpy.auth")
_FAIL = "AWS_AUTH_CREDENTIALS_PROVIDER_ECS_SOURCE_FAILURE"
RELATIVE_URI_BASE = "http://169.254.170.2"
_ALLOWED_HTTP_HOSTS = {"169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost"}


def _http_host_allowed(host: str) -> bool:
    if host in _ALLOWED_HTTP_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _target() -> tuple[httpfetch.Endpoint, str]:
    relative = os.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    if relative:
        ep = httpfetch.parse_endpoint(RELATIVE_URI_BASE, "http")
        return ep, relative if relative.startswith("/") else "/" + relative
    full = os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    if not full:
        raise error(_FAIL, "No container credentials endpoint is configured.")
    from urllib.parse import urlsplit

    parts = urlsplit(full)
    ep = httpfetch.parse_endpoint(f"{parts.scheme}://{parts.netloc}", "http")
    if ep.scheme == "http" and not _http_host_allowed(ep.host):
        raise error("AWS_AUTH_CREDENTIALS_PROVIDER_ECS_INVALID_HOST",
                    "Plain-http container credentials endpoints must be loopback or ECS/EKS hosts.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return ep, path


def _auth_token() -> str | None:
    token_file = os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                return f.read().strip()
        except OSError:
            raise error("AWS_AUTH_CREDENTIALS_PROVIDER_ECS_INVALID_TOKEN_FILE_PATH",
                        "The container authorization token file cannot be read.") from None
    return os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN") or None


def fetch_blocking(bootstrap: Any) -> Any:
    ep, path = _target()
    headers = [("Accept", "application/json")]
    token = _auth_token()
    if token:
        if "\r" in token or "\n" in token:
            raise error(_FAIL, "The container authorization token is not a valid header value.")
        headers.append(("Authorization", token))
    try:
        resp = httpfetch.request(ep, "GET", path, headers, bootstrap=bootstrap, timeout=5.0)
    except Exception as exc:  # noqa: BLE001
        _log.debug("ECS credentials request failed: %s", getattr(exc, "name", type(exc).__name__))
        raise error(_FAIL, "The container credentials endpoint could not be reached.") from None
    if resp.status != 200:
        raise error(_FAIL, f"The container credentials endpoint answered {resp.status}.")
    try:
        doc = json.loads(resp.body)
        exp = doc.get("Expiration")
        return make_credentials(doc["AccessKeyId"], doc["SecretAccessKey"], doc.get("Token"),
                                parse_timestamp(exp) if exp else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise error(_FAIL, "The container credentials document is not valid.") from None
