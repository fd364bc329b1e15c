"""AWS IoT SDK metrics: what the MQTT clients tell AWS IoT Core about the SDK in use.

Unless ``disable_metrics`` is set, the MQTT 5 client and the MQTT 3.1.1 connection
append a query string to the CONNECT packet's username::

    <username>?SDK=<library name>&Platform=<OS>&Metadata=(CRTVersion=...;IoTSDKFeature=...;IoTSDKMetricsVersion=1)

``IoTSDKFeature`` is a comma-separated list of ``ID/Value`` pairs, one letter each,
describing options in use (retry jitter mode, session behaviour, offline queue
behaviour, topic aliasing, protocol version, socket implementation, proxy type,
certificate source, TLS cipher preference, minimum TLS version).  An SDK built on top
may pass its own :class:`AWSIoTMetrics`; its extra metadata entries are kept, and its
``IoTSDKFeature`` pairs are merged (winning over crtpy's) when its
``IoTSDKMetricsVersion`` equals :data:`IOT_SDK_METRICS_FEATURE_VERSION`.

For crtpy's MQTT clients (private helpers; both return the username to put in CONNECT,
or the original one when metrics are disabled)::

    from crtpy.aws_iot_metrics import _mqtt5_username, _mqtt3_username
    username = _mqtt5_username(client_options)            # mqtt5.ClientOptions
    username = _mqtt3_username(username, metrics=..., disable_metrics=...,
                               proxy_options=..., tls_ctx=...)

Lower-level: ``_create_metrics_mqtt5(client_options)`` / ``_create_metrics_mqtt3(...)``
give the final :class:`AWSIoTMetrics`, and ``_build_username(username, metrics)``
appends it to a username.  When the username already carries ``SDK``, ``Platform`` or
``Metadata`` query parameters, those are kept: missing parameters are appended, and
metadata keys absent from an existing ``Metadata=(...)`` list are added to it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["IOT_SDK_METRICS_FEATURE_VERSION", "AWSIoTMetrics", "IoTMetricsMetadata"]


@dataclass
class IoTMetricsMetadata:
    """One key/value entry of the ``Metadata`` list sent in the CONNECT username.

    Args:
        key (str): entry name (for example ``"IoTSDKVersion"``).
        value (str): entry value.
    """

    key: str
    value: str


@dataclass
class AWSIoTMetrics:
    """SDK metrics embedded in the MQTT CONNECT username.

    Args:
        library_name (str): SDK name sent as ``SDK=`` (default ``"IoTDeviceSDK/Python"``).
        metadata_entries (Optional[List[IoTMetricsMetadata]]): extra metadata entries.
    """

    library_name: str = "IoTDeviceSDK/Python"
    metadata_entries: list[IoTMetricsMetadata] | None = None


#: Version of the feature-list encoding (``IoTSDKMetricsVersion``).
IOT_SDK_METRICS_FEATURE_VERSION = 1

_DEFAULT_LIBRARY = "IoTDeviceSDK/Python"
_EMPTY_LIBRARY = "IoTDeviceSDK/C"   # what is sent when library_name is empty


class _MetricsFeatureId(str, Enum):
    """One-letter feature IDs of the ``IoTSDKFeature`` list (never reused)."""

    RETRY_JITTER_MODE = "A"
    SESSION_BEHAVIOR = "B"
    OFFLINE_QUEUE_BEHAVIOR = "C"
    OUTBOUND_TOPIC_ALIAS_BEHAVIOR = "D"
    INBOUND_TOPIC_ALIAS_BEHAVIOR = "E"
    PROTOCOL_VERSION = "F"
    SOCKET_IMPLEMENTATION = "G"
    HTTP_PROXY_TYPE = "H"
    CERTIFICATE_SOURCE = "I"
    TLS_CIPHER_PREFERENCE = "J"
    MINIMUM_TLS_VERSION = "K"


# Feature values, keyed by enum member name so that crtpy's and awscrt's enums (or the
# plain ints behind them) all work.  DEFAULT members have no value: they are not sent.
_JITTER = {"NONE": "A", "FULL": "B", "DECORRELATED": "C"}
_SESSION = {"CLEAN": "A", "REJOIN_POST_SUCCESS": "B", "REJOIN_ALWAYS": "C"}
_QUEUE = {"FAIL_NON_QOS1_PUBLISH_ON_DISCONNECT": "A", "FAIL_QOS0_PUBLISH_ON_DISCONNECT": "B",
          "FAIL_ALL_ON_DISCONNECT": "C"}
_OUTBOUND_ALIAS = {"MANUAL": "A", "LRU": "B", "DISABLED": "C"}
_INBOUND_ALIAS = {"ENABLED": "A", "DISABLED": "B"}
_TLS_VERSION = {"SSLv3": "A", "TLSv1": "B", "TLSv1_1": "C", "TLSv1_2": "D", "TLSv1_3": "E"}
_CIPHER = {"PQ_TLSv1_0_2021_05": "F", "PQ_DEFAULT": "H", "TLSv1_2_2025_07": "I"}
_CERT_SOURCE = {"CERTIFICATE_FILES": "A", "PKCS11": "B", "WINDOWS_CERT_STORE": "C", "PKCS12_FILE": "E"}
# int values of the certificate sources (awscrt.io._CertificateSource)
_CERT_SOURCE_BY_INT = {0: "CERTIFICATE_FILES", 1: "PKCS11", 2: "WINDOWS_CERT_STORE", 4: "PKCS12_FILE"}


def _member_name(value: Any, enum_path: tuple[str, str] | None = None) -> str | None:
    """Name of an enum member (crtpy's or awscrt's); a plain int is looked up in the
    crtpy enum ``enum_path`` = (module, class)."""
    if value is None:
        return None
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, int) and enum_path is not None:
        import importlib

        try:
            cls = getattr(importlib.import_module(f"crtpy.{enum_path[0]}"), enum_path[1])
            name: str = cls(value).name
            return name
        except (ImportError, AttributeError, ValueError):
            return None
    return None


def _lookup(table: dict[str, str], value: Any, enum_path: tuple[str, str] | None = None) -> str | None:
    name = _member_name(value, enum_path)
    return table.get(name) if name is not None else None


def _platform_name() -> str:
    """The OS name sent as ``Platform=``."""
    if sys.platform == "win32":
        return "Windows"
    if sys.platform == "darwin":
        return "macOS"
    if hasattr(sys, "getandroidapilevel"):
        return "Android"
    return "Unix"


def _socket_implementation_value() -> str:
    return "B" if sys.platform == "win32" else "A"  # Winsock / POSIX sockets


def _http_proxy_type_value(proxy_options: Any) -> str:
    return "B" if getattr(proxy_options, "tls_connection_options", None) is not None else "A"


def _tls_attribute(tls_ctx: Any, private: str, public: str) -> Any:
    """An attribute of a ClientTlsContext, or of the TlsContextOptions it was made from."""
    value = getattr(tls_ctx, private, None)
    if value is not None:
        return value
    for holder in ("_options", "options"):
        options = getattr(tls_ctx, holder, None)
        if options is not None:
            value = getattr(options, private, None)
            if value is None and public:
                value = getattr(options, public, None)
            if value is not None:
                return value
    return None


def _certificate_source_value(tls_ctx: Any) -> str | None:
    source = _tls_attribute(tls_ctx, "_certificate_source", "")
    if source is not None:
        name = source.name if isinstance(source, Enum) else _CERT_SOURCE_BY_INT.get(int(source))
        return _CERT_SOURCE.get(name or "")
    # No recorded source: infer it from what the options hold.
    options = getattr(tls_ctx, "_options", None) or getattr(tls_ctx, "options", None)
    if options is None:
        return None
    if getattr(options, "pkcs12_filepath", None):
        return _CERT_SOURCE["PKCS12_FILE"]
    if getattr(options, "_pkcs11_lib", None) is not None or getattr(options, "pkcs11_lib", None) is not None:
        return _CERT_SOURCE["PKCS11"]
    if getattr(options, "windows_cert_store_path", None) or getattr(options, "_windows_cert_store_path", None):
        return _CERT_SOURCE["WINDOWS_CERT_STORE"]
    if getattr(options, "certificate_buffer", None) is not None:
        return _CERT_SOURCE["CERTIFICATE_FILES"]
    return None


def _tls_features(tls_ctx: Any) -> list[str]:
    features = []
    value = _certificate_source_value(tls_ctx)
    if value:
        features.append(f"{_MetricsFeatureId.CERTIFICATE_SOURCE.value}/{value}")
    value = _lookup(_CIPHER, _tls_attribute(tls_ctx, "_cipher_pref", "cipher_pref"), ("io", "TlsCipherPref"))
    if value:
        features.append(f"{_MetricsFeatureId.TLS_CIPHER_PREFERENCE.value}/{value}")
    value = _lookup(_TLS_VERSION, _tls_attribute(tls_ctx, "_min_tls_ver", "min_tls_ver"), ("io", "TlsVersion"))
    if value:
        features.append(f"{_MetricsFeatureId.MINIMUM_TLS_VERSION.value}/{value}")
    return features


def _get_encoded_feature_list(client_options: Any) -> str:
    """``IoTSDKFeature`` pairs for an MQTT 5 client's options."""
    features = []

    def add(feature: _MetricsFeatureId, value: str | None) -> None:
        if value:
            features.append(f"{feature.value}/{value}")

    add(_MetricsFeatureId.RETRY_JITTER_MODE,
        _lookup(_JITTER, getattr(client_options, "retry_jitter_mode", None), ("io", "ExponentialBackoffJitterMode")))
    add(_MetricsFeatureId.SESSION_BEHAVIOR,
        _lookup(_SESSION, getattr(client_options, "session_behavior", None), ("mqtt5", "ClientSessionBehaviorType")))
    add(_MetricsFeatureId.OFFLINE_QUEUE_BEHAVIOR,
        _lookup(_QUEUE, getattr(client_options, "offline_queue_behavior", None),
                ("mqtt5", "ClientOperationQueueBehaviorType")))
    aliasing = getattr(client_options, "topic_aliasing_options", None)
    if aliasing is not None:
        add(_MetricsFeatureId.OUTBOUND_TOPIC_ALIAS_BEHAVIOR,
            _lookup(_OUTBOUND_ALIAS, getattr(aliasing, "outbound_behavior", None),
                    ("mqtt5", "OutboundTopicAliasBehaviorType")))
        add(_MetricsFeatureId.INBOUND_TOPIC_ALIAS_BEHAVIOR,
            _lookup(_INBOUND_ALIAS, getattr(aliasing, "inbound_behavior", None),
                    ("mqtt5", "InboundTopicAliasBehaviorType")))
    add(_MetricsFeatureId.PROTOCOL_VERSION, "5")
    add(_MetricsFeatureId.SOCKET_IMPLEMENTATION, _socket_implementation_value())
    proxy = getattr(client_options, "http_proxy_options", None)
    if proxy is not None:
        add(_MetricsFeatureId.HTTP_PROXY_TYPE, _http_proxy_type_value(proxy))
    tls_ctx = getattr(client_options, "tls_ctx", None)
    if tls_ctx is not None:
        features.extend(_tls_features(tls_ctx))
    return ",".join(features)


