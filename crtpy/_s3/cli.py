"""``crtpy s3 cp SRC DST``: copy a file to or from S3 with crtpy's S3 client.

``s3_cp(argv)`` parses the arguments (everything after ``cp``) and returns the exit
status: 0 on success, 1 when the transfer failed, 2 for bad arguments.  Errors are one
readable line on stderr.  A live progress bar with throughput goes to stderr when it is a
terminal, plain progress lines otherwise.
"""
from __future__ import annotations

import argparse
import mimetypes
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000 ** 2, "mb": 1000 ** 2, "mib": 1024 ** 2,
          "g": 1000 ** 3, "gb": 1000 ** 3, "gib": 1024 ** 3}


def parse_size(text: str) -> int:
    """``8MiB``, ``8M``, ``5242880`` -> bytes (M/G without "i" are decimal, as in the AWS CLI)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 8MiB, 16M, 5242880)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def parse_s3_url(url: str) -> tuple[str, str] | None:
    if not url.startswith("s3://"):
        return None
    rest = url[5:]
    bucket, _, key = rest.partition("/")
    return bucket, key


class Progress:
    """Progress display fed from on_progress (any thread)."""

    def __init__(self, total: int | None, label: str, stream: TextIO, live: bool) -> None:
        self.total = total
        self.label = label
        self.stream = stream
        self.live = live
        self.done = 0
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._next_line_pct = 10

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            if self.live:
                if now - self._last_draw >= 0.1 or (self.total is not None and self.done >= self.total):
                    self._last_draw = now
                    self._draw(now)
            elif self.total:
                pct = self.done * 100 // self.total
                if pct >= self._next_line_pct:
                    while self._next_line_pct <= pct:
                        self._next_line_pct += 10
                    self.stream.write(f"{self.label}: {pct}% {human(self.done)} of {human(self.total)} "
                                      f"({human(self._rate(now))}/s)\n")
                    self.stream.flush()

    def _rate(self, now: float) -> float:
        return self.done / max(now - self.start, 1e-6)

    def _draw(self, now: float) -> None:
        rate = self._rate(now)
        if self.total:
            frac = min(1.0, self.done / self.total)
            width = 30
            filled = int(frac * width)
            bar = "#" * filled + "-" * (width - filled)
            eta = (self.total - self.done) / rate if rate > 0 else 0
            text = (f"\r{self.label} [{bar}] {frac * 100:5.1f}% {human(self.done)}/{human(self.total)} "
                    f"{human(rate)}/s ETA {eta:4.0f}s ")
        else:
            text = f"\r{self.label} {human(self.done)} {human(rate)}/s "
        self.stream.write(text)
        self.stream.flush()

    def finish(self) -> float:
        elapsed = time.monotonic() - self.start
        if self.live:
            with self._lock:
                self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
        return elapsed


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crtpy s3 cp", description="Copy a local file to S3 or an S3 object to a file.")
    p.add_argument("src", help="local file or s3://bucket/key")
    p.add_argument("dst", help="s3://bucket/key (or s3://bucket/ to keep the file name) or a local path")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (path-style)")
    p.add_argument("--region", default=None, help="signing region (default: $AWS_REGION, "
                   "$AWS_DEFAULT_REGION or us-east-1)")
    p.add_argument("--part-size", type=parse_size, default=None, metavar="SIZE",
                   help="part size, e.g. 8MiB (default 8 MiB; uploads use at least 5 MiB)")
    p.add_argument("--checksum", default=None, metavar="ALGO",
                   help="upload checksum (CRC32, CRC32C, CRC64NVME, SHA1, SHA256, ...); downloads validate "
                        "the server's checksum when this is given")
    p.add_argument("--checksum-location", choices=("header", "trailer"), default="trailer",
                   help="where the upload checksum goes (default trailer)")
    p.add_argument("--no-sign-request", action="store_true", help="send unsigned (anonymous) requests")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.add_argument("--max-connections", type=int, default=None, metavar="N", help="parallel connections")
    return p


class CliError(Exception):
    pass


def _endpoint(args: Any, region: str, bucket: str, key: str) -> tuple[str, str, bool]:
    """(Host header, request path, tls) for bucket/key."""
    qkey = quote(key, safe="/~")
    if args.endpoint_url:
        u = urlsplit(args.endpoint_url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise CliError(f"--endpoint-url must be http(s)://host[:port], not {args.endpoint_url!r}")
        prefix = u.path.rstrip("/")
        return u.netloc, f"{prefix}/{bucket}/{qkey}", u.scheme == "https"
    return f"{bucket}.s3.{region}.amazonaws.com", f"/{qkey}", True


def _describe(exc: BaseException) -> str:
    from ..s3 import S3ResponseError
    from . import xml as X

    if isinstance(exc, S3ResponseError):
        code = X.error_code(exc.body)
        where = f" ({exc.operation_name})" if exc.operation_name else ""
        msg = f"HTTP {exc.status_code}{where}"
        if code:
            msg += f": {code}"
            m = re.search(rb"<Message>([^<]*)</Message>", exc.body or b"")
            if m:
                msg += f" - {m.group(1).decode('utf-8', 'replace')}"
        return f"{msg} [{exc.name}]"
    name = getattr(exc, "name", None)
    message = getattr(exc, "message", None) or str(exc)
    return f"{message} [{name}]" if name else message


def s3_cp(argv: Sequence[str], *, stderr: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Run ``crtpy s3 cp`` with ``argv`` (the arguments after ``cp``); returns the exit status."""
    err = stderr if stderr is not None else sys.stderr
    out = stdout if stdout is not None else sys.stdout
    parser = _build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    try:
        return _run(args, err, out)
    except CliError as e:
        err.write(f"crtpy s3 cp: error: {e}\n")
        return 2 if "must" in str(e) or "not supported" in str(e) else 1
    except KeyboardInterrupt:
        err.write("\ncrtpy s3 cp: interrupted\n")
        return 130


