"""EC2 instance metadata (IMDS) credentials, with the IMDSv2 session-token flow.

1. ``PUT /latest/api/token`` (``x-aws-ec2-metadata-token-ttl-seconds``) gets a token;
   a 403 means IMDS access is disabled (fail); 404/405/other failures fall back to
   IMDSv1 (no token) unless ``AWS_EC2_METADATA_V1_DISABLED=true``.
2. ``GET /latest/meta-data/iam/security-credentials/`` gives the role name.
3. ``GET /latest/meta-data/iam/security-credentials/<role>`` gives the credentials.

A 401 on a GET means the token expired: a new token is fetched and the GET retried once.
The endpoint is ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (or the profile's
``ec2_metadata_service_endpoint``), by default ``http://169.254.169.254``
(``http://[fd00:ec2::254]`` with ``AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6``).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

from .._errors import error
from . import httpfetch
from .providers import make_credentials, parse_timestamp

_log = logging.getLogger("crtpy.auth")
_FAIL = "AWS_AUTH_CREDENTIALS_PROVIDER_IMDS_SOURCE_FAILURE"
TOKEN_TTL = "21600"
TIMEOUT = 2.0


def endpoint() -> httpfetch.Endpoint:
    url = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
    if not url:
        mode = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv4").lower()
        url = "http://[fd00:ec2::254]" if mode == "ipv6" else "http://169.254.169.254"
    return httpfetch.parse_endpoint(url, "http")


class _Client:
    def __init__(self, bootstrap: Any) -> None:
        self._bootstrap = bootstrap
        self._endpoint = endpoint()
        self._token: str | None = None

    def _send(self, method: str, path: str, headers: list[tuple[str, str]]) -> httpfetch.Response:
        try:
            return httpfetch.request(self._endpoint, method, path, headers, bootstrap=self._bootstrap,
                                     timeout=TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            _log.debug("IMDS request failed: %s", getattr(exc, "name", type(exc).__name__))
            raise error(_FAIL, "The instance metadata service could not be reached.") from None

    def fetch_token(self) -> None:
        try:
            resp = httpfetch.request(self._endpoint, "PUT", "/latest/api/token",
                                     [("x-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL)],
                                     bootstrap=self._bootstrap, timeout=TIMEOUT)
        except Exception:  # noqa: BLE001 - unreachable: maybe IMDSv1 only
            resp = None
        if resp is not None and resp.status == 200 and resp.body:
            self._token = resp.body.decode("utf-8", "replace").strip()
            return
        if resp is not None and resp.status in (400, 403):
            raise error(_FAIL, f"The instance metadata token request was refused ({resp.status}).")
        if os.environ.get("AWS_EC2_METADATA_V1_DISABLED", "").lower() == "true":
            raise error(_FAIL, "No IMDSv2 token and IMDSv1 fallback is disabled.")
        self._token = None  # fall back to IMDSv1

    def get(self, path: str) -> bytes:
        for attempt in range(2):
            headers = [("x-aws-ec2-metadata-token", self._token)] if self._token else []
            resp = self._send("GET", path, headers)
            if resp.status == 200:
                return resp.body
            if resp.status == 401 and attempt == 0:
                self.fetch_token()  # the token expired or was rejected: get a new one
                continue
            raise error(_FAIL, f"The instance metadata service answered {resp.status}.")
        raise error(_FAIL)


def fetch_blocking(bootstrap: Any) -> Any:
    client = _Client(bootstrap)
    client.fetch_token()
    roles = client.get("/latest/meta-data/iam/security-credentials/").decode("utf-8", "replace").split()
    if not roles:
        raise error(_FAIL, "The instance has no IAM role.")
    doc_bytes = client.get("/latest/meta-data/iam/security-credentials/" + roles[0])
    try:
        doc = json.loads(doc_bytes)
        if doc.get("Code", "Success") != "Success":
            raise ValueError("not success")
        exp = doc.get("Expiration")
        return make_credentials(doc["AccessKeyId"], doc["SecretAccessKey"], doc.get("Token"),
                                parse_timestamp(exp) if exp else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise error(_FAIL, "The instance metadata credentials document is not valid.") from None