def _get_encoded_feature_list_mqtt3(proxy_options: Any, tls_ctx: Any = None) -> str:
    """``IoTSDKFeature`` pairs for an MQTT 3.1.1 connection."""
    features = [f"{_MetricsFeatureId.PROTOCOL_VERSION.value}/3",
                f"{_MetricsFeatureId.SOCKET_IMPLEMENTATION.value}/{_socket_implementation_value()}"]
    if proxy_options is not None:
        features.append(f"{_MetricsFeatureId.HTTP_PROXY_TYPE.value}/{_http_proxy_type_value(proxy_options)}")
    if tls_ctx is not None:
        features.extend(_tls_features(tls_ctx))
    return ",".join(features)


def _merge_feature_lists(crt_features: str, user_features: str) -> str:
    """Merge two ``ID/Value`` lists; for an ID in both, the user's value wins (keeping
    the position of its first appearance)."""
    merged: dict[str, str] = {}
    for text in (crt_features, user_features):
        for pair in text.split(","):
            fid, slash, value = pair.partition("/")
            if slash:
                merged[fid] = value
    return ",".join(f"{fid}/{value}" for fid, value in merged.items())


def _crt_version() -> str:
    # The awscrt API version crtpy implements, so the service sees the same value as
    # with the reference runtime.
    from . import __awscrt_version__

    return __awscrt_version__


