"""MQTT packet codec for protocol levels 4 (MQTT 3.1.1) and 5 (MQTT 5), sans-I/O.

Packets are small slotted objects (:class:`Connect`, :class:`Publish`, ...).  MQTT 5
properties live in each packet's ``props`` dict, keyed by property identifier (the
``P_*`` constants); user properties are a list of ``(name, value)`` pairs under
``P_USER_PROPERTY`` and received subscription identifiers a list of ints under
``P_SUBSCRIPTION_IDENTIFIER``.  At protocol level 4 properties and reason codes that the
version does not have are ignored when encoding and absent when decoding.

:func:`encode` gives the bytes of one packet.  :class:`Decoder` is incremental: feed it
any slice of the byte stream and it returns the complete packets.  It enforces a maximum
packet size from the fixed header alone, before it buffers a packet's body.

Errors (all :class:`crtpy.exceptions.AwsCrtError`, raised through ``crtpy._errors``):

* level 5 decoding: ``AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR`` for every malformed
  packet (bad flags, bad lengths, unknown or misplaced properties, ...), and
  ``AWS_ERROR_MQTT5_INVALID_UTF8_STRING`` for strings that are not valid MQTT UTF-8;
* level 4 decoding: ``AWS_ERROR_MQTT_INVALID_PACKET_TYPE``,
  ``AWS_ERROR_MQTT_INVALID_RESERVED_BITS``, ``AWS_ERROR_MQTT_INVALID_REMAINING_LENGTH``,
  ``AWS_ERROR_MQTT_PROTOCOL_ERROR``;
* both levels: ``AWS_ERROR_MQTT_BUFFER_TOO_BIG`` when a packet exceeds the decoder's
  maximum packet size;
* encoding: ``AWS_ERROR_MQTT5_ENCODE_FAILURE`` (level 5) or ``AWS_ERROR_MQTT_PROTOCOL_ERROR``
  (level 4) for values that cannot be encoded (a string too long or with U+0000,
  a number out of range).
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from .._errors import error

# -- packet types ------------------------------------------------------------------------
CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
PUBREC = 5
PUBREL = 6
PUBCOMP = 7
SUBSCRIBE = 8
SUBACK = 9
UNSUBSCRIBE = 10
UNSUBACK = 11
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14
AUTH = 15

PACKET_NAMES = {
    CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK",
    PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBACK: "UNSUBACK", PINGREQ: "PINGREQ",
    PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT", AUTH: "AUTH",
}

# -- property identifiers ----------------------------------------------------------------
P_PAYLOAD_FORMAT_INDICATOR = 0x01
P_MESSAGE_EXPIRY_INTERVAL = 0x02
P_CONTENT_TYPE = 0x03
P_RESPONSE_TOPIC = 0x08
P_CORRELATION_DATA = 0x09
P_SUBSCRIPTION_IDENTIFIER = 0x0B
P_SESSION_EXPIRY_INTERVAL = 0x11
P_ASSIGNED_CLIENT_IDENTIFIER = 0x12
P_SERVER_KEEP_ALIVE = 0x13
P_AUTHENTICATION_METHOD = 0x15
P_AUTHENTICATION_DATA = 0x16
P_REQUEST_PROBLEM_INFORMATION = 0x17
P_WILL_DELAY_INTERVAL = 0x18
P_REQUEST_RESPONSE_INFORMATION = 0x19
P_RESPONSE_INFORMATION = 0x1A
P_SERVER_REFERENCE = 0x1C
P_REASON_STRING = 0x1F
P_RECEIVE_MAXIMUM = 0x21
P_TOPIC_ALIAS_MAXIMUM = 0x22
P_TOPIC_ALIAS = 0x23
P_MAXIMUM_QOS = 0x24
P_RETAIN_AVAILABLE = 0x25
P_USER_PROPERTY = 0x26
P_MAXIMUM_PACKET_SIZE = 0x27
P_WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
P_SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
P_SHARED_SUBSCRIPTION_AVAILABLE = 0x2A

# value kinds: B byte, H two-byte int, I four-byte int, V variable byte int,
# S UTF-8 string, D binary data, P string pair
PROPERTY_KINDS: dict[int, str] = {
    P_PAYLOAD_FORMAT_INDICATOR: "B", P_MESSAGE_EXPIRY_INTERVAL: "I", P_CONTENT_TYPE: "S",
    P_RESPONSE_TOPIC: "S", P_CORRELATION_DATA: "D", P_SUBSCRIPTION_IDENTIFIER: "V",
    P_SESSION_EXPIRY_INTERVAL: "I", P_ASSIGNED_CLIENT_IDENTIFIER: "S", P_SERVER_KEEP_ALIVE: "H",
    P_AUTHENTICATION_METHOD: "S", P_AUTHENTICATION_DATA: "D", P_REQUEST_PROBLEM_INFORMATION: "B",
    P_WILL_DELAY_INTERVAL: "I", P_REQUEST_RESPONSE_INFORMATION: "B", P_RESPONSE_INFORMATION: "S",
    P_SERVER_REFERENCE: "S", P_REASON_STRING: "S", P_RECEIVE_MAXIMUM: "H",
    P_TOPIC_ALIAS_MAXIMUM: "H", P_TOPIC_ALIAS: "H", P_MAXIMUM_QOS: "B", P_RETAIN_AVAILABLE: "B",
    P_USER_PROPERTY: "P", P_MAXIMUM_PACKET_SIZE: "I", P_WILDCARD_SUBSCRIPTION_AVAILABLE: "B",
    P_SUBSCRIPTION_IDENTIFIER_AVAILABLE: "B", P_SHARED_SUBSCRIPTION_AVAILABLE: "B",
}

WILL = 0x100  # pseudo packet type: the will properties inside CONNECT

_ACK_PROPS = frozenset({P_REASON_STRING, P_USER_PROPERTY})
ALLOWED_PROPERTIES: dict[int, frozenset[int]] = {
    CONNECT: frozenset({P_SESSION_EXPIRY_INTERVAL, P_RECEIVE_MAXIMUM, P_MAXIMUM_PACKET_SIZE,
                        P_TOPIC_ALIAS_MAXIMUM, P_REQUEST_RESPONSE_INFORMATION,
                        P_REQUEST_PROBLEM_INFORMATION, P_USER_PROPERTY,
                        P_AUTHENTICATION_METHOD, P_AUTHENTICATION_DATA}),
    WILL: frozenset({P_WILL_DELAY_INTERVAL, P_PAYLOAD_FORMAT_INDICATOR, P_MESSAGE_EXPIRY_INTERVAL,
                     P_CONTENT_TYPE, P_RESPONSE_TOPIC, P_CORRELATION_DATA, P_USER_PROPERTY}),
    CONNACK: frozenset({P_SESSION_EXPIRY_INTERVAL, P_RECEIVE_MAXIMUM, P_MAXIMUM_QOS,
                        P_RETAIN_AVAILABLE, P_MAXIMUM_PACKET_SIZE, P_ASSIGNED_CLIENT_IDENTIFIER,
                        P_TOPIC_ALIAS_MAXIMUM, P_REASON_STRING, P_USER_PROPERTY,
                        P_WILDCARD_SUBSCRIPTION_AVAILABLE, P_SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                        P_SHARED_SUBSCRIPTION_AVAILABLE, P_SERVER_KEEP_ALIVE,
                        P_RESPONSE_INFORMATION, P_SERVER_REFERENCE, P_AUTHENTICATION_METHOD,
                        P_AUTHENTICATION_DATA}),
    PUBLISH: frozenset({P_PAYLOAD_FORMAT_INDICATOR, P_MESSAGE_EXPIRY_INTERVAL, P_TOPIC_ALIAS,
                        P_RESPONSE_TOPIC, P_CORRELATION_DATA, P_SUBSCRIPTION_IDENTIFIER,
                        P_CONTENT_TYPE, P_USER_PROPERTY}),
    PUBACK: _ACK_PROPS, PUBREC: _ACK_PROPS, PUBREL: _ACK_PROPS, PUBCOMP: _ACK_PROPS,
    SUBSCRIBE: frozenset({P_SUBSCRIPTION_IDENTIFIER, P_USER_PROPERTY}),
    SUBACK: _ACK_PROPS,
    UNSUBSCRIBE: frozenset({P_USER_PROPERTY}),
    UNSUBACK: _ACK_PROPS,
    DISCONNECT: frozenset({P_SESSION_EXPIRY_INTERVAL, P_REASON_STRING, P_USER_PROPERTY,
                           P_SERVER_REFERENCE}),
    AUTH: frozenset({P_AUTHENTICATION_METHOD, P_AUTHENTICATION_DATA, P_REASON_STRING,
                     P_USER_PROPERTY}),
}

# The Subscription Identifier may repeat only in PUBLISH; user properties anywhere.
_REPEATABLE_IN_PUBLISH = frozenset({P_SUBSCRIPTION_IDENTIFIER, P_USER_PROPERTY})

MAX_VARINT = 268_435_455
DEFAULT_MAXIMUM_PACKET_SIZE = MAX_VARINT + 5

Props: TypeAlias = dict[int, Any]  # property id -> value (a list for repeatable ones)


# -- packets -----------------------------------------------------------------------------
class Packet:
    """Base of all packets; ``type`` is the MQTT control packet type."""

    __slots__ = ()
    type = 0

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_norm(getattr(self, s)) == _norm(getattr(other, s)) for s in self._fields())

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def _fields(cls) -> list[str]:
        out: list[str] = []
        for klass in reversed(cls.__mro__):
            out.extend(getattr(klass, "__slots__", ()))
        return out

    def __repr__(self) -> str:
        parts = []
        for name in self._fields():
            value = getattr(self, name)
            if name == "password" and value is not None:
                value = "<redacted>"
            parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _norm(v: Any) -> Any:
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    return v


class Publish(Packet):
    __slots__ = ("dup", "packet_id", "payload", "props", "qos", "retain", "topic")
    type = PUBLISH

    def __init__(self, topic: str = "", payload: bytes | bytearray | memoryview = b"",
                 qos: int = 0, retain: bool = False, dup: bool = False, packet_id: int = 0,
                 props: Props | None = None) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.packet_id = packet_id
        self.props = props if props is not None else {}


class Connect(Packet):
    __slots__ = (
        "clean_start",
        "client_id",
        "keep_alive",
        "password",
        "props",
        "username",
        "version",
        "will",
    )
    type = CONNECT

    def __init__(self, version: int = 5, client_id: str = "", clean_start: bool = True,
                 keep_alive: int = 0, username: str | None = None,
                 password: bytes | None = None, will: Publish | None = None,
                 props: Props | None = None) -> None:
        self.version = version
        self.client_id = client_id
        self.clean_start = clean_start
        self.keep_alive = keep_alive
        self.username = username
        self.password = password
        self.will = will
        self.props = props if props is not None else {}


class Connack(Packet):
    __slots__ = ("props", "reason_code", "session_present")
    type = CONNACK

    def __init__(self, session_present: bool = False, reason_code: int = 0,
                 props: Props | None = None) -> None:
        self.session_present = session_present
        self.reason_code = reason_code
        self.props = props if props is not None else {}


class Ack(Packet):
    """PUBACK, PUBREC, PUBREL or PUBCOMP (``kind`` is the packet type)."""

    __slots__ = ("kind", "packet_id", "props", "reason_code", "type")

    def __init__(self, kind: int = PUBACK, packet_id: int = 1, reason_code: int = 0,
                 props: Props | None = None) -> None:
        self.kind = kind
        self.type = kind  # a plain slot: read on the hot path
        self.packet_id = packet_id
        self.reason_code = reason_code
        self.props = props if props is not None else {}


class Subscription:
    """One topic filter of a SUBSCRIBE with its options."""

    __slots__ = ("no_local", "qos", "retain_as_published", "retain_handling", "topic_filter")

    def __init__(self, topic_filter: str, qos: int = 0, no_local: bool = False,
                 retain_as_published: bool = False, retain_handling: int = 0) -> None:
        self.topic_filter = topic_filter
        self.qos = qos
        self.no_local = no_local
        self.retain_as_published = retain_as_published
        self.retain_handling = retain_handling

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Subscription):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "Subscription(" + ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__) + ")"


class Subscribe(Packet):
    __slots__ = ("packet_id", "props", "subscriptions")
    type = SUBSCRIBE

    def __init__(self, packet_id: int = 1, subscriptions: list[Subscription] | None = None,
                 props: Props | None = None) -> None:
        self.packet_id = packet_id
        self.subscriptions = subscriptions if subscriptions is not None else []
        self.props = props if props is not None else {}


class Suback(Packet):
    __slots__ = ("packet_id", "props", "reason_codes")
    type = SUBACK

    def __init__(self, packet_id: int = 1, reason_codes: list[int] | None = None,
                 props: Props | None = None) -> None:
        self.packet_id = packet_id
        self.reason_codes = reason_codes if reason_codes is not None else []
        self.props = props if props is not None else {}


class Unsubscribe(Packet):
    __slots__ = ("packet_id", "props", "topic_filters")
    type = UNSUBSCRIBE

    def __init__(self, packet_id: int = 1, topic_filters: list[str] | None = None,
                 props: Props | None = None) -> None:
        self.packet_id = packet_id
        self.topic_filters = topic_filters if topic_filters is not None else []
        self.props = props if props is not None else {}


class Unsuback(Packet):
    __slots__ = ("packet_id", "props", "reason_codes")
    type = UNSUBACK

    def __init__(self, packet_id: int = 1, reason_codes: list[int] | None = None,
                 props: Props | None = None) -> None:
        self.packet_id = packet_id
        self.reason_codes = reason_codes if reason_codes is not None else []
        self.props = props if props is not None else {}


class Pingreq(Packet):
    __slots__ = ()
    type = PINGREQ


class Pingresp(Packet):
    __slots__ = ()
    type = PINGRESP


class Disconnect(Packet):
    __slots__ = ("props", "reason_code")
    type = DISCONNECT

    def __init__(self, reason_code: int = 0, props: Props | None = None) -> None:
        self.reason_code = reason_code
        self.props = props if props is not None else {}


class Auth(Packet):
    __slots__ = ("props", "reason_code")
    type = AUTH

    def __init__(self, reason_code: int = 0, props: Props | None = None) -> None:
        self.reason_code = reason_code
        self.props = props if props is not None else {}


# -- primitive encoders ------------------------------------------------------------------
_pack_H = struct.Struct(">H").pack
_pack_I = struct.Struct(">I").pack
_unpack_H = struct.Struct(">H").unpack_from
_unpack_I = struct.Struct(">I").unpack_from

_SMALL_VARINTS = [bytes((i,)) for i in range(128)]


def _enc_fail(version: int, msg: str) -> BaseException:
    return error("AWS_ERROR_MQTT5_ENCODE_FAILURE" if version == 5 else "AWS_ERROR_MQTT_PROTOCOL_ERROR", msg)


def encode_varint(n: int) -> bytes:
    """The variable byte integer encoding of ``0 <= n <= 268435455``."""
    if 0 <= n < 128:
        return _SMALL_VARINTS[n]
    if n < 0 or n > MAX_VARINT:
        raise error("AWS_ERROR_MQTT5_ENCODE_FAILURE", f"{n} does not fit in a variable byte integer")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint_size(n: int) -> int:
    if n < 128:
        return 1
    if n < 16_384:
        return 2
    if n < 2_097_152:
        return 3
    return 4


def check_utf8(s: str, what: str = "string") -> str | None:
    """None if ``s`` is acceptable as an MQTT UTF-8 string, else the reason."""
    if "\x00" in s:
        return f"{what} contains U+0000"
    try:
        n = len(s.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{what} contains a lone surrogate"
    if n > 65535:
        return f"{what} is longer than 65535 bytes"
    return None


def encode_string(s: str, version: int = 5) -> bytes:
    try:
        b = s.encode("utf-8")
    except (UnicodeEncodeError, AttributeError):
        raise _enc_fail(version, "string is not encodable as UTF-8") from None
    if len(b) > 65535:
        raise _enc_fail(version, "string longer than 65535 bytes")
    if b"\x00" in b:
        raise _enc_fail(version, "string contains U+0000")
    return _pack_H(len(b)) + b


def encode_binary(b: bytes | bytearray | memoryview | str, version: int = 5) -> bytes:
    if isinstance(b, str):
        b = b.encode("utf-8")
    if len(b) > 65535:
        raise _enc_fail(version, "binary data longer than 65535 bytes")
    return _pack_H(len(b)) + bytes(b)


def encode_properties(props: Props, ptype: int) -> bytes:
    """The property block (length + properties) of a level-5 packet."""
    if not props:
        return b"\x00"
    parts: list[bytes] = []
    allowed = ALLOWED_PROPERTIES[ptype]
    for pid, value in props.items():
        if value is None:
            continue
        if pid not in allowed:
            raise error("AWS_ERROR_MQTT5_ENCODE_FAILURE",
                        f"property 0x{pid:02x} is not allowed in {PACKET_NAMES.get(ptype, 'WILL')}")
        kind = PROPERTY_KINDS[pid]
        try:
            if kind == "P":
                for name, val in value:
                    parts.append(b"\x26" + encode_string(name) + encode_string(val))
                continue
            if kind == "V":
                values = value if isinstance(value, (list, tuple)) else (value,)
                for v in values:
                    if v <= 0:
                        raise error("AWS_ERROR_MQTT5_ENCODE_FAILURE", "subscription identifier must be positive")
                    parts.append(bytes((pid,)) + encode_varint(v))
                continue
            head = bytes((pid,))
            if kind == "B":
                parts.append(head + bytes((int(value),)))
            elif kind == "H":
                parts.append(head + _pack_H(value))
            elif kind == "I":
                parts.append(head + _pack_I(value))
            elif kind == "S":
                parts.append(head + encode_string(value))
            else:  # D
                parts.append(head + encode_binary(value))
        except (struct.error, ValueError, TypeError, OverflowError) as e:
            raise error("AWS_ERROR_MQTT5_ENCODE_FAILURE", f"property 0x{pid:02x}: {e}") from None
    body = b"".join(parts)
    return encode_varint(len(body)) + body


def _frame(first: int, body: bytes) -> bytes:
    n = len(body)
    if n < 128:
        return bytes((first, n)) + body
    return bytes((first,)) + encode_varint(n) + body


# -- packet encoders ---------------------------------------------------------------------
_topic_cache: dict[str, bytes] = {}  # encoded (length-prefixed) topics, bounded
def encode_publish(p: Publish, version: int = 5) -> bytes:
    qos = p.qos
    if qos not in (0, 1, 2):
        raise _enc_fail(version, f"invalid QoS {qos}")
    first = 0x30 | (qos << 1) | (1 if p.retain else 0) | (8 if p.dup else 0)
    topic = _topic_cache.get(p.topic)
    if topic is None:
        topic = encode_string(p.topic, version)
        if len(_topic_cache) >= 4096:
            _topic_cache.clear()
        _topic_cache[p.topic] = topic
    parts = [topic]
    if qos:
        if not 0 < p.packet_id <= 65535:
            raise _enc_fail(version, "QoS 1/2 PUBLISH needs a packet id in 1..65535")
        parts.append(_pack_H(p.packet_id))
    if version == 5:
        parts.append(encode_properties(p.props, PUBLISH))
    parts.append(p.payload)  # type: ignore[arg-type]
    return _frame(first, b"".join(parts))


def encode_connect(p: Connect, version: int | None = None) -> bytes:
    v = p.version if version is None else version
    if v not in (4, 5):
        raise _enc_fail(5, f"unsupported protocol level {v}")
    flags = 0x02 if p.clean_start else 0
    will = p.will
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if p.username is not None:
        flags |= 0x80
    if p.password is not None:
        flags |= 0x40
    if not 0 <= p.keep_alive <= 65535:
        raise _enc_fail(v, "keep alive out of range")
    parts = [b"\x00\x04MQTT", bytes((v, flags)), _pack_H(p.keep_alive)]
    if v == 5:
        parts.append(encode_properties(p.props, CONNECT))
    parts.append(encode_string(p.client_id, v))
    if will is not None:
        if v == 5:
            parts.append(encode_properties(will.props, WILL))
        parts.append(encode_string(will.topic, v))
        parts.append(encode_binary(will.payload, v))
    if p.username is not None:
        parts.append(encode_string(p.username, v))
    if p.password is not None:
        parts.append(encode_binary(p.password, v))
    return _frame(0x10, b"".join(parts))


def encode_connack(p: Connack, version: int = 5) -> bytes:
    body = bytes((1 if p.session_present else 0, p.reason_code))
    if version == 5:
        body += encode_properties(p.props, CONNACK)
    return _frame(0x20, body)


def encode_ack(p: Ack, version: int = 5) -> bytes:
    first = (p.kind << 4) | (0x02 if p.kind == PUBREL else 0)
    pid = _pack_H(p.packet_id)
    if version == 5 and (p.reason_code or p.props):
        if p.props:
            return _frame(first, pid + bytes((p.reason_code,)) + encode_properties(p.props, p.kind))
        return _frame(first, pid + bytes((p.reason_code,)))
    return bytes((first, 2)) + pid


def encode_subscribe(p: Subscribe, version: int = 5) -> bytes:
    parts = [_pack_H(p.packet_id)]
    if version == 5:
        parts.append(encode_properties(p.props, SUBSCRIBE))
    if not p.subscriptions:
        raise _enc_fail(version, "SUBSCRIBE without topic filters")
    for s in p.subscriptions:
        opts = s.qos
        if version == 5:
            opts |= (4 if s.no_local else 0) | (8 if s.retain_as_published else 0) | (s.retain_handling << 4)
        parts.append(encode_string(s.topic_filter, version))
        parts.append(bytes((opts,)))
    return _frame(0x82, b"".join(parts))


def encode_suback(p: Suback, version: int = 5) -> bytes:
    parts = [_pack_H(p.packet_id)]
    if version == 5:
        parts.append(encode_properties(p.props, SUBACK))
    parts.append(bytes(p.reason_codes))
    return _frame(0x90, b"".join(parts))


def encode_unsubscribe(p: Unsubscribe, version: int = 5) -> bytes:
    parts = [_pack_H(p.packet_id)]
    if version == 5:
        parts.append(encode_properties(p.props, UNSUBSCRIBE))
    if not p.topic_filters:
        raise _enc_fail(version, "UNSUBSCRIBE without topic filters")
    for f in p.topic_filters:
        parts.append(encode_string(f, version))
    return _frame(0xA2, b"".join(parts))


def encode_unsuback(p: Unsuback, version: int = 5) -> bytes:
    parts = [_pack_H(p.packet_id)]
    if version == 5:
        parts.append(encode_properties(p.props, UNSUBACK))
        parts.append(bytes(p.reason_codes))
    return _frame(0xB0, b"".join(parts))


def encode_disconnect(p: Disconnect, version: int = 5) -> bytes:
    if version != 5 or (p.reason_code == 0 and not p.props):
        return b"\xe0\x00"
    return _frame(0xE0, bytes((p.reason_code,)) + encode_properties(p.props, DISCONNECT))


def encode_auth(p: Auth, version: int = 5) -> bytes:
    if version != 5:
        raise _enc_fail(version, "AUTH exists only in MQTT 5")
    if p.reason_code == 0 and not p.props:
        return b"\xf0\x00"
    return _frame(0xF0, bytes((p.reason_code,)) + encode_properties(p.props, AUTH))


PINGREQ_BYTES = b"\xc0\x00"
PINGRESP_BYTES = b"\xd0\x00"


def encode(p: Packet, version: int = 5) -> bytes:
    """The bytes of packet ``p`` at protocol level ``version`` (4 or 5)."""
    t = p.type
    if t == PUBLISH:
        return encode_publish(p, version)  # type: ignore[arg-type]
    if t in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        return encode_ack(p, version)  # type: ignore[arg-type]
    if t == CONNECT:
        return encode_connect(p)  # type: ignore[arg-type]  # the packet names its level
    if t == CONNACK:
        return encode_connack(p, version)  # type: ignore[arg-type]
    if t == SUBSCRIBE:
        return encode_subscribe(p, version)  # type: ignore[arg-type]
    if t == SUBACK:
        return encode_suback(p, version)  # type: ignore[arg-type]
    if t == UNSUBSCRIBE:
        return encode_unsubscribe(p, version)  # type: ignore[arg-type]
    if t == UNSUBACK:
        return encode_unsuback(p, version)  # type: ignore[arg-type]
    if t == PINGREQ:
        return PINGREQ_BYTES
    if t == PINGRESP:
        return PINGRESP_BYTES
    if t == DISCONNECT:
        return encode_disconnect(p, version)  # type: ignore[arg-type]
    if t == AUTH:
        return encode_auth(p, version)  # type: ignore[arg-type]
    raise _enc_fail(version, f"unknown packet type {t}")


# -- decoding ----------------------------------------------------------------------------
class _Malformed(Exception):
    """Internal: raised inside the body parsers, turned into the version's error."""

    def __init__(self, msg: str, utf8: bool = False, level4: str = "AWS_ERROR_MQTT_PROTOCOL_ERROR") -> None:
        super().__init__(msg)
        self.utf8 = utf8
        self.level4 = level4


