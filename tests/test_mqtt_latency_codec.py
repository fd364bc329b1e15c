"""The decoder's fast path for plain PUBLISH packets (``codec.Decoder.feed``) gives the
same packets, or the same errors, as the general PUBLISH decoder."""
from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from crtpy._mqtt import codec as c


def general(data: bytes, version: int) -> Any:
    """Decode one PUBLISH with the general decoder only (what the fast path skips)."""
    first = data[0]
    i, length = 1, 0
    shift = 0
    while True:
        b = data[i]
        i += 1
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    r = c._Reader(memoryview(data), i, i + length)
    try:
        p = c._DECODERS[c.PUBLISH](r, first & 0x0F, version)
    except c._Malformed as m:
        return ("error", str(m))
    return (p.topic, bytes(p.payload), p.qos, p.retain, p.dup, p.packet_id, p.props)


def fast(data: bytes, version: int) -> Any:
    try:
        packets = c.Decoder(version).feed(data)
    except Exception as e:  # noqa: BLE001 - compared with the general decoder's verdict
        return ("error", getattr(e, "name", type(e).__name__))
    assert len(packets) == 1
    p = packets[0]
    return (p.topic, bytes(p.payload), p.qos, p.retain, p.dup, p.packet_id, p.props)


def publish_bytes(flags: int, body: bytes) -> bytes:
    return bytes([0x30 | flags]) + c.encode_varint(len(body)) + body


TOPICS = [b"a/b", b"", "caf\u00e9/\u2603".encode(), b"bad\xff", b"nul\x00x", b"x" * 300]


@pytest.mark.parametrize("version", [4, 5])
def test_fast_path_matches_general_decoder(version: int) -> None:
    rng = random.Random(7)
    cases = 0
    for flags, topic, pid, props, payload in itertools.product(
            range(16), TOPICS, [b"", b"\x00\x00", b"\x00\x07", b"\x01"], [b"", b"\x00", b"\x02\x01\x01", b"\x05"],
            [b"", b"payload", bytes(rng.randrange(256) for _ in range(50))]):
        if version == 4 and props:
            continue
        body = len(topic).to_bytes(2, "big") + topic + pid + props + payload
        data = publish_bytes(flags, body)
        want = general(data, version)
        got = fast(data, version)
        cases += 1
        if want[0] == "error":
            assert got[0] == "error", (data, want, got)
        else:
            assert got == want, (data, want, got)
    assert cases > 1000


@pytest.mark.parametrize("version", [4, 5])
def test_fast_path_split_and_batched(version: int) -> None:
    packets = [c.Publish(f"t/{i}", b"p%d" % i, i % 2, bool(i % 3 == 0), False, (i + 1) if i % 2 else 0, {})
               for i in range(40)]
    wire = b"".join(c.encode_publish(p, version) for p in packets)
    for step in (1, 3, 17, len(wire)):
        d = c.Decoder(version)
        out: list[Any] = []
        for k in range(0, len(wire), step):
            out.extend(d.feed(wire[k:k + step]))
        assert [(p.topic, bytes(p.payload), p.qos, p.retain, p.packet_id) for p in out] == \
            [(p.topic, p.payload, p.qos, p.retain, p.packet_id) for p in packets]
