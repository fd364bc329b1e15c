"""Event-stream benchmark, in one process.

    .venv/bin/python benchmarks/bench_eventstream.py [--messages 20000] [--rpc 5000]

1. Codec: encode and decode rates of crtpy's codec for small (100-byte) and large
   (256 KiB) payloads, with botocore's decoder as the comparison (the reference awscrt
   exposes no codec to Python).
2. RPC: one stream, echo round trips one at a time (latency-bound) and a pipelined burst
   (throughput), crtpy.eventstream.rpc vs awscrt.eventstream.rpc against the same
   loopback test server (tests/helpers/eventstream_server.py).  The ratio printed is
   crtpy / reference (higher is better for rates).
"""
from __future__ import annotations

import argparse
import os
import queue
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))

from botocore.eventstream import EventStreamBuffer
from helpers.eventstream_server import RpcServer

from crtpy._eventstream import codec
from crtpy.eventstream import Header


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_codec(n: int) -> None:
    headers = [Header.from_string(":event-type", "Records"), Header.from_int32(":stream-id", 7),
               Header.from_string(":content-type", "application/octet-stream")]
    for label, size, count in (("100 B", 100, n), ("256 KiB", 256 * 1024, max(1, n // 100))):
        payload = os.urandom(size)
        t0 = time.perf_counter()
        frames = [codec.encode_message(headers, payload) for _ in range(count)]
        enc = time.perf_counter() - t0
        stream = b"".join(frames)
        chunks = [stream[i:i + 65536] for i in range(0, len(stream), 65536)]
        t0 = time.perf_counter()
        decoder = codec.Decoder()
        got = 0
        for c in chunks:
            for _ in decoder.messages(c):
                got += 1
        dec = time.perf_counter() - t0
        assert got == count
        t0 = time.perf_counter()
        buf = EventStreamBuffer()
        got = 0
        for c in chunks:
            buf.add_data(c)
            for _ in buf:
                got += 1
        boto = time.perf_counter() - t0
        assert got == count
        mb = len(stream) / 1e6
        print(f"codec {label:>8}: encode {rate(count, enc):10.0f} msg/s ({mb / enc:7.1f} MB/s) | "
              f"decode crtpy {rate(count, dec):10.0f} msg/s ({mb / dec:7.1f} MB/s) | "
              f"botocore {rate(count, boto):10.0f} msg/s | ratio crtpy/botocore {boto / dec:5.2f}")


def rpc_client(rpc: Any, port: int) -> tuple:
    events: queue.Queue[Any] = queue.Queue()

    class H(rpc.ClientConnectionHandler):
        def on_connection_setup(self, connection, error, **kw):
            events.put(connection)

        def on_connection_shutdown(self, reason, **kw):
            pass

        def on_protocol_message(self, headers, payload, message_type, flags, **kw):
            events.put(message_type)

    rpc.ClientConnection.connect(handler=H(), host_name="127.0.0.1", port=port).result(10)
    conn = events.get(timeout=10)
    conn.send_protocol_message(message_type=rpc.MessageType.CONNECT).result(10)
    events.get(timeout=10)
    return conn


def bench_rpc(rpc: Any, n: int) -> tuple:
    with RpcServer() as server:
        conn = rpc_client(rpc, server.port)
        received: queue.Queue[bytes] = queue.Queue()

        class S(rpc.ClientContinuationHandler):
            def on_continuation_message(self, headers, payload, message_type, flags, **kw):
                received.put(payload)

            def on_continuation_closed(self, **kw):
                pass

        stream = conn.new_stream(S())
        stream.activate(operation="echo", message_type=rpc.MessageType.APPLICATION_MESSAGE,
                        payload=b"start").result(10)
        received.get(timeout=10)
        payload = b"x" * 100
        t0 = time.perf_counter()
        for _ in range(n // 5):
            stream.send_message(message_type=rpc.MessageType.APPLICATION_MESSAGE, payload=payload)
            received.get(timeout=10)
        rtt = (time.perf_counter() - t0) / (n // 5)
        t0 = time.perf_counter()
        futures = [stream.send_message(message_type=rpc.MessageType.APPLICATION_MESSAGE, payload=payload)
                   for _ in range(n)]
        for _ in range(n):
            received.get(timeout=30)
        burst = time.perf_counter() - t0
        for f in futures:
            f.result(10)
        conn.close().result(10)
    return rtt, rate(n, burst)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rpc", type=int, default=5000)
    args = parser.parse_args()
    bench_codec(args.messages)

    import crtpy.eventstream.rpc as crtpy_rpc
    ours = bench_rpc(crtpy_rpc, args.rpc)
    try:
        import awscrt.eventstream.rpc as awscrt_rpc
    except ImportError:
        theirs = None
    else:
        theirs = bench_rpc(awscrt_rpc, args.rpc)
    print(f"rpc crtpy    : round trip {ours[0] * 1e6:8.0f} us | pipelined echo {ours[1]:9.0f} msg/s")
    if theirs:
        print(f"rpc reference: round trip {theirs[0] * 1e6:8.0f} us | pipelined echo {theirs[1]:9.0f} msg/s")
        print(f"ratio crtpy/reference: round-trip rate {theirs[0] / ours[0]:.2f}, "
              f"pipelined {ours[1] / theirs[1]:.2f}")


if __name__ == "__main__":
    main()