class _Reader:
    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: memoryview, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def remaining(self) -> int:
        return self.end - self.pos

    def u8(self) -> int:
        if self.pos >= self.end:
            raise _Malformed("packet too short")
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def u16(self) -> int:
        if self.pos + 2 > self.end:
            raise _Malformed("packet too short")
        v: int = _unpack_H(self.buf, self.pos)[0]
        self.pos += 2
        return v

    def u32(self) -> int:
        if self.pos + 4 > self.end:
            raise _Malformed("packet too short")
        v: int = _unpack_I(self.buf, self.pos)[0]
        self.pos += 4
        return v

    def varint(self) -> int:
        value = 0
        shift = 0
        for _ in range(4):
            b = self.u8()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
        raise _Malformed("variable byte integer longer than 4 bytes",
                         level4="AWS_ERROR_MQTT_INVALID_REMAINING_LENGTH")

    def binary(self) -> bytes:
        n = self.u16()
        if self.pos + n > self.end:
            raise _Malformed("length past the end of the packet")
        v = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return v

    def string(self) -> str:
        raw = self.binary()
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed("invalid UTF-8 string", utf8=True) from None
        if "\x00" in s:
            raise _Malformed("string contains U+0000", utf8=True)
        return s

    def rest(self) -> bytes:
        v = bytes(self.buf[self.pos:self.end])
        self.pos = self.end
        return v


