"""A small fake S3 Express (directory bucket) endpoint on loopback.

It checks every request's SigV4 signature with its own verifier (independent of crtpy's
signer): ``GET /?session=`` (CreateSession) must be signed with the account credentials
for the ``s3express`` service and answers with short-lived session credentials; every
other request must be signed with those session credentials (service ``s3express``)
and carry the session token in ``x-amz-s3session-token``.  Objects live in memory:
PUT, ranged GET, HEAD, DELETE and multipart uploads.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import http.server
import itertools
import re
import threading
import urllib.parse
from typing import Any

ACCESS_KEY = "express-akid"
SECRET_KEY = "express-secret"
REGION = "us-west-2"
SERVICE = "s3express"

_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                   r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})")


def _uri_encode(s: str) -> str:
    return urllib.parse.quote(s, safe="-_.~")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def verify_sigv4(method: str, raw_target: str, headers: Any, secrets: dict[str, str]) -> tuple[str, str, str]:
    """Check a header-signed SigV4 request; returns (access key, region, service).
    Raises ValueError with the reason when the signature does not verify."""
    auth = headers.get("Authorization") or ""
    m = _AUTH.fullmatch(auth.strip())
    if m is None:
        raise ValueError(f"no SigV4 Authorization header: {auth!r}")
    akid, day, region, service, signed, signature = m.groups()
    if akid not in secrets:
        raise ValueError(f"unknown access key {akid}")
    amz_date = headers.get("x-amz-date") or ""
    if not amz_date.startswith(day):
        raise ValueError("x-amz-date does not match the credential scope")
    path, _, query = raw_target.partition("?")
    pairs = []
    for item in query.split("&") if query else []:
        k, _, v = item.partition("=")
        pairs.append((_uri_encode(urllib.parse.unquote(k)), _uri_encode(urllib.parse.unquote(v))))
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted(pairs))
    names = signed.split(";")
    canon_headers = ""
    for name in names:
        values = headers.get_all(name) or []
        if not values:
            raise ValueError(f"signed header {name} missing")
        canon_headers += f"{name}:{','.join(' '.join(v.split()) for v in values)}\n"
    payload = headers.get("x-amz-content-sha256") or "UNSIGNED-PAYLOAD"
    creq = f"{method}\n{path}\n{canonical_query}\n{canon_headers}\n{signed}\n{payload}"
    scope = f"{day}/{region}/{service}/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = _hmac(("AWS4" + secrets[akid]).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise ValueError("signature mismatch")
    return akid, region, service


class FakeS3Express:
    """Run with ``start()``; ``port``, ``sessions`` (CreateSession calls answered),
    ``log`` (method, target, selected headers) and ``errors`` (rejected requests)."""

    def __init__(self) -> None:
        self.lifetime = datetime.timedelta(minutes=5)
        self.fail_create_session = False  # answer CreateSession with 403 AccessDenied
        self.garbage_create_session = False  # answer CreateSession with XML lacking Credentials
        self.sessions = 0
        self.tokens: dict[str, tuple[str, str]] = {}  # session key id -> (secret, token)
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.errors: list[str] = []
        self.range_status = 206  # rclone answers ranges with 200 (and Content-Range)
        self.range_lie = False  # with range_status 200: after the first part, send the next range
        self.inflight = 0  # requests being handled now, and the most at once
        self.max_inflight = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: http.server.ThreadingHTTPServer | None = None
        self.port = 0

    # -- lifetime ------------------------------------------------------------------------------
    def start(self) -> FakeS3Express:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                with owner._lock:
                    owner.inflight += 1
                    owner.max_inflight = max(owner.max_inflight, owner.inflight)
                try:
                    owner._handle(self)
                finally:
                    with owner._lock:
                        owner.inflight -= 1

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- requests ------------------------------------------------------------------------------
    def _reply(self, h: Any, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD" and body:
            h.wfile.write(body)

    def _error(self, h: Any, status: int, code: str, why: str) -> None:
        with self._lock:
            self.errors.append(f"{h.command} {h.path}: {code}: {why}")
        body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{why}</Message></Error>"
        self._reply(h, status, body.encode(), {"Content-Type": "application/xml"})

    def _body(self, h: Any) -> bytes:
        n = int(h.headers.get("Content-Length") or 0)
        data = h.rfile.read(n) if n else b""
        if (h.headers.get("x-amz-content-sha256") or "").startswith("STREAMING-"):
            raise ValueError("aws-chunked bodies are not supported by the fake")
        return data

    def _handle(self, h: Any) -> None:
        target = h.path
        path, _, query = target.partition("?")
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        with self._lock:
            self.log.append((h.command, target, {k.lower(): v for k, v in h.headers.items()
                                                 if k.lower() in ("x-amz-s3session-token", "x-amz-security-token",
                                                                  "authorization", "host", "user-agent")}))
        try:
            body = self._body(h)
        except ValueError as exc:
            self._error(h, 400, "InvalidRequest", str(exc))
            return
        if h.command == "GET" and path == "/" and "session" in params:
            self._create_session(h)
            return
        # everything else: session credentials and the session token
        with self._lock:
            secrets = {k: s for k, (s, _) in self.tokens.items()}
        try:
            akid, region, service = verify_sigv4(h.command, target, h.headers, secrets)
        except ValueError as exc:
            self._error(h, 403, "AccessDenied", str(exc))
            return
        if service not in ("s3", SERVICE) or region != REGION:  # the signing config's service
            self._error(h, 403, "AccessDenied", f"scope {region}/{service}")
            return
        if h.headers.get("x-amz-s3session-token") != self.tokens[akid][1]:
            self._error(h, 403, "AccessDenied", "x-amz-s3session-token missing or wrong")
            return
        if h.headers.get("x-amz-security-token") is not None:
            self._error(h, 400, "InvalidRequest", "x-amz-security-token sent to a directory bucket")
            return
        self._object(h, path, params, body)

    def _create_session(self, h: Any) -> None:
        try:
            _akid, region, service = verify_sigv4("GET", h.path, h.headers, {ACCESS_KEY: SECRET_KEY})
        except ValueError as exc:
            self._error(h, 403, "AccessDenied", str(exc))
            return
        if service != SERVICE or region != REGION:
            self._error(h, 403, "AccessDenied", f"CreateSession scope {region}/{service}")
            return
        if self.fail_create_session:
            self._error(h, 403, "AccessDenied", "no s3express:CreateSession permission")
            return
        if self.garbage_create_session:
            self._reply(h, 200, b"<CreateSessionResult><Nothing/></CreateSessionResult>")
            return
        with self._lock:
            self.sessions += 1
            n = next(self._ids)
        key, secret, token = f"SESSIONKEY{n}", f"session-secret-{n}", f"session-token-{n}"
        with self._lock:
            self.tokens[key] = (secret, token)
        expires = (datetime.datetime.now(datetime.timezone.utc) + self.lifetime).strftime("%Y-%m-%dT%H:%M:%SZ")
        xml = ("<?xml version='1.0' encoding='UTF-8'?>"
               "<CreateSessionResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'><Credentials>"
               f"<SessionToken>{token}</SessionToken><SecretAccessKey>{secret}</SecretAccessKey>"
               f"<AccessKeyId>{key}</AccessKeyId><Expiration>{expires}</Expiration>"
               "</Credentials></CreateSessionResult>")
        self._reply(h, 200, xml.encode(), {"Content-Type": "application/xml"})

    def _object(self, h: Any, path: str, params: dict[str, list[str]], body: bytes) -> None:
        cmd = h.command
        if cmd == "POST" and "uploads" in params:
            uid = f"upload-{next(self._ids)}"
            with self._lock:
                self.uploads[uid] = {}
            xml = (f"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
                   f"<UploadId>{uid}</UploadId></InitiateMultipartUploadResult>")
            self._reply(h, 200, xml.encode())
        elif cmd == "PUT" and "uploadId" in params:
            with self._lock:
                self.uploads[params["uploadId"][0]][int(params["partNumber"][0])] = body
            self._reply(h, 200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
        elif cmd == "POST" and "uploadId" in params:
            with self._lock:
                parts = self.uploads.pop(params["uploadId"][0])
                self.objects[path] = b"".join(parts[i] for i in sorted(parts))
            self._reply(h, 200, b"<CompleteMultipartUploadResult><ETag>\"x-2\"</ETag>"
                                b"</CompleteMultipartUploadResult>")
        elif cmd == "DELETE" and "uploadId" in params:
            with self._lock:
                self.uploads.pop(params["uploadId"][0], None)
            self._reply(h, 204)
        elif cmd == "PUT":
            with self._lock:
                self.objects[path] = body
            self._reply(h, 200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
        elif cmd == "DELETE":
            with self._lock:
                self.objects.pop(path, None)
            self._reply(h, 204)
        elif cmd in ("GET", "HEAD"):
            data = self.objects.get(path)
            if data is None:
                self._error(h, 404, "NoSuchKey", path)
                return
            etag = f'"{hashlib.md5(data).hexdigest()}"'
            rng = h.headers.get("Range")
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
            if m is None:
                self._reply(h, 200, data, {"ETag": etag, "Content-Length": str(len(data))}
                            if cmd == "HEAD" else {"ETag": etag})
                return
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            if start >= len(data):
                self._error(h, 416, "InvalidRange", rng or "")
                return
            if self.range_lie and start > 0:
                start, end = min(start + 1, len(data) - 1), min(end + 1, len(data) - 1)
            self._reply(h, self.range_status, data[start:end + 1],
                        {"ETag": etag, "Content-Range": f"bytes {start}-{end}/{len(data)}"})
        else:
            self._error(h, 405, "MethodNotAllowed", cmd)