def _run(args: Any, err: TextIO, out: TextIO) -> int:
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

    src_s3, dst_s3 = parse_s3_url(args.src), parse_s3_url(args.dst)
    if src_s3 and dst_s3:
        raise CliError("copying between two S3 locations is not supported")
    if not src_s3 and not dst_s3:
        raise CliError("one of SRC and DST must be an s3://bucket/key URL (copying local files is not supported)")
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    algo = None
    if args.checksum:
        try:
            algo = S3ChecksumAlgorithm[args.checksum.upper().replace("-", "").replace("_", "")]
        except KeyError:
            raise CliError(f"--checksum must be one of {', '.join(a.name for a in S3ChecksumAlgorithm)}") from None
    if args.part_size is not None and args.part_size < 1:
        raise CliError("--part-size must be positive")
    upload = dst_s3 is not None
    if dst_s3 is not None:
        bucket, key = dst_s3
        local = args.src
        if not os.path.isfile(local):
            raise CliError(f"{local}: no such file")
        if not key or key.endswith("/"):
            key += os.path.basename(local)
    else:
        assert src_s3 is not None  # one of SRC and DST is an S3 URL (checked above)
        bucket, key = src_s3
        local = args.dst
        if not key or key.endswith("/"):
            raise CliError("the source must name an object (s3://bucket/key)")
        if os.path.isdir(local) or local.endswith(os.sep):
            local = os.path.join(local, os.path.basename(key))
        parent = os.path.dirname(os.path.abspath(local))
        if not os.path.isdir(parent):
            raise CliError(f"{parent}: no such directory")
    if not bucket:
        raise CliError("the S3 URL must name a bucket (s3://bucket/key)")
    host, path, tls = _endpoint(args, region, bucket, key)

    signing = None
    if not args.no_sign_request:
        provider = AwsCredentialsProvider.new_default_chain()
        try:
            provider.get_credentials().result(15)
        except Exception as e:  # noqa: BLE001 - no credentials: say so in one line
            raise CliError(f"no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                           f"a profile, or use --no-sign-request): {_describe(e)}") from None
        signing = create_default_s3_signing_config(region=region, credential_provider=provider)
    client = S3Client(region=region, signing_config=signing,
                      tls_mode=S3RequestTlsMode.ENABLED if tls else S3RequestTlsMode.DISABLED,
                      part_size=args.part_size, max_active_connections_override=args.max_connections)
    client._impl.progress_step = 256 * 1024  # a smooth bar, whatever the part size
    headers: list[tuple[str, str]] = [("Host", host)]
    live = err.isatty() and not args.no_progress
    show = not args.no_progress
    url = f"s3://{bucket}/{key}"
    result: dict[str, Any] = {}

    if upload:
        size = os.path.getsize(local)
        ctype = mimetypes.guess_type(local)[0] or "application/octet-stream"
        headers += [("Content-Length", str(size)), ("Content-Type", ctype)]
        progress = Progress(size, "upload", err, live)
        checksum = S3ChecksumConfig(algorithm=algo, location=S3ChecksumLocation.TRAILER
                                    if args.checksum_location == "trailer" else S3ChecksumLocation.HEADER) \
            if algo is not None else None
        req = client.make_request(type=S3RequestType.PUT_OBJECT, request=HttpRequest("PUT", path, HttpHeaders(headers)),
                                  send_filepath=local, checksum_config=checksum,
                                  on_progress=(lambda progress, **kw: prog.add(progress)) if show else None)
        prog = progress
        what = f"upload: {local} to {url}"
    else:
        progress = Progress(None, "download", err, live)
        prog = progress

        def on_headers(status_code: int, headers: list[tuple[str, str]], **kw: Any) -> None:
            for n, v in headers:
                if n.lower() == "content-length":
                    prog.total = int(v)
            result["status"] = status_code

        checksum = S3ChecksumConfig(validate_response=True) if algo is not None else None
        req = client.make_request(type=S3RequestType.GET_OBJECT, request=HttpRequest("GET", path, HttpHeaders(headers)),
                                  recv_filepath=local, checksum_config=checksum, on_headers=on_headers,
                                  on_done=lambda **kw: result.update(kw),
                                  on_progress=(lambda progress, **kw: prog.add(progress)) if show else None)
        size = None
        what = f"download: {url} to {local}"
    try:
        while True:
            try:
                exc = req.finished_future.exception(0.25)
                break
            except TimeoutError:
                continue
    except KeyboardInterrupt:
        req.cancel()
        req.finished_future.exception(30)
        raise
    elapsed = progress.finish() if show else None
    if exc is not None:
        err.write(f"crtpy s3 cp: error: {what} failed: {_describe(exc)}\n")
        return 1
    nbytes = size if upload else (prog.total if prog.total is not None else os.path.getsize(local))
    if elapsed is None:
        elapsed = time.monotonic() - progress.start
    extra = ""
    if not upload and result.get("did_validate_checksum"):
        extra = f", {result['checksum_validation_algorithm'].name} checksum verified"
    out.write(f"{what} ({human(nbytes or 0)} in {elapsed:.2f} s, {human((nbytes or 0) / max(elapsed, 1e-6))}/s"
              f"{extra})\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m crtpy._s3.cli cp SRC DST ...`` (the coordinator wires ``crtpy s3 cp``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["cp"]:
        args = args[1:]
    return s3_cp(args)


if __name__ == "__main__":
    sys.exit(main())