def _read_properties(r: _Reader, ptype: int) -> Props:
    length = r.varint()
    if length > r.remaining():
        raise _Malformed("property length past the end of the packet")
    end = r.pos + length
    props: Props = {}
    allowed = ALLOWED_PROPERTIES[ptype]
    saved_end = r.end
    r.end = end
    while r.pos < end:
        v: Any
        pid = r.varint()
        kind = PROPERTY_KINDS.get(pid)
        if kind is None:
            raise _Malformed(f"unknown property 0x{pid:02x}")
        if pid not in allowed:
            raise _Malformed(f"property 0x{pid:02x} not allowed in {PACKET_NAMES.get(ptype, 'WILL')}")
        if kind == "P":
            pair = (r.string(), r.string())
            props.setdefault(P_USER_PROPERTY, []).append(pair)
            continue
        if pid == P_SUBSCRIPTION_IDENTIFIER:
            v = r.varint()
            if v == 0:
                raise _Malformed("subscription identifier 0")
            if ptype == PUBLISH:
                props.setdefault(pid, []).append(v)
                continue
        elif kind == "B":
            v = r.u8()
            if v > 1 and pid != P_MAXIMUM_QOS:
                raise _Malformed(f"property 0x{pid:02x} must be 0 or 1")
            if pid == P_MAXIMUM_QOS and v > 1:
                raise _Malformed("maximum QoS must be 0 or 1")
        elif kind == "H":
            v = r.u16()
        elif kind == "I":
            v = r.u32()
        elif kind == "S":
            v = r.string()
        else:
            v = r.binary()
        if pid in props:
            raise _Malformed(f"property 0x{pid:02x} repeated")
        if (pid in (P_RECEIVE_MAXIMUM, P_MAXIMUM_PACKET_SIZE, P_TOPIC_ALIAS) and v == 0):
            raise _Malformed(f"property 0x{pid:02x} must not be 0")
        props[pid] = v
    r.end = saved_end
    return props


