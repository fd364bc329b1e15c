"""HTTP client throughput: crtpy.http side by side with the reference awscrt.http.

Starts nginx (benchmarks/nginx_http.conf) on free loopback ports, serving generated
files, and measures in one process:

1. bulk download: 4 x 256 MiB over one keep-alive HTTP/1.1 connection (MB/s);
2. 1 KiB GETs per second, one after another on one keep-alive connection;
3. HTTP/2: 1,000 small GETs multiplexed on one TLS connection (total seconds).

Beside each figure: CPU seconds of this process and of nginx (from /proc, Linux) spent in
the round that gave it, per GiB (bulk) or per request (GETs), to show which side limits.

Usage: .venv/bin/python benchmarks/bench_http.py [--size-mib 256] [--count 4]
       [--gets 3000] [--h2-requests 1000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(tmp: str, root: str, cert: str, key: str):
    port, tls_port = free_port(), free_port()
    with open(os.path.join(HERE, "nginx_http.conf")) as f:
        conf = f.read()
    for k, v in {"tmp": tmp, "root": root, "port": port, "tls_port": tls_port, "cert": cert, "key": key}.items():
        conf = conf.replace("{" + k + "}", str(v))
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-p", tmp, "-c", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            socket.create_connection(("127.0.0.1", tls_port), 0.2).close()
            return proc, port, tls_port
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("nginx failed: " + proc.stderr.read().decode())
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nginx did not start")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (0.0 where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def measured(fn, nginx_pid: int, *args):
    """(result, own CPU seconds, nginx CPU seconds) of ``fn(*args)``."""
    own0, ng0 = self_cpu(), proc_cpu(nginx_pid)
    result = fn(*args)
    return result, self_cpu() - own0, proc_cpu(nginx_pid) - ng0


def bench_bulk(lib, port: int, size: int, count: int) -> float:
    http = lib.http
    conn = http.HttpClientConnection.new("127.0.0.1", port).result(10)
    received = [0]

    def on_body(http_stream, chunk, **kw):
        received[0] += len(chunk)

    req = http.HttpRequest("GET", "/big.bin", http.HttpHeaders([("Host", "localhost")]))
    t0 = time.perf_counter()
    for _ in range(count):
        s = conn.request(req, on_body=on_body)
        s.activate()
        assert s.completion_future.result(600) == 200
    dt = time.perf_counter() - t0
    assert received[0] == size * count, (received[0], size * count)
    conn.close().result(10)
    return size * count / dt / 1e6


def bench_gets(lib, port: int, n: int) -> float:
    http = lib.http
    conn = http.HttpClientConnection.new("127.0.0.1", port).result(10)
    req = http.HttpRequest("GET", "/small.bin", http.HttpHeaders([("Host", "localhost")]))
    body = [0]

    def on_body(http_stream, chunk, **kw):
        body[0] += len(chunk)

    for _ in range(50):  # warm up
        s = conn.request(req, on_body=on_body)
        s.activate()
        s.completion_future.result(10)
    body[0] = 0
    t0 = time.perf_counter()
    for _ in range(n):
        s = conn.request(req, on_body=on_body)
        s.activate()
        s.completion_future.result(10)
    dt = time.perf_counter() - t0
    assert body[0] == 1024 * n
    conn.close().result(10)
    return n / dt


def bench_h2(lib, tls_port: int, ca: str, n: int) -> float:
    http, io = lib.http, lib.io
    opts = io.TlsContextOptions()
    opts.override_default_trust_store_from_path(None, ca)
    tls = io.ClientTlsContext(opts).new_connection_options()
    tls.set_server_name("localhost")
    tls.set_alpn_list(["h2"])
    conn = http.Http2ClientConnection.new("localhost", tls_port, tls_connection_options=tls).result(10)
    req = http.HttpRequest("GET", "/small.bin", http.HttpHeaders([("Host", "localhost")]))
    total = [0]
    lock = threading.Lock()

    def on_body(http_stream, chunk, **kw):
        with lock:
            total[0] += len(chunk)

    warm = [conn.request(req, on_body=on_body) for _ in range(20)]
    for s in warm:
        s.activate()
    for s in warm:
        s.completion_future.result(10)
    total[0] = 0
    t0 = time.perf_counter()
    streams = [conn.request(req, on_body=on_body) for _ in range(n)]
    for s in streams:
        s.activate()
    for s in streams:
        assert s.completion_future.result(60) == 200
    dt = time.perf_counter() - t0
    assert total[0] == 1024 * n, total[0]
    conn.close().result(10)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--gets", type=int, default=3000)
    ap.add_argument("--h2-requests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import awscrt
    import awscrt.http
    import awscrt.io

    import crtpy
    import crtpy.http
    import crtpy.io
    from crtpy._pki import make_pki

    tmp = tempfile.mkdtemp(prefix="bench-http-")
    root = os.path.join(tmp, "www")
    os.makedirs(root)
    size = args.size_mib * 1024 * 1024
    block = os.urandom(1024 * 1024)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.writelines(block for _ in range(args.size_mib))
    with open(os.path.join(root, "small.bin"), "wb") as f:
        f.write(os.urandom(1024))
    pki = make_pki(os.path.join(tmp, "pki"))
    proc, port, tls_port = start_nginx(tmp, root, str(pki.server_cert), str(pki.server_key))
    libs = [("reference", awscrt), ("crtpy", crtpy)]
    results: dict = {name: {"bulk": [], "gets": [], "h2": []} for name, _ in libs}
    try:
        for _ in range(args.rounds):
            for name, lib in libs:
                results[name]["bulk"].append(measured(bench_bulk, proc.pid, lib, port, size, args.count))
                results[name]["gets"].append(measured(bench_gets, proc.pid, lib, port, args.gets))
                results[name]["h2"].append(measured(bench_h2, proc.pid, lib, tls_port, str(pki.ca_cert),
                                                    args.h2_requests))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    ref, ours = results["reference"], results["crtpy"]
    gib = size * args.count / 2**30
    bulk_r, bulk_o = max(ref["bulk"]), max(ours["bulk"])
    gets_r, gets_o = max(ref["gets"]), max(ours["gets"])
    h2_r, h2_o = min(ref["h2"]), min(ours["h2"])
    print(f"bulk download {args.count} x {args.size_mib} MiB, one HTTP/1.1 connection:")
    print(f"  reference {bulk_r[0]:9.1f} MB/s   crtpy {bulk_o[0]:9.1f} MB/s   ratio crtpy/reference "
          f"{bulk_o[0] / bulk_r[0]:5.2f}")
    print(f"  CPU s/GiB: reference {bulk_r[1] / gib:.2f} (nginx {bulk_r[2] / gib:.2f})   "
          f"crtpy {bulk_o[1] / gib:.2f} (nginx {bulk_o[2] / gib:.2f})")
    print(f"1 KiB GETs, one keep-alive connection ({args.gets} requests):")
    print(f"  reference {gets_r[0]:9.1f} req/s  crtpy {gets_o[0]:9.1f} req/s  ratio crtpy/reference "
          f"{gets_o[0] / gets_r[0]:5.2f}")
    n = args.gets + 50  # with the warm-up requests
    print(f"  CPU us/request: reference {gets_r[1] / n * 1e6:.0f} (nginx {gets_r[2] / n * 1e6:.0f})   "
          f"crtpy {gets_o[1] / n * 1e6:.0f} (nginx {gets_o[2] / n * 1e6:.0f})")
    print(f"HTTP/2, {args.h2_requests} x 1 KiB GETs multiplexed on one TLS connection:")
    print(f"  reference {h2_r[0]:9.3f} s      crtpy {h2_o[0]:9.3f} s      ratio crtpy/reference "
          f"(speed) {h2_r[0] / h2_o[0]:5.2f}")


if __name__ == "__main__":
    main()
