"""S3 test servers: moto's S3 server on loopback, a fault-injecting proxy in front of it,
and helpers to build crtpy S3 clients and requests for them."""
from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

ACCESS_KEY = "testing-akid"
SECRET_KEY = "testing-secret"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        self.port = _free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.stop()

    def boto3(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer()
    yield server
    server.stop()


def make_client(port: int, **kwargs: Any) -> Any:
    from crtpy.auth import AwsCredentialsProvider
    from crtpy.s3 import S3Client, S3RequestTlsMode, create_default_s3_signing_config

    provider = AwsCredentialsProvider.new_static(ACCESS_KEY, SECRET_KEY)
    kwargs.setdefault("signing_config", create_default_s3_signing_config(region=REGION, credential_provider=provider))
    kwargs.setdefault("tls_mode", S3RequestTlsMode.DISABLED)
    return S3Client(region=REGION, **kwargs)


def http_request(method: str, port: int, bucket: str, key: str = "", query: str = "",
                 headers: list[tuple[str, str]] | None = None, body: Any = None) -> Any:
    from crtpy.http import HttpHeaders, HttpRequest

    path = f"/{bucket}/{key}" if key else f"/{bucket}"
    if query:
        path += "?" + query
    h = HttpHeaders([("Host", f"127.0.0.1:{port}")] + list(headers or []))
    return HttpRequest(method, path, h, body)


class Recorder:
    """Collects the callbacks of one S3 request."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[str, str]] | None = None
        self.chunks: list[tuple[int, bytes]] = []
        self.progress = 0
        self.done_kwargs: dict | None = None
        self._lock = threading.Lock()

    def on_headers(self, status_code: int, headers: list[tuple[str, str]], **kwargs: Any) -> None:
        self.status = status_code
        self.headers = headers

    def on_body(self, chunk: bytes, offset: int, **kwargs: Any) -> None:
        self.chunks.append((offset, bytes(chunk)))

    def on_progress(self, progress: int, **kwargs: Any) -> None:
        with self._lock:
            self.progress += progress

    def on_done(self, **kwargs: Any) -> None:
        self.done_kwargs = kwargs

    def callbacks(self) -> dict:
        return {"on_headers": self.on_headers, "on_body": self.on_body, "on_progress": self.on_progress,
                    "on_done": self.on_done}

    def body(self) -> bytes:
        expected = 0
        out = []
        for offset, chunk in self.chunks:
            assert offset == expected, f"on_body out of order: {offset} != {expected}"
            out.append(chunk)
            expected += len(chunk)
        return b"".join(out)


class NginxS3:
    """nginx with benchmarks/nginx_s3.conf: Range GETs of files under ``root``, canned
    multipart replies.  Needs the nginx binary (see conftest.require_binary)."""

    def __init__(self, tmp: str, root: str) -> None:
        import os
        import shutil
        import subprocess
        import time

        self.port = _free_port()
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
        here = os.path.dirname(os.path.abspath(__file__))
        conf_path = os.path.join(here, "..", "..", "benchmarks", "nginx_s3.conf")
        with open(conf_path) as f:
            conf = f.read()
        conf = conf.replace("{tmp}", tmp).replace("{root}", root).replace("{port}", str(self.port))
        path = os.path.join(tmp, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self._proc = subprocess.Popen([nginx, "-c", path, "-p", tmp], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start")
                time.sleep(0.05)  # polling a child process's listening socket

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)
