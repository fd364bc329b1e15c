"""CBOR throughput, crtpy vs the reference awscrt, side by side in one process.

    .venv/bin/python benchmarks/bench_cbor.py [--rounds N]

Two documents shaped like AWS RPCv2-CBOR responses (maps of records with text, integers,
floats, booleans, nulls, small blobs and nested maps/lists): a nested ~4 KB one and a
~1 MB one.  For each: whole data items (``write_data_item`` / ``pop_next_data_item``) and
the element-by-element API (``write_*`` calls; ``peek_next_type`` + ``pop_next_*`` calls),
in operations per second.  Every row prints crtpy, the reference and the ratio
crtpy/reference (higher is better for crtpy).  Rounds alternate between the two
implementations and the best round of each counts, to damp noise from other processes.
"""
from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable
from typing import Any

import awscrt.cbor as ref_cbor

import crtpy.cbor as crt_cbor


def make_doc(records: int, seed: int = 7) -> dict:
    rnd = random.Random(seed)
    items = []
    for i in range(records):
        items.append({
            "id": f"rec-{i:06d}",
            "seq": i,
            "owner": {"name": f"user{rnd.randrange(10000)}", "region": rnd.choice(["us-east-1", "eu-west-1", "ap-south-1"])},
            "size": rnd.randrange(1 << 31),
            "delta": -rnd.randrange(1 << 20),
            "price": round(rnd.uniform(0, 1000), 2),
            "ratio": rnd.random(),
            "enabled": rnd.random() < 0.5,
            "note": None if rnd.random() < 0.7 else "needs review",
            "tags": [rnd.choice(["red", "green", "blue", "prod", "dev"]) for _ in range(rnd.randrange(4))],
            "checksum": rnd.randbytes(8),
            "metrics": [rnd.randrange(1000) for _ in range(5)],
        })
    return {"Items": items, "Count": records, "ScannedCount": records * 2, "NextToken": "eyJwIjoiYWJjIn0="}


def _ops_from_value(v: Any, out: list) -> None:
    """Flatten a value into (write-method index, argument) streaming operations."""
    t = type(v)
    if t is dict:
        out.append((0, len(v)))
        for k, x in v.items():
            _ops_from_value(k, out)
            _ops_from_value(x, out)
    elif t is list:
        out.append((1, len(v)))
        for x in v:
            _ops_from_value(x, out)
    elif t is str:
        out.append((2, v))
    elif t is int:
        out.append((3, v))
    elif t is float:
        out.append((4, v))
    elif t is bool:
        out.append((5, v))
    elif t is bytes:
        out.append((6, v))
    else:
        out.append((7, None))


def stream_encode(mod: Any, ops: list) -> Callable[[], Any]:
    def run() -> Any:
        e = mod.AwsCborEncoder()
        fns = (e.write_map_start, e.write_array_start, e.write_text, e.write_int, e.write_float,
               e.write_bool, e.write_bytes, lambda _: e.write_null())
        for k, a in ops:
            fns[k](a)
        return e.get_encoded_data()
    return run


def stream_decode(mod: Any, data: bytes) -> Callable[[], Any]:
    T = mod.AwsCborType

    def run() -> int:
        d = mod.AwsCborDecoder(data)
        pops: list[Any] = [None] * 17
        pops[T.UnsignedInt] = d.pop_next_unsigned_int
        pops[T.NegativeInt] = d.pop_next_negative_int
        pops[T.Float] = d.pop_next_double
        pops[T.Bytes] = d.pop_next_bytes
        pops[T.Text] = d.pop_next_text
        pops[T.ArrayStart] = d.pop_next_array_start
        pops[T.MapStart] = d.pop_next_map_start
        pops[T.Bool] = d.pop_next_bool
        pops[T.Null] = d.consume_next_single_element
        peek = d.peek_next_type
        remaining = d.get_remaining_bytes_len
        n = 0
        while remaining():
            pops[peek()]()
            n += 2
        return n
    return run


def whole_encode(mod: Any, doc: Any) -> Callable[[], Any]:
    def run() -> Any:
        e = mod.AwsCborEncoder()
        e.write_data_item(doc)
        return e.get_encoded_data()
    return run


def whole_decode(mod: Any, data: bytes) -> Callable[[], Any]:
    def run() -> Any:
        return mod.AwsCborDecoder(data).pop_next_data_item()
    return run


def measure(fn: Callable[[], Any], min_time: float) -> float:
    """Seconds per call: best of a batch that lasts at least ``min_time``."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return dt / n
        n *= 2


def compare(label: str, crt: Callable[[], Any], ref: Callable[[], Any], ops_per_call: int,
            rounds: int, min_time: float) -> float:
    best_c = best_r = float("inf")
    gc.collect()
    for _ in range(rounds):
        best_r = min(best_r, measure(ref, min_time))
        best_c = min(best_c, measure(crt, min_time))
    c_ops, r_ops = ops_per_call / best_c, ops_per_call / best_r
    ratio = c_ops / r_ops
    print(f"{label:<44} {c_ops:>14,.0f} {r_ops:>14,.0f} {ratio:>7.2f}")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per measured batch")
    args = ap.parse_args()

    docs = {"4KB": make_doc(23), "1MB": make_doc(5600)}
    print(f"{'benchmark':<44} {'crtpy ops/s':>14} {'awscrt ops/s':>14} {'ratio':>7}")
    for name, doc in docs.items():
        data = whole_encode(ref_cbor, doc)()
        assert whole_encode(crt_cbor, doc)() == data, "encodings differ"
        assert crt_cbor.AwsCborDecoder(data).pop_next_data_item() == doc
        ops: list = []
        _ops_from_value(doc, ops)
        assert stream_encode(crt_cbor, ops)() == data
        n_dec = stream_decode(ref_cbor, data)()
        assert stream_decode(crt_cbor, data)() == n_dec
        print(f"-- {name} document: {len(data):,} bytes, {len(ops):,} elements")
        compare(f"whole-item encode {name} (docs/s)", whole_encode(crt_cbor, doc),
                whole_encode(ref_cbor, doc), 1, args.rounds, args.min_time)
        compare(f"whole-item decode {name} (docs/s)", whole_decode(crt_cbor, data),
                whole_decode(ref_cbor, data), 1, args.rounds, args.min_time)
        compare(f"streaming encode {name} (write_* calls/s)", stream_encode(crt_cbor, ops),
                stream_encode(ref_cbor, ops), len(ops), args.rounds, args.min_time)
        compare(f"streaming decode {name} (peek+pop calls/s)", stream_decode(crt_cbor, data),
                stream_decode(ref_cbor, data), n_dec, args.rounds, args.min_time)


if __name__ == "__main__":
    main()
