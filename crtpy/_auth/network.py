"""Credentials sources that call a service: STS, EC2 instance metadata (IMDS), the ECS
container endpoint, Cognito Identity and the IoT X.509 credentials endpoint, plus the
default provider chain that strings them together."""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from .._errors import error
from .._runtime.futures import CrtFuture, failed
from . import providers as P

_log = logging.getLogger("crtpy.auth")


class FailingSource(P.Source):
    """A source that always fails with one error name (used when a source cannot work)."""

    def __init__(self, error_name: str, message: str | None = None) -> None:
        self._name = error_name
        self._message = message

    def get(self) -> CrtFuture:
        return failed(error(self._name, self._message))


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def default_chain(bootstrap: Any) -> P.Source:
    sources: list[P.Source] = [P.EnvironmentSource()]
    try:
        sources.append(P.ProfileSource(bootstrap, None, None, None))
    except Exception as exc:  # noqa: BLE001 - no usable profile: skip this link
        _log.debug("default chain: no profile link (%s)", getattr(exc, "name", type(exc).__name__))
    token_file = os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE")
    role_arn = os.environ.get("AWS_ROLE_ARN")
    if token_file and role_arn:
        sources.append(web_identity_source(bootstrap, role_arn, token_file,
                                           os.environ.get("AWS_ROLE_SESSION_NAME")))
    if (os.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            or os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")):
        sources.append(ecs_source(bootstrap))
    elif not _env_true("AWS_EC2_METADATA_DISABLED"):
        sources.append(imds_source(bootstrap))
    return P.CachingSource(P.ChainSource(sources))


def web_identity_source(bootstrap: Any, role_arn: str, token_file: str,
                        session_name: str | None) -> P.Source:
    from . import sts

    def fetch() -> Any:
        return sts.assume_role_with_web_identity_blocking(
            bootstrap, role_arn, session_name or "aws-common-runtime", token_file,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))

    return P.CachingSource(P.BlockingSource(fetch))


def ecs_source(bootstrap: Any) -> P.Source:
    from . import ecs

    return P.CachingSource(P.BlockingSource(lambda: ecs.fetch_blocking(bootstrap)))


def imds_source(bootstrap: Any) -> P.Source:
    from . import imds

    return P.CachingSource(P.BlockingSource(lambda: imds.fetch_blocking(bootstrap)))


def cognito_source(endpoint: str, identity: str, tls_ctx: Any, logins: Sequence[tuple[str, str]] | None,
                   custom_role_arn: str | None, bootstrap: Any, proxy: Any) -> P.Source:
    from . import cognito

    return P.CachingSource(P.BlockingSource(lambda: cognito.fetch_blocking(
        endpoint, identity, tls_ctx, logins, custom_role_arn, bootstrap, proxy)))


def x509_source(endpoint: str, thing_name: str, role_alias: str, tls_ctx: Any, bootstrap: Any,
                proxy: Any) -> P.Source:
    from . import x509

    return P.CachingSource(P.BlockingSource(lambda: x509.fetch_blocking(
        endpoint, thing_name, role_alias, tls_ctx, bootstrap, proxy)))