def _create_metrics(user_metrics: AWSIoTMetrics | None, crt_feature_list: str) -> AWSIoTMetrics:
    """The final metrics: crtpy's feature list merged with the SDK's metrics."""
    library = user_metrics.library_name if user_metrics else _DEFAULT_LIBRARY
    metadata: dict[str, str] = {"CRTVersion": _crt_version()}
    user_version: str | None = None
    user_features = ""
    if user_metrics and user_metrics.metadata_entries:
        for entry in user_metrics.metadata_entries:
            if entry.key == "IoTSDKMetricsVersion":
                user_version = entry.value
            elif entry.key == "IoTSDKFeature":
                user_features = entry.value
            elif entry.key != "CRTVersion":
                metadata[entry.key] = entry.value
    same_version = (user_version is not None and user_version.isdigit()
                    and int(user_version) == IOT_SDK_METRICS_FEATURE_VERSION)
    metadata["IoTSDKFeature"] = _merge_feature_lists(crt_feature_list, user_features if same_version else "")
    metadata["IoTSDKMetricsVersion"] = str(IOT_SDK_METRICS_FEATURE_VERSION)
    return AWSIoTMetrics(library_name=library,
                         metadata_entries=[IoTMetricsMetadata(k, v) for k, v in metadata.items()])


