"""TLS connection setup and throughput: crtpy vs the reference awscrt, same process.

    .venv/bin/python benchmarks/bench_io.py [--connections 200] [--mib 64]

Setup rate: sequential verified TLS connections (TCP connect + TLS handshake, ALPN) to a
local TLS server.  crtpy connects with ``crtpy._net.connect.open_connection``; awscrt,
which has no raw TLS socket API in Python, with ``HttpClientConnection.new`` (its setup
completes right after the TLS handshake).  Throughput: crtpy only (echo through TLS).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()

    from crtpy import io as crt_io
    from crtpy._demo import LocalTlsServer, run_demo
    from crtpy._net.connect import open_connection, pick_loop
    from crtpy._pki import make_pki

    pki = make_pki(tempfile.mkdtemp(prefix="crtpy-bench-"))
    with LocalTlsServer(pki, alpn=["http/1.1"]) as server:
        elg = crt_io.EventLoopGroup(1)
        bootstrap = crt_io.ClientBootstrap(elg, crt_io.DefaultHostResolver(elg))
        opts = crt_io.TlsContextOptions()
        opts.override_default_trust_store(pki.ca_cert.pem)
        opts.alpn_list = ["http/1.1"]
        conn = crt_io.ClientTlsContext(opts).new_connection_options()

        async def crtpy_run(n: int) -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                transport, _ = await open_connection("localhost", server.port, protocol_factory=asyncio.Protocol,
                                                     bootstrap=bootstrap, tls_connection_options=conn)
                transport.close()
            return time.perf_counter() - t0

        crt_time = pick_loop(bootstrap).run_coroutine(crtpy_run(args.connections)).result(600)
        crt_rate = args.connections / crt_time
        print(f"crtpy     TLS connection setup: {crt_rate:8.1f} conn/s ({args.connections} sequential)")

        try:
            from awscrt import http as ref_http
            from awscrt import io as ref_io
        except ImportError:
            print("awscrt not installed: no reference figures")
            ref_rate = None
        else:
            ref_opts = ref_io.TlsContextOptions()
            ref_opts.override_default_trust_store(pki.ca_cert.pem)
            ref_opts.alpn_list = ["http/1.1"]
            ref_conn = ref_io.ClientTlsContext(ref_opts).new_connection_options()
            ref_conn.set_server_name("localhost")
            t0 = time.perf_counter()
            for _ in range(args.connections):
                c = ref_http.HttpClientConnection.new(host_name="localhost", port=server.port,
                                                      tls_connection_options=ref_conn).result(30)
                c.close().result(30)
            ref_rate = args.connections / (time.perf_counter() - t0)
            print(f"reference TLS connection setup: {ref_rate:8.1f} conn/s")
            print(f"ratio crtpy/reference: {crt_rate / ref_rate:.2f}")
    print()
    run_demo(args.mib, out=sys.stdout)


if __name__ == "__main__":
    main()
