"""AWS credentials, credentials providers, and request signing (SigV4, SigV4a, S3 Express).

The work is done in :mod:`crtpy._auth`; this module holds the public types and checks
their arguments.
"""
from __future__ import annotations

import concurrent.futures
import datetime
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from . import NativeResource
from ._auth import providers as _providers
from ._auth import signing as _signing
from ._auth.sign_request import sign_request as _sign_request
from ._errors import error as _error

if TYPE_CHECKING:
    from .http import HttpRequest

__all__ = [
    "AwsCredentials",
    "AwsCredentialsProvider",
    "AwsCredentialsProviderBase",
    "AwsSignatureType",
    "AwsSignedBodyHeaderType",
    "AwsSignedBodyValue",
    "AwsSigningAlgorithm",
    "AwsSigningConfig",
    "aws_sign_request",
]

_MAX_TIMESTAMP = 0xFFFFFFFFFFFFFFFF


def _check_str(value: Any, name: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str{' or None' if optional else ''}, not {type(value).__name__}")


class AwsCredentials(NativeResource):
    """An immutable set of AWS credentials used to sign requests.

    Args:
        access_key_id (str): the access key id.
        secret_access_key (str): the secret access key.
        session_token (Optional[str]): the session token of temporary credentials.
        expiration (Optional[datetime.datetime]): when the credentials stop working;
            kept in UTC, truncated to the second (a naive datetime is local time).
            None means they never expire.

    The secret and the token are never shown by ``repr()``.
    """

    __slots__ = ("_access_key_id", "_expiration_ts", "_secret_access_key", "_session_token")

    def __init__(self, access_key_id: str, secret_access_key: str, session_token: str | None = None,
                 expiration: datetime.datetime | None = None) -> None:
        _check_str(access_key_id, "access_key_id")
        _check_str(secret_access_key, "secret_access_key")
        _check_str(session_token, "session_token", optional=True)
        ts: int | None = None
        if expiration is not None:
            if not isinstance(expiration, datetime.datetime):
                raise TypeError("expiration must be a datetime.datetime or None")
            ts = int(expiration.timestamp())
            if ts < 0 or ts >= _MAX_TIMESTAMP:
                raise OverflowError("expiration datetime out of range")
        super().__init__()
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._session_token = session_token
        self._expiration_ts = ts

    @classmethod
    def _new(cls, access_key_id: str, secret_access_key: str, session_token: str | None,
             expiration_ts: int | None) -> AwsCredentials:
        self = cls.__new__(cls)
        NativeResource.__init__(self)
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._session_token = session_token
        self._expiration_ts = expiration_ts
        return self

    @property
    def access_key_id(self) -> str:
        """str: the access key id."""
        return self._access_key_id

    @property
    def secret_access_key(self) -> str:
        """str: the secret access key."""
        return self._secret_access_key

    @property
    def session_token(self) -> str | None:
        """Optional[str]: the session token, or None."""
        return self._session_token

    @property
    def expiration(self) -> datetime.datetime | None:
        """Optional[datetime.datetime]: expiration time in UTC, or None if they never expire."""
        if self._expiration_ts is None:
            return None
        return datetime.datetime.fromtimestamp(self._expiration_ts, tz=datetime.timezone.utc)

    def __deepcopy__(self, memo: Any) -> AwsCredentials:
        return self

    def __copy__(self) -> AwsCredentials:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("AwsCredentials cannot be pickled")

    def __repr__(self) -> str:
        ak = self._access_key_id
        shown = (ak[:4] + "****") if len(ak) > 4 else "****"
        return (f"AwsCredentials(access_key_id={shown!r}, secret_access_key='****', "
                f"session_token={'****' if self._session_token else None!r}, "
                f"expiration={self.expiration!r})")

    __str__ = __repr__


class AwsCredentialsProviderBase(NativeResource):
    """Base class of :class:`AwsCredentialsProvider` (its only subclass)."""

    def __init__(self) -> None:
        super().__init__()


def _check_bootstrap(client_bootstrap: Any) -> Any:
    if client_bootstrap is None:
        return None
    from .io import ClientBootstrap

    if not isinstance(client_bootstrap, ClientBootstrap):
        raise TypeError("client_bootstrap must be a crtpy.io.ClientBootstrap or None")
    return client_bootstrap


def _check_tls(tls_ctx: Any) -> None:
    from .io import ClientTlsContext

    if not isinstance(tls_ctx, ClientTlsContext):
        raise TypeError("tls_ctx must be a crtpy.io.ClientTlsContext")


def _check_proxy(http_proxy_options: Any) -> None:
    if http_proxy_options is None:
        return
    from .http import HttpProxyOptions

    if not isinstance(http_proxy_options, HttpProxyOptions):
        raise TypeError("http_proxy_options must be a crtpy.http.HttpProxyOptions or None")


class AwsCredentialsProvider(AwsCredentialsProviderBase):
    """A source of :class:`AwsCredentials`.  Build one with a ``new_*()`` class method;
    :meth:`new_delegate` wraps any callable.  Providers that fetch (files, processes,
    network) keep the credentials until shortly before they expire, and concurrent
    :meth:`get_credentials` calls share one fetch."""

    def __init__(self, binding: Any) -> None:
        super().__init__()
        if not isinstance(binding, _providers.Source):
            raise TypeError("AwsCredentialsProvider is built with its new_*() class methods")
        self._binding = binding

    def __repr__(self) -> str:
        return f"<crtpy.auth.AwsCredentialsProvider {type(self._binding).__name__}>"

    @classmethod
    def new_default_chain(cls, client_bootstrap: Any | None = None) -> AwsCredentialsProvider:
        """The default chain of the AWS SDKs: environment variables, the shared profile
        files, web identity (``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``), the ECS
        container endpoint (when ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` or ``..._FULL_URI``
        is set), then EC2 instance metadata (unless ``AWS_EC2_METADATA_DISABLED=true``).

        Args:
            client_bootstrap (Optional[crtpy.io.ClientBootstrap]): bootstrap for network
                sources; None uses the default static one.
        """
        from ._auth import network

        return cls(network.default_chain(_check_bootstrap(client_bootstrap)))

    @classmethod
    def new_static(cls, access_key_id: str, secret_access_key: str,
                   session_token: str | None = None) -> AwsCredentialsProvider:
        """A provider that always gives the same credentials."""
        _check_str(access_key_id, "access_key_id")
        _check_str(secret_access_key, "secret_access_key")
        _check_str(session_token, "session_token", optional=True)
        if not access_key_id or not secret_access_key:
            raise _error("AWS_ERROR_INVALID_ARGUMENT", "access_key_id and secret_access_key must not be empty")
        creds = AwsCredentials._new(access_key_id, secret_access_key, session_token or None, None)
        return cls(_providers.StaticSource(creds))

    @classmethod
    def new_profile(cls, client_bootstrap: Any | None = None, profile_name: str | None = None,
                    config_filepath: str | None = None,
                    credentials_filepath: str | None = None) -> AwsCredentialsProvider:
        """Credentials from a profile of the shared config and credentials files: static
        keys, ``credential_process``, or a role (``role_arn`` with ``source_profile`` or
        ``web_identity_token_file``) assumed through STS.

        Args:
            client_bootstrap (Optional[crtpy.io.ClientBootstrap]): bootstrap for STS calls.
            profile_name (Optional[str]): the profile; else ``AWS_PROFILE``, else "default".
            config_filepath (Optional[str]): else ``AWS_CONFIG_FILE``, else ``~/.aws/config``.
            credentials_filepath (Optional[str]): else ``AWS_SHARED_CREDENTIALS_FILE``,
                else ``~/.aws/credentials``.
        """
        bootstrap = _check_bootstrap(client_bootstrap)
        _check_str(profile_name, "profile_name", optional=True)
        _check_str(config_filepath, "config_filepath", optional=True)
        _check_str(credentials_filepath, "credentials_filepath", optional=True)
        return cls(_providers.ProfileSource(bootstrap, profile_name, config_filepath, credentials_filepath))

    @classmethod
    def new_process(cls, profile_to_use: str | None = None) -> AwsCredentialsProvider:
        """Credentials printed (as JSON, ``Version`` 1) by the ``credential_process``
        command of a profile of the config file.

        Args:
            profile_to_use (Optional[str]): the profile; else ``AWS_PROFILE``, else "default".
        """
        _check_str(profile_to_use, "profile_to_use", optional=True)
        return cls(_providers.new_process_source(profile_to_use))

    @classmethod
    def new_environment(cls) -> AwsCredentialsProvider:
        """Credentials from ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
        ``AWS_SESSION_TOKEN``, read at each call."""
        return cls(_providers.EnvironmentSource())

    @classmethod
    def new_chain(cls, providers: Sequence[AwsCredentialsProvider]) -> AwsCredentialsProvider:
        """Ask each provider in order until one gives credentials.

        Args:
            providers (List[AwsCredentialsProvider]): at least one provider.
        """
        providers = list(providers)
        if not providers:
            raise ValueError("Must supply at least one AwsCredentialsProvider.")
        for p in providers:
            if not isinstance(p, AwsCredentialsProvider):
                raise TypeError("providers must hold AwsCredentialsProvider objects")
        return cls(_providers.ChainSource([p._binding for p in providers]))

    @classmethod
    def new_delegate(cls, get_credentials: Callable[[], AwsCredentials]) -> AwsCredentialsProvider:
        """A provider calling ``get_credentials()`` (no arguments, returns
        :class:`AwsCredentials`) each time credentials are needed."""
        if not callable(get_credentials):
            raise TypeError("get_credentials must be callable")
        return cls(_providers.DelegateSource(get_credentials))

    @classmethod
    def new_cognito(cls, *, endpoint: str, identity: str, tls_ctx: Any,
                    logins: Sequence[tuple[str, str]] | None = None,
                    custom_role_arn: str | None = None,
                    client_bootstrap: Any | None = None,
                    http_proxy_options: Any | None = None) -> AwsCredentialsProvider:
        """Credentials from Amazon Cognito Identity (GetCredentialsForIdentity).

        Args:
            endpoint (str): the Cognito Identity endpoint host.
            identity (str): the identity id.
            tls_ctx (crtpy.io.ClientTlsContext): TLS settings for the endpoint.
            logins (Optional[Sequence[Tuple[str, str]]]): (identity provider, token) pairs.
            custom_role_arn (Optional[str]): the role to use when several are possible.
            client_bootstrap (Optional[crtpy.io.ClientBootstrap]): None for the default.
            http_proxy_options (Optional[crtpy.http.HttpProxyOptions]): a proxy, or None.
        """
        _check_str(endpoint, "endpoint")
        _check_str(identity, "identity")
        _check_tls(tls_ctx)
        _check_str(custom_role_arn, "custom_role_arn", optional=True)
        _check_proxy(http_proxy_options)
        bootstrap = _check_bootstrap(client_bootstrap)
        pairs = None
        if logins is not None:
            pairs = []
            for pair in logins:
                name, token = pair
                _check_str(name, "login provider name")
                _check_str(token, "login token")
                pairs.append((name, token))
        from ._auth import network

        return cls(network.cognito_source(endpoint, identity, tls_ctx, pairs, custom_role_arn,
                                          bootstrap, http_proxy_options))

    @classmethod
    def new_x509(cls, *, endpoint: str, thing_name: str, role_alias: str, tls_ctx: Any,
                 client_bootstrap: Any | None = None,
                 http_proxy_options: Any | None = None) -> AwsCredentialsProvider:
        """Credentials from the AWS IoT credentials endpoint, authenticated by the
        X.509 client certificate of ``tls_ctx`` (mutual TLS).

        Args:
            endpoint (str): the account's ``iot:CredentialProvider`` endpoint host.
            thing_name (str): the IoT thing name.
            role_alias (str): the role alias to assume.
            tls_ctx (crtpy.io.ClientTlsContext): TLS settings with the client certificate.
            client_bootstrap (Optional[crtpy.io.ClientBootstrap]): None for the default.
            http_proxy_options (Optional[crtpy.http.HttpProxyOptions]): a proxy, or None.
        """
        _check_str(endpoint, "endpoint")
        _check_str(thing_name, "thing_name")
        _check_str(role_alias, "role_alias")
        _check_tls(tls_ctx)
        _check_proxy(http_proxy_options)
        bootstrap = _check_bootstrap(client_bootstrap)
        from ._auth import network

        return cls(network.x509_source(endpoint, thing_name, role_alias, tls_ctx, bootstrap,
                                       http_proxy_options))

    def get_credentials(self) -> concurrent.futures.Future[AwsCredentials]:
        """Fetch credentials.

        Returns:
            concurrent.futures.Future: completes with :class:`AwsCredentials`, or with the
            error of the source (e.g. ``AWS_AUTH_CREDENTIALS_PROVIDER_INVALID_ENVIRONMENT``).
        """
        self._check_fork()
        return self._binding.get()


class AwsSigningAlgorithm(IntEnum):
    """The signing algorithm."""

    V4 = 0
    """Signature Version 4 (HMAC-SHA256)."""

    V4_ASYMMETRIC = 1
    """Signature Version 4a (ECDSA P-256), valid in a set of regions."""

    V4_S3EXPRESS = 2
    """SigV4 for S3 Express One Zone sessions (``X-Amz-S3session-Token``)."""


class AwsSignatureType(IntEnum):
    """Where the signature goes."""

    HTTP_REQUEST_HEADERS = 0
    """Sign the request and add the signature as headers (``Authorization``)."""

    HTTP_REQUEST_QUERY_PARAMS = 1
    """Sign the request and add the signature as query parameters (a presigned URL)."""


class AwsSignedBodyValue:
    """Special values for :attr:`AwsSigningConfig.signed_body_value`."""

    EMPTY_SHA256 = _signing.EMPTY_SHA256
    """Hex SHA-256 of an empty body."""

    UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
    """The body is not signed (only some services accept it)."""

    STREAMING_AWS4_HMAC_SHA256_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    """The body is sent as signed aws-chunked chunks."""

    STREAMING_AWS4_HMAC_SHA256_EVENTS = "STREAMING-AWS4-HMAC-SHA256-EVENTS"
    """The body is a stream of signed events."""


class AwsSignedBodyHeaderType(IntEnum):
    """Whether signing adds a header holding the canonical request's body value."""

    NONE = 0
    """Add no header."""

    X_AMZ_CONTENT_SHA_256 = 1
    """Add ``x-amz-content-sha256``."""


def _enum(value: Any, cls: Any, name: str) -> Any:
    if type(value) is cls or isinstance(value, cls):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not a valid {cls.__name__}") from None
    raise TypeError(f"{name} must be a {cls.__name__}")


class AwsSigningConfig(NativeResource):
    """Immutable settings for :func:`aws_sign_request`.  Use :meth:`replace` to derive a
    changed copy; make a new config per request so that ``date`` stays current.

    Args:
        algorithm (AwsSigningAlgorithm): V4 (default), V4_ASYMMETRIC or V4_S3EXPRESS.
        signature_type (AwsSignatureType): headers (default) or query parameters.
        credentials_provider (AwsCredentialsProvider): where the credentials come from.
        region (str): the region (SigV4) or region set (SigV4a, ``X-Amz-Region-Set``).
        service (str): the signing name of the service.
        date (Optional[datetime.datetime]): the signing time; None is now.  A naive
            datetime is local time.
        should_sign_header (Optional[Callable[[str], bool]]): called as
            ``should_sign_header(name=...)``; a header is signed only if it returns True
            (headers added by signing are always signed; ``User-Agent``,
            ``X-Amzn-Trace-Id`` and a few hop-by-hop headers never are).
        use_double_uri_encode (bool): percent-encode the (already encoded) path once
            more in the canonical request; True except for S3.
        should_normalize_uri_path (bool): remove dot segments and repeated slashes from
            the canonical path; True except for S3.
        signed_body_value (Optional[str]): the body value of the canonical request (a
            precomputed hex SHA-256 or an :class:`AwsSignedBodyValue`); None hashes the body.
        signed_body_header_type (AwsSignedBodyHeaderType): whether to add
            ``x-amz-content-sha256``.
        expiration_in_seconds (Optional[int]): for query-parameter signing, the value of
            ``X-Amz-Expires``.
        omit_session_token (bool): leave the session token out of the signed part (it is
            still added to the request).
    """

    __slots__ = ("_algorithm", "_credentials_provider", "_date", "_params", "_signature_type")

    _attributes = ("algorithm", "signature_type", "credentials_provider", "region", "service", "date",
                   "should_sign_header", "use_double_uri_encode", "should_normalize_uri_path",
                   "signed_body_value", "signed_body_header_type", "expiration_in_seconds",
                   "omit_session_token")

    def __init__(self,
                 algorithm: AwsSigningAlgorithm = AwsSigningAlgorithm.V4,
                 signature_type: AwsSignatureType = AwsSignatureType.HTTP_REQUEST_HEADERS,
                 credentials_provider: AwsCredentialsProvider | None = None,
                 region: str = "",
                 service: str = "",
                 date: datetime.datetime | None = None,
                 should_sign_header: Callable[[str], bool] | None = None,
                 use_double_uri_encode: bool = True,
                 should_normalize_uri_path: bool = True,
                 signed_body_value: str | None = None,
                 signed_body_header_type: AwsSignedBodyHeaderType = AwsSignedBodyHeaderType.NONE,
                 expiration_in_seconds: int | None = None,
                 omit_session_token: bool = False) -> None:
        algorithm = _enum(algorithm, AwsSigningAlgorithm, "algorithm")
        signature_type = _enum(signature_type, AwsSignatureType, "signature_type")
        signed_body_header_type = _enum(signed_body_header_type, AwsSignedBodyHeaderType,
                                        "signed_body_header_type")
        if credentials_provider is not None and not isinstance(credentials_provider, AwsCredentialsProvider):
            raise TypeError("credentials_provider must be an AwsCredentialsProvider or None")
        _check_str(region, "region")
        _check_str(service, "service")
        if should_sign_header is not None and not callable(should_sign_header):
            raise TypeError("should_sign_header must be callable or None")
        if signed_body_value is not None:
            _check_str(signed_body_value, "signed_body_value")
            if not signed_body_value:
                raise ValueError("signed_body_value must not be empty")
        if expiration_in_seconds is not None:
            if not isinstance(expiration_in_seconds, int) or isinstance(expiration_in_seconds, bool):
                raise TypeError("expiration_in_seconds must be an int or None")
            if expiration_in_seconds <= 0:
                raise ValueError("expiration_in_seconds must be positive")
        if date is None:
            date = datetime.datetime.now(datetime.timezone.utc)
        elif not isinstance(date, datetime.datetime):
            raise TypeError("date must be a datetime.datetime or None")
        super().__init__()
        self._algorithm = algorithm
        self._signature_type = signature_type
        self._credentials_provider = credentials_provider
        self._date = date
        self._params = _signing.SigningParams(
            algorithm=int(algorithm), signature_type=int(signature_type), region=region, service=service,
            date=date, should_sign_header=should_sign_header,
            use_double_uri_encode=bool(use_double_uri_encode),
            should_normalize_uri_path=bool(should_normalize_uri_path),
            signed_body_value=signed_body_value,
            signed_body_header_type=int(signed_body_header_type),
            expiration_in_seconds=expiration_in_seconds, omit_session_token=bool(omit_session_token))

    def replace(self, **kwargs: Any) -> AwsSigningConfig:
        """A copy of this config with the given attributes changed."""
        unknown = set(kwargs) - set(self._attributes)
        if unknown:
            raise TypeError(f"unknown AwsSigningConfig attribute(s): {', '.join(sorted(unknown))}")
        args = {name: kwargs[name] if name in kwargs else getattr(self, name) for name in self._attributes}
        return AwsSigningConfig(**args)

    def __repr__(self) -> str:
        return (f"AwsSigningConfig(algorithm={self.algorithm!r}, signature_type={self.signature_type!r}, "
                f"region={self.region!r}, service={self.service!r}, date={self.date!r})")

    @property
    def algorithm(self) -> AwsSigningAlgorithm:
        """AwsSigningAlgorithm: the signing algorithm."""
        return self._algorithm

    @property
    def signature_type(self) -> AwsSignatureType:
        """AwsSignatureType: headers or query parameters."""
        return self._signature_type

    @property
    def credentials_provider(self) -> AwsCredentialsProvider | None:
        """AwsCredentialsProvider: where the signing credentials come from."""
        return self._credentials_provider

    @property
    def region(self) -> str:
        """str: the region, or the region set for SigV4a."""
        return self._params.region

    @property
    def service(self) -> str:
        """str: the signing name of the service."""
        return self._params.service

    @property
    def date(self) -> datetime.datetime:
        """datetime.datetime: the signing time."""
        return self._date

    @property
    def should_sign_header(self) -> Callable[[str], bool] | None:
        """Optional[Callable[[str], bool]]: the header filter, or None."""
        return self._params.should_sign_header

    @property
    def use_double_uri_encode(self) -> bool:
        """bool: whether the canonical path is percent-encoded once more."""
        return self._params.use_double_uri_encode

    @property
    def should_normalize_uri_path(self) -> bool:
        """bool: whether the canonical path is normalized."""
        return self._params.should_normalize_uri_path

    @property
    def signed_body_value(self) -> str | None:
        """Optional[str]: the canonical request's body value, or None to hash the body."""
        return self._params.signed_body_value

    @property
    def signed_body_header_type(self) -> AwsSignedBodyHeaderType:
        """AwsSignedBodyHeaderType: whether ``x-amz-content-sha256`` is added."""
        return AwsSignedBodyHeaderType(self._params.signed_body_header_type)

    @property
    def expiration_in_seconds(self) -> int | None:
        """Optional[int]: ``X-Amz-Expires`` for query-parameter signing, or None."""
        return self._params.expiration_in_seconds

    @property
    def omit_session_token(self) -> bool:
        """bool: whether the session token is left out of the signed part."""
        return self._params.omit_session_token


_HttpRequest: Any = None


def aws_sign_request(http_request: HttpRequest,
                     signing_config: AwsSigningConfig) -> concurrent.futures.Future[HttpRequest]:
    """Sign an HTTP request in place.

    Headers (``X-Amz-Date``, ``Authorization``, ...) or query parameters
    (``X-Amz-Signature``, ...) are added to ``http_request``; the request must not already
    hold the ones signing adds.

    Args:
        http_request (crtpy.http.HttpRequest): the request to sign.
        signing_config (AwsSigningConfig): how to sign it.

    Returns:
        concurrent.futures.Future: completes with the signed request (the same object),
        or with the signing error.
    """
    global _HttpRequest
    if _HttpRequest is None:
        from .http import HttpRequest as _HttpRequest
    if not isinstance(http_request, _HttpRequest):
        raise TypeError("http_request must be a crtpy.http.HttpRequest")
    if not isinstance(signing_config, AwsSigningConfig):
        raise TypeError("signing_config must be an AwsSigningConfig")
    return _sign_request(http_request, signing_config)
