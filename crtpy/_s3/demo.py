"""``make demo`` for the S3 client: a round trip through a local S3-compatible server.

:func:`run_demo` starts moto's S3 server as a child process on 127.0.0.1 (no AWS account
or network needed), creates a bucket with a crtpy DEFAULT request, writes a random file,
uploads it with a multipart upload and a CRC64-NVME full-object checksum, downloads it
back (validating the checksum), checks that both files are identical and prints the
throughput of each direction.  The server is stopped and the files removed at the end.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

MIB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the moto server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)  # polling a child process we do not control
    raise RuntimeError("the moto server did not start listening")


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(4 * MIB)
            if not block:
                return h.hexdigest()
            h.update(block)


def start_moto(port: int) -> subprocess.Popen[bytes]:
    """moto's S3 server in a child process (its own interpreter, so it does not share
    our GIL)."""
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def run_demo(size_mib: int = 256, part_size_mib: int = 8, out: Any = None) -> int:
    """Run the demo; returns 0 on success, 1 on failure."""
    from ..auth import AwsCredentialsProvider
    from ..http import HttpHeaders, HttpRequest
    from ..s3 import (
        S3ChecksumAlgorithm,
        S3ChecksumConfig,
        S3ChecksumLocation,
        S3Client,
        S3RequestTlsMode,
        S3RequestType,
        create_default_s3_signing_config,
    )

    out = out or sys.stdout

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    try:
        import moto.server  # noqa: F401
    except ImportError:
        say("crtpy s3 demo needs moto's server: pip install 'moto[server]'")
        return 1
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="crtpy-s3-demo-")
    proc: subprocess.Popen[bytes] | None = None
    size = size_mib * MIB
    try:
        say(f"crtpy S3 demo: starting moto's S3 server on http://127.0.0.1:{port} (child process)")
        proc = start_moto(port)
        region = "us-east-1"
        provider = AwsCredentialsProvider.new_static("demo-access-key", "demo-secret-key")
        client = S3Client(region=region, tls_mode=S3RequestTlsMode.DISABLED, part_size=part_size_mib * MIB,
                          signing_config=create_default_s3_signing_config(region=region,
                                                                          credential_provider=provider))
        host = f"127.0.0.1:{port}"
        bucket, key = "crtpy-demo", "data/random.bin"

        def request(method: str, path: str, extra: Sequence[tuple[str, str]] = ()) -> HttpRequest:
            return HttpRequest(method, path, HttpHeaders([("Host", host), *extra]))

        req = client.make_request(type=S3RequestType.DEFAULT, operation_name="CreateBucket",
                                  request=request("PUT", f"/{bucket}", [("Content-Length", "0")]))
        req.finished_future.result(60)
        say(f"  created bucket {bucket!r}")

        src = os.path.join(workdir, "upload.bin")
        dst = os.path.join(workdir, "download.bin")
        with open(src, "wb") as f:
            f.writelines(os.urandom(MIB) for _ in range(size_mib))
        say(f"  generated a {size_mib} MiB random file")

        t0 = time.perf_counter()
        req = client.make_request(
            type=S3RequestType.PUT_OBJECT, send_filepath=src,
            request=request("PUT", f"/{bucket}/{key}", [("Content-Length", str(size)),
                                                        ("Content-Type", "application/octet-stream")]),
            checksum_config=S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC64NVME,
                                             location=S3ChecksumLocation.TRAILER))
        req.finished_future.result(600)
        up = time.perf_counter() - t0
        parts = -(-size // (part_size_mib * MIB))
        say(f"  upload:   {size_mib} MiB in {up:6.2f} s = {size / MIB / up:8.1f} MiB/s "
            f"({'multipart, ' + str(parts) + ' parts' if size > part_size_mib * MIB else 'single PUT'}, "
            f"CRC64NVME checksum in a trailer)")

        result: dict[str, Any] = {}
        t0 = time.perf_counter()
        req = client.make_request(type=S3RequestType.GET_OBJECT, recv_filepath=dst,
                                  request=request("GET", f"/{bucket}/{key}"),
                                  checksum_config=S3ChecksumConfig(validate_response=True),
                                  on_done=lambda **kw: result.update(kw))
        req.finished_future.result(600)
        down = time.perf_counter() - t0
        validated = result.get("did_validate_checksum")
        say(f"  download: {size_mib} MiB in {down:6.2f} s = {size / MIB / down:8.1f} MiB/s "
            f"(parallel ranged GETs{', CRC64NVME full-object checksum verified' if validated else ''})")

        a, b = _sha256_file(src), _sha256_file(dst)
        if a != b:
            say(f"  FAILED: the downloaded file differs (sha256 {b} != {a})")
            return 1
        say(f"  verified: the downloaded file is identical to the uploaded one (sha256 {a[:16]}...)")
        del client
        return 0
    except Exception as exc:  # noqa: BLE001 - the demo reports and exits
        say(f"  FAILED: {getattr(exc, 'name', type(exc).__name__)}: {getattr(exc, 'message', None) or exc}")
        return 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            say("  stopped the server")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_demo(int(sys.argv[1]) if len(sys.argv) > 1 else 256))