def _decode_connect(r: _Reader, flags: int, version: int) -> Connect:
    if r.string() != "MQTT":
        raise _Malformed("bad protocol name", level4="AWS_ERROR_MQTT_UNSUPPORTED_PROTOCOL_NAME")
    level = r.u8()
    if level not in (4, 5):
        raise _Malformed("unsupported protocol level", level4="AWS_ERROR_MQTT_UNSUPPORTED_PROTOCOL_LEVEL")
    cflags = r.u8()
    if cflags & 0x01:
        raise _Malformed("reserved CONNECT flag set", level4="AWS_ERROR_MQTT_INVALID_RESERVED_BITS")
    keep_alive = r.u16()
    props = _read_properties(r, CONNECT) if level == 5 else {}
    client_id = r.string()
    will = None
    will_qos = (cflags >> 3) & 3
    if cflags & 0x04:
        if will_qos == 3:
            raise _Malformed("will QoS 3")
        wprops = _read_properties(r, WILL) if level == 5 else {}
        wtopic = r.string()
        wpayload = r.binary()
        will = Publish(wtopic, wpayload, will_qos, bool(cflags & 0x20), props=wprops)
    elif will_qos or cflags & 0x20:
        raise _Malformed("will flags without a will")
    username = r.string() if cflags & 0x80 else None
    password = r.binary() if cflags & 0x40 else None
    if r.remaining():
        raise _Malformed("trailing bytes in CONNECT")
    return Connect(level, client_id, bool(cflags & 0x02), keep_alive, username, password, will, props)


