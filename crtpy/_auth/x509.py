"""AWS IoT credentials endpoint: ``GET /role-aliases/<alias>/credentials`` over mutual
TLS (the client certificate of ``tls_ctx``), naming the thing in
``x-amzn-iot-thingname``.  ``endpoint`` is a host, optionally ``host:port``."""
from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

from .._errors import error
from . import httpfetch
from .providers import make_credentials, parse_timestamp

_log = logging.getLogger("crtpy.auth")
_FAIL = "AWS_AUTH_CREDENTIALS_PROVIDER_X509_SOURCE_FAILURE"


def fetch_blocking(endpoint: str, thing_name: str, role_alias: str, tls_ctx: Any, bootstrap: Any,
                   proxy: Any) -> Any:
    ep = httpfetch.parse_endpoint(endpoint)
    path = f"/role-aliases/{quote(role_alias, safe='')}/credentials"
    headers = [("x-amzn-iot-thingname", thing_name), ("Accept", "application/json")]
    try:
        resp = httpfetch.request(ep, "GET", path, headers, tls_ctx=tls_ctx, bootstrap=bootstrap,
                                 proxy_options=proxy)
    except Exception as exc:  # noqa: BLE001
        _log.debug("X.509 credentials request failed: %s", getattr(exc, "name", type(exc).__name__))
        raise error(_FAIL, "The IoT credentials endpoint could not be reached.") from None
    if resp.status != 200:
        raise error(_FAIL, f"The IoT credentials endpoint answered {resp.status}.")
    try:
        creds = json.loads(resp.body)["credentials"]
        exp = creds.get("expiration")
        return make_credentials(creds["accessKeyId"], creds["secretAccessKey"], creds.get("sessionToken"),
                                parse_timestamp(exp) if exp else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise error(_FAIL, "The IoT credentials endpoint answered without credentials.") from None
