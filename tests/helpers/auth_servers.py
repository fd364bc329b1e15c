"""Local endpoints for the credentials-provider tests: an EC2 instance metadata (IMDS)
emulator, an ECS container credentials endpoint, an IoT X.509 credentials endpoint (mTLS)
and moto's server for STS / Cognito.  All bind 127.0.0.1 on free ports."""
from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import free_port

Handler = Callable[["Request"], tuple[int, dict[str, str], bytes]]


class Request:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up early (failed handshakes, timeouts) are expected here


class LocalServer:
    """A threaded HTTP(S) server calling ``handler(Request) -> (status, headers, body)``."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        outer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with outer.lock:
                    outer.requests.append(req)
                status, headers, payload = outer.handler(req)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = _serve

        self.port = free_port()
        self.httpd = _QuietServer(("127.0.0.1", self.port), _H)
        self.httpd.daemon_threads = True
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="auth-test-server",
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def paths(self) -> list[str]:
        with self.lock:
            return [f"{r.method} {r.path}" for r in self.requests]


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def creds_doc(prefix: str = "IMDS", expires_in: float = 3600, **extra: Any) -> dict[str, Any]:
    return {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": f"{prefix}AKID",
            "SecretAccessKey": f"{prefix}SECRET", "Token": f"{prefix}TOKEN",
            "Expiration": iso(datetime.now(timezone.utc) + timedelta(seconds=expires_in)), **extra}


class ImdsEmulator:
    """IMDS with IMDSv2 tokens.  Knobs: ``token_status`` (answer to the token PUT),
    ``require_token`` (GETs without a valid token get 401), ``reject_tokens`` (how many
    valid-looking tokens get a 401, as if expired), ``roles`` (list; empty gives 404),
    ``credentials_status``."""

    def __init__(self) -> None:
        self.token_status = 200
        self.require_token = True
        self.reject_tokens = 0
        self.roles = ["test-role"]
        self.credentials_status = 200
        self.expires_in = 3600.0
        self.issued = 0
        self.server = LocalServer(self.handle)

    def handle(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        if req.method == "PUT" and req.path == "/latest/api/token":
            if self.token_status != 200:
                return self.token_status, {}, b""
            if "x-aws-ec2-metadata-token-ttl-seconds" not in req.headers:
                return 400, {}, b""
            self.issued += 1
            return 200, {}, f"TOKEN-{self.issued}".encode()
        token = req.headers.get("x-aws-ec2-metadata-token")
        if token is not None or self.require_token:
            if token is None or not token.startswith("TOKEN-"):
                return 401, {}, b""
            if self.reject_tokens > 0:
                self.reject_tokens -= 1
                return 401, {}, b""
        base = "/latest/meta-data/iam/security-credentials/"
        if req.method == "GET" and req.path == base:
            if not self.roles:
                return 404, {}, b""
            return 200, {}, "\n".join(self.roles).encode()
        if req.method == "GET" and req.path.startswith(base):
            if req.path[len(base):] not in self.roles or self.credentials_status != 200:
                return self.credentials_status if self.credentials_status != 200 else 404, {}, b""
            return 200, {"Content-Type": "application/json"}, json.dumps(creds_doc(expires_in=self.expires_in)).encode()
        return 404, {}, b""


class EcsEndpoint:
    """Container credentials endpoint requiring ``Authorization: <token>``."""

    def __init__(self, token: str = "ecs-auth-token") -> None:
        self.token = token
        self.status = 200
        self.server = LocalServer(self.handle)

    def handle(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        if req.headers.get("authorization") != self.token:
            return 401, {}, b"{}"
        if self.status != 200:
            return self.status, {}, b"{}"
        doc = creds_doc("ECS")
        return 200, {"Content-Type": "application/json"}, json.dumps(doc).encode()


class X509Endpoint:
    """IoT credentials endpoint over mTLS (the server requires a client certificate)."""

    def __init__(self, pki: Any) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        ctx.load_verify_locations(str(pki.ca_cert))
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.server = LocalServer(self.handle, ctx)

    def handle(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        if req.path != "/role-aliases/my-alias/credentials":
            return 404, {}, b'{"message":"no such role alias"}'
        if req.headers.get("x-amzn-iot-thingname") != "my-thing":
            return 403, {}, b'{"message":"bad thing"}'
        exp = iso(datetime.now(timezone.utc) + timedelta(hours=1))
        doc = {"credentials": {"accessKeyId": "X509AKID", "secretAccessKey": "X509SECRET",
                               "sessionToken": "X509TOKEN", "expiration": exp}}
        return 200, {"Content-Type": "application/json"}, json.dumps(doc).encode()


@pytest.fixture
def imds():
    emu = ImdsEmulator()
    emu.server.start()
    yield emu
    emu.server.stop()


@pytest.fixture
def ecs_endpoint():
    ep = EcsEndpoint()
    ep.server.start()
    yield ep
    ep.server.stop()


@pytest.fixture(scope="session")
def moto_server():
    """moto's server (STS, Cognito Identity, ...) on a free loopback port."""
    moto_server_mod = pytest.importorskip("moto.server")
    port = free_port()
    server = moto_server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