def _create_metrics_mqtt5(client_options: Any) -> AWSIoTMetrics:
    """Final metrics of an MQTT 5 client (uses ``client_options.metrics``)."""
    return _create_metrics(getattr(client_options, "metrics", None), _get_encoded_feature_list(client_options))


def _create_metrics_mqtt3(user_metrics: AWSIoTMetrics | None = None, proxy_options: Any = None,
                          tls_ctx: Any = None) -> AWSIoTMetrics:
    """Final metrics of an MQTT 3.1.1 connection."""
    return _create_metrics(user_metrics, _get_encoded_feature_list_mqtt3(proxy_options, tls_ctx))


# ---------------------------------------------------------------------------------------
# username encoding
# ---------------------------------------------------------------------------------------
def _render(key: str, value: str) -> str:
    return f"{key}={value}" if value else key


def _build_username(username: str | None, metrics: AWSIoTMetrics | None) -> str | None:
    """``username`` with the metrics query parameters added (unchanged if ``metrics``
    is None)."""
    if metrics is None:
        return username
    base, question, query = (username or "").partition("?")
    params: list[list[str]] = []
    if question:
        for item in query.split("&"):
            if item:
                key, _eq, value = item.partition("=")
                params.append([key, value])
    ours = [(e.key, e.value) for e in (metrics.metadata_entries or [])]
    keys = [p[0] for p in params]

    if "Metadata" in keys:
        param = params[keys.index("Metadata")]
        value = param[1]
        if len(value) >= 2 and value.startswith("(") and value.endswith(")"):
            entries = [e.partition("=") for e in value[1:-1].split(";") if e]
            present = {k for k, _s, _v in entries}
            rendered = [_render(k, v) for k, _s, v in entries]
            rendered += [f"{k}={v}" for k, v in ours if k not in present]
            param[1] = "(" + ";".join(rendered) + ")"
    if "SDK" not in keys:
        params.append(["SDK", metrics.library_name or _EMPTY_LIBRARY])
    if "Platform" not in keys:
        params.append(["Platform", _platform_name()])
    if "Metadata" not in keys and ours:
        params.append(["Metadata", "(" + ";".join(f"{k}={v}" for k, v in ours) + ")"])
    return base + "?" + "&".join(_render(k, v) for k, v in params)


def _mqtt5_username(client_options: Any) -> str | None:
    """The CONNECT username of an MQTT 5 client: the configured one, with metrics
    unless ``client_options.disable_metrics``."""
    connect = getattr(client_options, "connect_options", None)
    username = getattr(connect, "username", None) if connect is not None else None
    if getattr(client_options, "disable_metrics", False):
        return username
    return _build_username(username, _create_metrics_mqtt5(client_options))


def _mqtt3_username(username: str | None, *, metrics: AWSIoTMetrics | None = None,
                    disable_metrics: bool = False, proxy_options: Any = None,
                    tls_ctx: Any = None) -> str | None:
    """The CONNECT username of an MQTT 3.1.1 connection (see :func:`_mqtt5_username`)."""
    if disable_metrics:
        return username
    return _build_username(username, _create_metrics_mqtt3(metrics, proxy_options, tls_ctx))