def _decode_connack(r: _Reader, flags: int, version: int) -> Connack:
    ack_flags = r.u8()
    if ack_flags & 0xFE:
        raise _Malformed("reserved CONNACK flags set", level4="AWS_ERROR_MQTT_INVALID_RESERVED_BITS")
    code = r.u8()
    props = _read_properties(r, CONNACK) if version == 5 else {}
    if r.remaining():
        raise _Malformed("trailing bytes in CONNACK")
    return Connack(bool(ack_flags & 1), code, props)


def _decode_publish(r: _Reader, flags: int, version: int) -> Publish:
    qos = (flags >> 1) & 3
    if qos == 3:
        raise _Malformed("PUBLISH with QoS 3", level4="AWS_ERROR_MQTT_INVALID_QOS")
    dup = bool(flags & 8)
    if dup and qos == 0:
        raise _Malformed("DUP set on a QoS 0 PUBLISH")
    topic = r.string()
    packet_id = 0
    if qos:
        packet_id = r.u16()
        if packet_id == 0:
            raise _Malformed("packet id 0")
    props = _read_properties(r, PUBLISH) if version == 5 else {}
    payload = r.rest()
    return Publish(topic, payload, qos, bool(flags & 1), dup, packet_id, props)


def _decode_ack(kind: int) -> Callable[[_Reader, int, int], Ack]:
    def decode(r: _Reader, flags: int, version: int) -> Ack:
        packet_id = r.u16()
        if packet_id == 0:
            raise _Malformed("packet id 0")
        code = 0
        props: Props = {}
        if version == 5:
            if r.remaining():
                code = r.u8()
            if r.remaining():
                props = _read_properties(r, kind)
        if r.remaining():
            raise _Malformed("trailing bytes in acknowledgement")
        return Ack(kind, packet_id, code, props)
    return decode


