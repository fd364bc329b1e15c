"""Signing one request with crtpy and with the reference awscrt, for differential tests."""
from __future__ import annotations

import datetime
import io
from collections.abc import Sequence
from typing import Any

import awscrt.auth as ref_auth
import awscrt.http as ref_http

from crtpy import auth, http

FIXED_DATE = datetime.datetime(2024, 2, 29, 23, 59, 58, tzinfo=datetime.timezone.utc)
AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def sign_both(method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes | None,
              token: str | None = None, **config: Any) -> tuple[Any, Any]:
    """Sign with both runtimes; each result is ("ok", path, headers) or ("error", name)."""
    return (_sign(auth, http, method, path, headers, body, token, config),
            _sign(ref_auth, ref_http, method, path, headers, body, token, config))


def _sign(a: Any, h: Any, method: str, path: str, headers: Sequence[tuple[str, str]],
          body: bytes | None, token: str | None, config: dict[str, Any]) -> Any:
    cfg_args = dict(config)
    for key, enum_name in (("algorithm", "AwsSigningAlgorithm"), ("signature_type", "AwsSignatureType"),
                           ("signed_body_header_type", "AwsSignedBodyHeaderType")):
        if key in cfg_args:
            cfg_args[key] = getattr(a, enum_name)(int(cfg_args[key]))
    cfg_args.setdefault("date", FIXED_DATE)
    cfg_args.setdefault("region", "us-east-1")
    cfg_args.setdefault("service", "service")
    provider = a.AwsCredentialsProvider.new_static(AKID, SECRET, token)
    cfg = a.AwsSigningConfig(credentials_provider=provider, **cfg_args)
    req = h.HttpRequest(method, path, h.HttpHeaders(list(headers)),
                        io.BytesIO(body) if body is not None else None)
    try:
        signed = a.aws_sign_request(req, cfg).result(10)
    except Exception as exc:  # noqa: BLE001
        return ("error", getattr(exc, "name", type(exc).__name__))
    return ("ok", signed.path, list(signed.headers))
