"""``crtpy http URL``: a small curl-like client on crtpy.http.

One request per run: HTTP/1.1, or HTTP/2 (ALPN over TLS, prior knowledge over plain
TCP) with ``--http2``; optional SigV4 signing with the default credentials chain; a
forwarding/tunnelling proxy from ``--proxy`` or the usual environment variables.  The
body goes to stdout (or ``-o FILE``, with a progress bar on a terminal); ``-i`` puts the
status line and headers before it, ``-v`` shows the request, the response head, TLS
details and timings on stderr.
"""
from __future__ import annotations

import argparse
import io
import os
import threading
import time
from typing import Any, BinaryIO, TextIO
from urllib.parse import unquote, urlsplit

from .common import CliError, ProgressBar, describe, env_region, is_tty, write_bytes

_TIMEOUT = 60.0


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "http", parents=parents, help="make an HTTP request (a small curl)",
        description="Send one HTTP request with crtpy.http and print the response body.  Plain "
                    "http:// and https:// URLs; TLS is verified against the system trust store "
                    "unless --cacert or --insecure says otherwise.",
        epilog="examples:\n"
               "  crtpy http https://example.com/ -v\n"
               "  crtpy http -X PUT -d @file.bin -H 'Content-Type: application/octet-stream' URL\n"
               "  crtpy http --sigv4 execute-api --region eu-west-1 https://abc.execute-api..../prod/\n"
               "  crtpy http --http2 -o out.bin https://host/big",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", metavar="URL", help="http:// or https:// URL")
    p.add_argument("-X", "--request", dest="method", metavar="METHOD",
                   help="request method (default GET, or POST with -d)")
    p.add_argument("-H", "--header", dest="headers", action="append", default=[], metavar="'NAME: VALUE'",
                   help="add a request header (repeatable)")
    p.add_argument("-d", "--data", metavar="DATA",
                   help="request body: literal text, @FILE to send a file, @- for standard input")
    p.add_argument("--http2", action="store_true",
                   help="use HTTP/2 (ALPN h2 with fallback to HTTP/1.1 over TLS; prior knowledge over http://)")
    p.add_argument("--sigv4", metavar="SERVICE",
                   help="sign the request with SigV4 for SERVICE, using the default credentials chain")
    p.add_argument("--region", help="signing region (default $AWS_REGION, $AWS_DEFAULT_REGION or us-east-1)")
    p.add_argument("-i", "--include", action="store_true", help="print the status line and headers before the body")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the request, the response head, TLS version, ALPN and timings on stderr")
    p.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE instead of stdout")
    p.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in this PEM file")
    p.add_argument("-k", "--insecure", action="store_true", help="do not verify the server's certificate")
    p.add_argument("-x", "--proxy", metavar="URL",
                   help="proxy (http://[user:pass@]host:port); default $https_proxy/$http_proxy, "
                        "honouring $no_proxy; '' for none")
    p.add_argument("-f", "--fail", action="store_true", help="exit with status 22 on HTTP 400 and above")
    p.add_argument("--timeout", type=float, default=_TIMEOUT, metavar="SECONDS",
                   help=f"give up after this many seconds (default {_TIMEOUT:g})")
    p.set_defaults(run=run)


# --- helpers --------------------------------------------------------------------------------------

def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \t\r\n"):
        raise CliError(f"bad header {text!r} (expected 'Name: value')", 2)
    return name, value.strip()