def _decode_subscribe(r: _Reader, flags: int, version: int) -> Subscribe:
    packet_id = r.u16()
    if packet_id == 0:
        raise _Malformed("packet id 0")
    props = _read_properties(r, SUBSCRIBE) if version == 5 else {}
    subs = []
    while r.remaining():
        f = r.string()
        opts = r.u8()
        limit = 0x3F if version == 5 else 0x03
        if opts & ~limit & 0xFF or (opts & 3) == 3 or ((opts >> 4) & 3) == 3:
            raise _Malformed("bad subscription options", level4="AWS_ERROR_MQTT_INVALID_RESERVED_BITS")
        subs.append(Subscription(f, opts & 3, bool(opts & 4), bool(opts & 8), (opts >> 4) & 3))
    if not subs:
        raise _Malformed("SUBSCRIBE without topic filters")
    return Subscribe(packet_id, subs, props)


def _decode_suback(r: _Reader, flags: int, version: int) -> Suback:
    packet_id = r.u16()
    props = _read_properties(r, SUBACK) if version == 5 else {}
    codes = list(r.rest())
    if not codes:
        raise _Malformed("SUBACK without reason codes")
    return Suback(packet_id, codes, props)


def _decode_unsubscribe(r: _Reader, flags: int, version: int) -> Unsubscribe:
    packet_id = r.u16()
    if packet_id == 0:
        raise _Malformed("packet id 0")
    props = _read_properties(r, UNSUBSCRIBE) if version == 5 else {}
    filters = []
    while r.remaining():
        filters.append(r.string())
    if not filters:
        raise _Malformed("UNSUBSCRIBE without topic filters")
    return Unsubscribe(packet_id, filters, props)


