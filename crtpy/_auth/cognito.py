"""Amazon Cognito Identity: GetCredentialsForIdentity (an unsigned JSON 1.1 call).

``endpoint`` is the service host (``cognito-identity.<region>.amazonaws.com``), reached
with ``tls_ctx``; ``AWS_ENDPOINT_URL_COGNITO_IDENTITY`` (a full URL) overrides it, as in
the AWS SDKs.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from .._errors import error
from . import httpfetch
from .providers import make_credentials

_log = logging.getLogger("crtpy.auth")
_FAIL = "AWS_AUTH_CREDENTIALS_PROVIDER_COGNITO_SOURCE_FAILURE"


def fetch_blocking(endpoint: str, identity: str, tls_ctx: Any, logins: Sequence[tuple[str, str]] | None,
                   custom_role_arn: str | None, bootstrap: Any, proxy: Any) -> Any:
    override = os.environ.get("AWS_ENDPOINT_URL_COGNITO_IDENTITY")
    ep = httpfetch.parse_endpoint(override or endpoint)
    doc: dict[str, Any] = {"IdentityId": identity}
    if logins:
        doc["Logins"] = {name: token for name, token in logins}
    if custom_role_arn:
        doc["CustomRoleArn"] = custom_role_arn
    headers = [("Content-Type", "application/x-amz-json-1.1"),
               ("X-Amz-Target", "AWSCognitoIdentityService.GetCredentialsForIdentity")]
    try:
        resp = httpfetch.request(ep, "POST", "/", headers, json.dumps(doc).encode(), tls_ctx=tls_ctx,
                                 bootstrap=bootstrap, proxy_options=proxy)
    except Exception as exc:  # noqa: BLE001
        _log.debug("Cognito request failed: %s", getattr(exc, "name", type(exc).__name__))
        raise error(_FAIL, "Cognito Identity could not be reached.") from None
    if resp.status != 200:
        raise error(_FAIL, f"Cognito Identity answered {resp.status}.")
    try:
        creds = json.loads(resp.body)["Credentials"]
        exp = creds.get("Expiration")
        return make_credentials(creds["AccessKeyId"], creds["SecretKey"], creds.get("SessionToken"),
                                float(exp) if exp is not None else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise error(_FAIL, "Cognito Identity answered without credentials.") from None