def _no_proxy(host: str) -> bool:
    value = os.environ.get("no_proxy", os.environ.get("NO_PROXY", ""))
    for entry in (e.strip().lower() for e in value.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.lstrip(".")
        if host.lower() == entry or host.lower().endswith("." + entry):
            return True
    return False


def proxy_url(explicit: str | None, scheme: str, host: str) -> str | None:
    """The proxy to use: ``--proxy`` if given ('' = none), else the environment's."""
    if explicit is not None:
        return explicit or None
    if _no_proxy(host):
        return None
    names = ("https_proxy", "HTTPS_PROXY") if scheme == "https" else ("http_proxy", "HTTP_PROXY")
    for name in names + ("all_proxy", "ALL_PROXY"):
        value = os.environ.get(name)
        if value:
            return value
    return None


def proxy_options(url: str, tls_ctx_factory: Any) -> Any:
    from ..http import HttpProxyAuthenticationType, HttpProxyOptions

    if "://" not in url:
        url = "http://" + url
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise CliError(f"bad proxy URL {url!r} (expected http://host:port)", 2)
    try:
        port = u.port or (443 if u.scheme == "https" else 80)
    except ValueError:
        raise CliError(f"bad port in proxy URL {url!r}", 2) from None
    tls = None
    if u.scheme == "https":
        tls = tls_ctx_factory(["http/1.1"]).new_connection_options()
        tls.set_server_name(u.hostname)
    if u.username is not None:
        return HttpProxyOptions(u.hostname, port, tls_connection_options=tls,
                                auth_type=HttpProxyAuthenticationType.Basic,
                                auth_username=unquote(u.username), auth_password=unquote(u.password or ""))
    return HttpProxyOptions(u.hostname, port, tls_connection_options=tls)


class _FileBody(io.RawIOBase):
    """A file as a request body stream that counts what has been read (for -v)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self.f.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def readinto(self, b: Any) -> int:
        return self.f.readinto(b)  # type: ignore[attr-defined, no-any-return]

    def close(self) -> None:
        self.f.close()
        super().close()


def _body(data: str | None) -> tuple[BinaryIO | None, int | None]:
    """(stream, length) for ``-d``; length None when unknown (stdin)."""
    if data is None:
        return None, None
    if data.startswith("@"):
        path = data[1:]
        if path == "-":
            import sys

            raw = sys.stdin.buffer.read()
            return io.BytesIO(raw), len(raw)
        try:
            f = open(path, "rb")  # noqa: SIM115 - the request body; closed after the exchange
        except FileNotFoundError:
            raise CliError(f"{path}: no such file", 2) from None
        except OSError as e:
            raise CliError(f"cannot read {path}: {e.strerror or e}", 2) from None
        size = os.fstat(f.fileno()).st_size
        return _FileBody(f), size  # type: ignore[return-value]
    raw = data.encode("utf-8")
    return io.BytesIO(raw), len(raw)


def _tls_info(conn: Any) -> dict[str, Any]:
    """TLS version, cipher and ALPN of ``conn``, read on its loop thread (the SSL object
    is in use there; OpenSSL objects are not to be shared across threads)."""
    import concurrent.futures

    from .._net.connect import tls_info

    try:
        impl = conn._impl
        fut: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()

        def read() -> None:
            try:
                fut.set_result(tls_info(impl.transport))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)

        impl.loop.call_soon_threadsafe(read)
        return fut.result(5)
    except Exception:  # noqa: BLE001 - verbose extras only
        return {}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# --- the command ----------------------------------------------------------------------------------

def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    started = time.monotonic()
    u = urlsplit(args.url)
    if u.scheme not in ("http", "https"):
        raise CliError(f"unsupported URL {args.url!r} (use http:// or https://)", 2)
    host = u.hostname
    if not host:
        raise CliError(f"no host in URL {args.url!r}", 2)
    try:
        port = u.port or (443 if u.scheme == "https" else 80)
    except ValueError:
        raise CliError(f"bad port in URL {args.url!r}", 2) from None
    tls = u.scheme == "https"
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    if args.timeout <= 0:
        raise CliError("--timeout must be positive", 2)
    if args.cacert is not None and not os.path.isfile(args.cacert):
        raise CliError(f"--cacert {args.cacert}: no such file", 2)
    headers = [parse_header(h) for h in args.headers]
    method = (args.method or ("POST" if args.data is not None else "GET")).upper()
    body, length = _body(args.data)
    try:
        return _exchange(args, out, err, u, host, port, tls, path, headers, method, body, length, started)
    finally:
        if body is not None:
            body.close()


def _exchange(args: argparse.Namespace, out: TextIO, err: TextIO, u: Any, host: str, port: int, tls: bool,
              path: str, headers: list[tuple[str, str]], method: str, body: BinaryIO | None,
              length: int | None, started: float) -> int:
    from ..http import Http2ClientConnection, HttpClientConnection, HttpHeaders, HttpRequest
    from ..io import ClientBootstrap, ClientTlsContext, DefaultHostResolver, TlsContextOptions

    verbose = args.verbose

    def say(text: str) -> None:
        if verbose:
            err.write(text + "\n")
            err.flush()

    def tls_ctx(alpn: list[str]) -> Any:
        opts = TlsContextOptions()
        if args.cacert:
            opts.override_default_trust_store_from_path(None, args.cacert)
        if args.insecure:
            opts.verify_peer = False
        opts.alpn_list = alpn
        return ClientTlsContext(opts)

    provider = _credentials(args.timeout) if args.sigv4 else None

    # DNS first (crtpy's resolver cache; the connection then finds the answer cached)
    bootstrap = ClientBootstrap.get_or_create_static_default()
    proxy = proxy_url(args.proxy, u.scheme, host)
    t0 = time.monotonic()
    dns_time = None
    if proxy is None:
        addrs = DefaultHostResolver.get_or_create_static_default()._resolve(host).result(args.timeout)
        dns_time = time.monotonic() - t0
        say(f"* Resolved {host} to {', '.join(a.address for a in addrs)} in {_ms(dns_time)}")

    conn_tls = None
    if tls:
        conn_tls = tls_ctx(["h2", "http/1.1"] if args.http2 else ["http/1.1"]).new_connection_options()
        conn_tls.set_server_name(host)
    proxy_opts = proxy_options(proxy, tls_ctx) if proxy else None
    if proxy:
        p = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        say(f"* Using proxy {p.scheme}://{p.hostname}:{p.port or 80}")
    say(f"* Connecting to {host} port {port}{' (TLS)' if tls else ''}")
    t_connect = time.monotonic()
    new = Http2ClientConnection.new if (args.http2 and not tls) else HttpClientConnection.new
    conn = new(host, port, bootstrap=bootstrap, tls_connection_options=conn_tls,
               proxy_options=proxy_opts).result(args.timeout)
    connect_time = time.monotonic() - t_connect
    info = _tls_info(conn) if tls else {}
    h2 = int(conn.version) == 3
    say(f"* Connected in {_ms(connect_time)}{' (TCP + TLS)' if tls else ''}")
    if info:
        say(f"* TLS {info.get('version')}, cipher {info.get('cipher')}, ALPN {info.get('alpn') or '(none)'}")
    say(f"* Using {'HTTP/2' if h2 else 'HTTP/1.1'}")

    req_headers = HttpHeaders()
    names = {n.lower() for n, _ in headers}
    if "host" not in names:
        req_headers.add("Host", u.netloc.rpartition("@")[2])
    if "user-agent" not in names:
        from .. import __version__

        req_headers.add("User-Agent", f"crtpy/{__version__}")
    if "accept" not in names:
        req_headers.add("Accept", "*/*")
    if body is not None and "content-length" not in names and length is not None:
        req_headers.add("Content-Length", str(length))
    for name, value in headers:
        req_headers.add(name, value)
    request = HttpRequest(method, path, req_headers, body)

    if args.sigv4:
        _sign(request, provider, args.sigv4, env_region(args.region), args.timeout)
        say(f"* Signed with SigV4 for {args.sigv4} in {env_region(args.region)}")
    if verbose:
        err.write(f"> {method} {path} {'HTTP/2' if h2 else 'HTTP/1.1'}\n")
        for n, v in request.headers:
            shown = "<redacted>" if n.lower() in ("authorization", "x-amz-security-token", "proxy-authorization") \
                else v
            err.write(f"> {n}: {shown}\n")
        err.write(">\n")
        err.flush()

    # response handling: head to stdout/stderr, body to stdout or a file
    state: dict[str, Any] = {"first_byte": None, "status": None, "bytes": 0}
    sink: Any = None
    bar: ProgressBar | None = None
    lock = threading.Lock()
    if args.output:
        try:
            sink = open(args.output, "wb")  # noqa: SIM115 - closed in the finally below
        except OSError as e:
            conn.close()
            raise CliError(f"cannot write {args.output}: {e.strerror or e}", 2) from None

    def failed(exc: BaseException) -> None:
        """Writing the output failed (closed pipe, full disk): stop the transfer."""
        if state.get("error") is None:
            state["error"] = exc
        conn.close()

    def on_response(http_stream: Any, status_code: int, headers: list[tuple[str, str]], **kw: Any) -> None:
        try:
            head_received(status_code, headers)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            failed(e)

    def head_received(status_code: int, headers: list[tuple[str, str]]) -> None:
        nonlocal bar
        with lock:
            state["first_byte"] = time.monotonic()
            state["status"] = status_code
            head = [f"{'HTTP/2' if h2 else 'HTTP/1.1'} {status_code}"] + [f"{n}: {v}" for n, v in headers]
            if verbose:
                err.write("".join(f"< {line}\n" for line in head) + "<\n")
                err.flush()
            if args.include:
                text = "\r\n".join(head) + "\r\n\r\n"
                if sink is not None:
                    sink.write(text.encode("latin-1", "replace"))
                else:
                    write_bytes(out, text.encode("latin-1", "replace"))
            if sink is not None and is_tty(err):
                total = None
                for n, v in headers:
                    if n.lower() == "content-length" and v.isdigit():
                        total = int(v)
                bar = ProgressBar(err, total)

    def on_body(http_stream: Any, chunk: bytes, **kw: Any) -> None:
        if state.get("error") is not None:
            return
        try:
            with lock:
                state["bytes"] += len(chunk)
                if sink is not None:
                    sink.write(chunk)
                    if bar is not None:
                        bar.add(len(chunk))
                else:
                    write_bytes(out, chunk)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            failed(e)

    try:
        stream = conn.request(request, on_response, on_body)
        stream.activate()
        try:
            stream.completion_future.result(args.timeout)
        except TimeoutError:
            raise CliError(f"no complete response after {args.timeout:g} s") from None
        except Exception:
            if state.get("error") is None:
                raise
        if state.get("error") is not None:
            exc = state["error"]
            if isinstance(exc, BrokenPipeError):
                raise exc
            where = args.output or "standard output"
            raise CliError(f"cannot write {where}: {describe(exc)}")
    finally:
        if sink is not None:
            sink.close()
        conn.close()
    if bar is not None:
        bar.finish()
    try:
        out.flush()
    except (AttributeError, ValueError):
        pass
    total_time = time.monotonic() - started
    if verbose:
        parts = []
        if dns_time is not None:
            parts.append(f"dns {_ms(dns_time)}")
        parts.append(f"connect{'+tls' if tls else ''} {_ms(connect_time)}")
        if state["first_byte"] is not None:
            parts.append(f"first byte {_ms(state['first_byte'] - started)}")
        parts.append(f"total {_ms(total_time)}")
        err.write(f"* {state['bytes']} body bytes; timings: {', '.join(parts)}\n")
        err.flush()
    status = state["status"]
    if args.fail and status is not None and status >= 400:
        err.write(f"crtpy http: error: the server answered HTTP {status}\n")
        return 22
    return 0


def _credentials(timeout: float) -> Any:
    """The default credentials chain, checked up front so a missing credential fails fast."""
    from ..auth import AwsCredentialsProvider

    provider = AwsCredentialsProvider.new_default_chain()
    try:
        provider.get_credentials().result(timeout)
    except Exception as e:  # noqa: BLE001 - one line for "no credentials"
        raise CliError(f"no AWS credentials for --sigv4 (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a "
                       f"profile): {describe(e)}") from None
    return provider


def _sign(request: Any, provider: Any, service: str, region: str, timeout: float) -> None:
    from ..auth import (
        AwsSignatureType,
        AwsSignedBodyHeaderType,
        AwsSigningAlgorithm,
        AwsSigningConfig,
        aws_sign_request,
    )

    config = AwsSigningConfig(
        algorithm=AwsSigningAlgorithm.V4, signature_type=AwsSignatureType.HTTP_REQUEST_HEADERS,
        credentials_provider=provider, region=region, service=service,
        signed_body_header_type=(AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256 if service == "s3"
                                 else AwsSignedBodyHeaderType.NONE))
    aws_sign_request(request, config).result(timeout)