def _decode_unsuback(r: _Reader, flags: int, version: int) -> Unsuback:
    packet_id = r.u16()
    if version != 5:
        if r.remaining():
            raise _Malformed("trailing bytes in UNSUBACK")
        return Unsuback(packet_id, [], {})
    props = _read_properties(r, UNSUBACK)
    codes = list(r.rest())
    if not codes:
        raise _Malformed("UNSUBACK without reason codes")
    return Unsuback(packet_id, codes, props)


def _decode_empty(cls: type[Packet]) -> Callable[[_Reader, int, int], Packet]:
    def decode(r: _Reader, flags: int, version: int) -> Packet:
        if r.remaining():
            raise _Malformed(f"{cls.__name__.upper()} must be empty",
                             level4="AWS_ERROR_MQTT_INVALID_REMAINING_LENGTH")
        return cls()
    return decode


def _decode_disconnect(r: _Reader, flags: int, version: int) -> Disconnect:
    if version != 5:
        if r.remaining():
            raise _Malformed("DISCONNECT must be empty", level4="AWS_ERROR_MQTT_INVALID_REMAINING_LENGTH")
        return Disconnect()
    code = r.u8() if r.remaining() else 0
    props = _read_properties(r, DISCONNECT) if r.remaining() else {}
    if r.remaining():
        raise _Malformed("trailing bytes in DISCONNECT")
    return Disconnect(code, props)


def _decode_auth(r: _Reader, flags: int, version: int) -> Auth:
    code = r.u8() if r.remaining() else 0
    props = _read_properties(r, AUTH) if r.remaining() else {}
    if r.remaining():
        raise _Malformed("trailing bytes in AUTH")
    return Auth(code, props)


_DECODERS = {
    CONNECT: _decode_connect, CONNACK: _decode_connack, PUBLISH: _decode_publish,
    PUBACK: _decode_ack(PUBACK), PUBREC: _decode_ack(PUBREC), PUBREL: _decode_ack(PUBREL),
    PUBCOMP: _decode_ack(PUBCOMP), SUBSCRIBE: _decode_subscribe, SUBACK: _decode_suback,
    UNSUBSCRIBE: _decode_unsubscribe, UNSUBACK: _decode_unsuback,
    PINGREQ: _decode_empty(Pingreq), PINGRESP: _decode_empty(Pingresp),
    DISCONNECT: _decode_disconnect, AUTH: _decode_auth,
}

_REQUIRED_FLAGS = {PUBREL: 2, SUBSCRIBE: 2, UNSUBSCRIBE: 2}


class Decoder:
    """Incremental decoder: ``feed(data)`` returns the packets completed by ``data``.

    When ``data`` holds good packets followed by a bad one, ``feed`` returns the good
    ones and sets :attr:`failed`; otherwise it raises the error at once.

    ``maximum_packet_size`` bounds a whole packet (fixed header included); a packet whose
    header announces more raises ``AWS_ERROR_MQTT_BUFFER_TOO_BIG`` at once, without
    buffering it.  After an error the decoder is unusable (the connection must close).
    """

    def __init__(self, version: int = 5, maximum_packet_size: int = DEFAULT_MAXIMUM_PACKET_SIZE) -> None:
        self.version = version
        self.maximum_packet_size = maximum_packet_size
        self._buf = bytearray()
        self._failed: BaseException | None = None

    def _error(self, name4: str, msg: str, utf8: bool = False) -> BaseException:
        if self.version == 5:
            name = "AWS_ERROR_MQTT5_INVALID_UTF8_STRING" if utf8 else "AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR"
        else:
            name = name4
        exc = error(name, msg)
        self._failed = exc
        return exc

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        if buf:
            buf += data
            view = memoryview(buf)
        else:
            view = memoryview(data)
        out: list[Packet] = []
        pos = 0
        total = len(view)
        version = self.version
        try:
            while True:
                if total - pos < 2:
                    break
                first = view[pos]
                if first == 0x40 and total - pos >= 4 and view[pos + 1] == 2:
                    # fast path: the common bare PUBACK
                    pid = (view[pos + 2] << 8) | view[pos + 3]
                    if pid == 0:
                        raise self._error("AWS_ERROR_MQTT_PROTOCOL_ERROR", "malformed PUBACK: packet id 0")
                    out.append(Ack(PUBACK, pid))
                    pos += 4
                    continue
                # remaining length
                length = 0
                shift = 0
                i = pos + 1
                complete = False
                for _ in range(4):
                    if i >= total:
                        break
                    b = view[i]
                    i += 1
                    length |= (b & 0x7F) << shift
                    if not b & 0x80:
                        complete = True
                        break
                    shift += 7
                else:
                    raise self._error("AWS_ERROR_MQTT_INVALID_REMAINING_LENGTH",
                                      "remaining length longer than 4 bytes")
                if not complete:
                    break
                ptype = first >> 4
                flags = first & 0x0F
                if ptype == 0 or (ptype == AUTH and version != 5):
                    raise self._error("AWS_ERROR_MQTT_INVALID_PACKET_TYPE", f"invalid packet type {ptype}")
                if ptype != PUBLISH and flags != _REQUIRED_FLAGS.get(ptype, 0):
                    raise self._error("AWS_ERROR_MQTT_INVALID_RESERVED_BITS",
                                      f"invalid fixed header flags for {PACKET_NAMES[ptype]}")
                size = i - pos + length
                if size > self.maximum_packet_size:
                    exc = error("AWS_ERROR_MQTT_BUFFER_TOO_BIG",
                                f"{PACKET_NAMES[ptype]} of {size} bytes exceeds the maximum packet size "
                                f"{self.maximum_packet_size}")
                    self._failed = exc
                    raise exc
                end = i + length
                if end > total:
                    break
                if ptype == PUBLISH and length >= 2:
                    # fast path: a QoS 0/1 PUBLISH without properties (the common message);
                    # anything unusual or wrong takes the general decoder below
                    qos = (flags >> 1) & 3
                    at = i + 2 + ((view[i] << 8) | view[i + 1])
                    pid = 0
                    if qos == 1 and at + 2 <= end:
                        pid = (view[at] << 8) | view[at + 1]
                        at += 2
                    if (qos == 0 and not flags & 8) or pid:
                        if version == 5:
                            ok = at < end and view[at] == 0
                            at += 1
                        else:
                            ok = at <= end
                        if ok:
                            try:
                                topic = str(view[i + 2:i + 2 + ((view[i] << 8) | view[i + 1])], "utf-8")
                            except UnicodeDecodeError:
                                topic = "\x00"
                            if "\x00" not in topic:
                                out.append(Publish(topic, bytes(view[at:end]), qos, bool(flags & 1),
                                                   bool(flags & 8), pid, {}))
                                pos = end
                                continue
                reader = _Reader(view, i, end)
                try:
                    packet = _DECODERS[ptype](reader, flags, version)
                except _Malformed as m:
                    raise self._error(m.level4, f"malformed {PACKET_NAMES[ptype]}: {m}", m.utf8) from None
                out.append(packet)
                pos = end
        except BaseException:
            if not out:
                raise
            # Hand out the packets that preceded the bad one; ``failed`` tells the caller,
            # and the next feed() raises.
        finally:
            if buf:
                view.release()
                if self._failed is not None:
                    buf.clear()
                else:
                    del buf[:pos]
            elif pos < total and self._failed is None:
                self._buf = bytearray(view[pos:])
        return out

    @property
    def failed(self) -> BaseException | None:
        """The error that made this decoder unusable, if any."""
        return self._failed

    @property
    def buffered(self) -> int:
        return len(self._buf)


def decode_one(data: bytes, version: int = 5) -> Packet:
    """Decode exactly one complete packet (tests and tools)."""
    d = Decoder(version)
    packets = d.feed(data)
    if len(packets) != 1 or d.buffered:
        raise error("AWS_ERROR_MQTT5_DECODE_PROTOCOL_ERROR" if version == 5 else "AWS_ERROR_MQTT_PROTOCOL_ERROR",
                    "expected exactly one complete packet")
    return packets[0]


def encoded_size(packets: Iterable[bytes]) -> int:
    return sum(len(p) for p in packets)
