"""GET_OBJECT against a scriptable loopback server that answers some ranged GETs wrongly
(extra bytes before the range's, a short or cut body, another range than the one asked
for), and user callbacks that raise: what on_body / the file receives is the object or
the request fails, never wrong bytes reported as a success."""
from __future__ import annotations

import os
import re
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers.loopback_server import LoopbackServer
from helpers.s3_servers import http_request, make_client

from crtpy._test import check_for_leaks
from crtpy.exceptions import AwsCrtError
from crtpy.s3 import S3RequestType, S3RetryConfig

MIB = 1024 * 1024
PART = MIB
TIMEOUT = 60
#: overrides for one reply, from the hook: status, content_range (None: no header),
#: body, prefix (bytes before the body), cut (close after this many body bytes)
Hook = Callable[[dict[str, Any]], dict[str, Any]]


class RangeServer:
    """HTTP/1.1 keep-alive server on 127.0.0.1 answering GETs of one object (any path),
    ranges with 206 + Content-Range; ``hook(ctx)`` may change each reply (ctx: start,
    end, attempt: how many times this range was asked for)."""

    def __init__(self, data: bytes, hook: Hook | None = None) -> None:
        self.data = data
        self.hook: Hook = hook or (lambda ctx: {})
        self.attempts: dict[tuple[int, int], int] = defaultdict(int)
        self.lock = threading.Lock()
        self._server = LoopbackServer(self._serve_one, poll_interval=0.05)
        self.port = self._server.port

    def close(self) -> None:
        self._server.close()

    def _serve_one(self, rfile: Any, sock: socket.socket) -> bool:
        line = rfile.readline()
        if not line:
            return False
        headers: dict[str, str] = {}
        while True:
            h = rfile.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if int(headers.get("content-length") or 0):
            rfile.read(int(headers["content-length"]))
        total = len(self.data)
        rng = headers.get("range")
        if rng:
            m = re.match(r"bytes=(\d+)-(\d+)?", rng)
            assert m is not None
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else total - 1, total - 1)
        else:
            start, end = 0, total - 1
        with self.lock:
            self.attempts[(start, end)] += 1
            attempt = self.attempts[(start, end)]
        ov = self.hook({"start": start, "end": end, "attempt": attempt}) or {}
        if rng and start >= total:
            status, body, content_range = 416, b"", f"bytes */{total}"
        else:
            status, body = (206 if rng else 200), self.data[start:end + 1]
            content_range = f"bytes {start}-{end}/{total}" if rng else None
        status = ov.get("status", status)
        content_range = ov.get("content_range", content_range)
        body = ov.get("prefix", b"") + ov.get("body", body)
        hdrs = [("ETag", '"e1"'), ("Content-Length", str(len(body)))]
        if content_range is not None:
            hdrs.append(("Content-Range", content_range))
        sock.sendall((f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n").encode())
        cut = ov.get("cut")
        if cut is not None:
            sock.sendall(body[:cut])
            sock.shutdown(socket.SHUT_RDWR)
            return False
        sock.sendall(body)
        return True


@pytest.fixture
def serve() -> Iterator[Callable[[bytes, Hook | None], RangeServer]]:
    servers: list[RangeServer] = []

    def start(data: bytes, hook: Hook | None = None) -> RangeServer:
        srv = RangeServer(data, hook)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


class Events:
    """The callbacks of one request, in the order they ran."""

    def __init__(self, raise_in_body: Callable[[int], BaseException | None] | None = None,
                 raise_in_headers: BaseException | None = None) -> None:
        self.log: list[tuple[str, Any]] = []
        self.chunks: list[tuple[int, bytes]] = []
        self.threads: set[str] = set()
        self._raise_in_body = raise_in_body
        self._raise_in_headers = raise_in_headers

    def on_headers(self, status_code: int, headers: Any, **_: Any) -> None:
        self.log.append(("headers", status_code))
        self.threads.add(threading.current_thread().name)
        if self._raise_in_headers is not None:
            raise self._raise_in_headers

    def on_body(self, chunk: Any, offset: int, **_: Any) -> None:
        self.log.append(("body", offset))
        self.chunks.append((offset, bytes(chunk)))
        self.threads.add(threading.current_thread().name)
        if self._raise_in_body is not None:
            exc = self._raise_in_body(offset)
            if exc is not None:
                raise exc

    def on_done(self, **kwargs: Any) -> None:
        self.log.append(("done", kwargs))
        self.threads.add(threading.current_thread().name)

    def body(self) -> bytes:
        pos = 0
        for offset, chunk in self.chunks:
            assert offset == pos, f"on_body at {offset}, expected {pos}"
            pos += len(chunk)
        return b"".join(c for _, c in self.chunks)

    def done(self) -> dict[str, Any]:
        done = [kw for kind, kw in self.log if kind == "done"]
        assert len(done) == 1
        assert self.log[-1][0] == "done", "callbacks after on_done"
        assert all(not t.startswith("crtpy-loop") for t in self.threads)
        return done[0]


def _get(port: int, events: Events, recv_filepath: str | None = None, max_retries: int = 3) -> Any:
    client = make_client(port, part_size=PART,
                         retry_config=S3RetryConfig(max_retries=max_retries, backoff_scale_factor_ms=5))
    kwargs: dict[str, Any] = {"on_done": events.on_done, "on_headers": events.on_headers}
    if recv_filepath is not None:
        kwargs["recv_filepath"] = recv_filepath
    else:
        kwargs["on_body"] = events.on_body
    req = client.make_request(type=S3RequestType.GET_OBJECT, request=http_request("GET", port, "bucket", "k"),
                              **kwargs)
    exc = req.finished_future.exception(TIMEOUT)
    del req, client
    return exc


# -- 1. an attempt that fails the part's check hands nothing on ------------------------------------
def _first_attempt(scenario: str, data: bytes) -> Hook:
    """Every part after part 0 answered wrongly once (``scenario``), right on its retry."""
    def hook(ctx: dict[str, Any]) -> dict[str, Any]:
        if ctx["start"] == 0 or ctx["attempt"] > 1:
            return {}
        body = data[ctx["start"]:ctx["end"] + 1]
        if scenario == "junk_before":  # the right Content-Range, 10 bytes too many in front
            return {"prefix": b"J" * 10}
        if scenario == "short":
            return {"body": body[:-10]}
        if scenario == "cut":
            return {"cut": len(body) // 2}
        return {}
    return hook


@pytest.mark.parametrize("scenario", ["normal", "junk_before", "short", "cut"])
@pytest.mark.parametrize("to_file", [False, True])
def test_a_part_failing_its_check_is_retried_and_never_delivered(serve, tmp_path, scenario, to_file):
    data = os.urandom(4 * PART + 333)
    srv = serve(data, _first_attempt(scenario, data))
    events = Events()
    out = str(tmp_path / "out") if to_file else None
    assert _get(srv.port, events, out) is None
    assert events.done()["error"] is None
    _assert_received(events, out, data)
    retried = sum(1 for (s, _), n in srv.attempts.items() if s > 0 and n > 1)
    assert retried == (0 if scenario == "normal" else 4)
    check_for_leaks(timeout_sec=10.0)


def test_only_a_reply_framed_by_the_parts_length_goes_on_as_it_arrives():
    """Pieces of an attempt go on before its check only when its Content-Length is the
    part's length and the body is not chunked."""
    from crtpy._s3 import meta

    got: list[tuple[bytes, int]] = []

    class Owner:
        hold = False

        def hand_on(self, chunk: bytes, offset: int) -> None:
            got.append((chunk, offset))

    bp = meta._BodyPart(Owner(), 1, 100, 10)  # type: ignore[arg-type]
    bp.streaming = True
    rng = ("Content-Range", "bytes 100-109/300")
    for headers in ([rng], [rng, ("Content-Length", "20")], [rng, ("Content-Length", "9")],
                    [rng, ("Content-Length", "x")], [rng, ("Content-Length", "10"), ("Transfer-Encoding", "chunked")]):
        bp.new_attempt()
        bp.on_head(206, headers)
        bp.feed(b"x" * 10)
        assert not bp.verified and got == []
    bp.new_attempt()
    bp.on_head(206, [rng, ("content-length", "10")])
    bp.feed(b"y" * 10)
    assert got == [(b"y" * 10, 100)]


# -- 2. a reply holding another range than the one asked for -------------------------------------
def _range_reply(kind: str, data: bytes, part_idx: int, always: bool) -> Hook:
    def hook(ctx: dict[str, Any]) -> dict[str, Any]:
        if ctx["start"] != part_idx * PART or (not always and ctx["attempt"] > 1):
            return {}
        if kind == "other":  # the next part's range and bytes: the same length
            s = (part_idx + 1) * PART
            return {"content_range": f"bytes {s}-{s + PART - 1}/{len(data)}", "body": data[s:s + PART]}
        if kind == "unreadable":
            return {"content_range": "bytes x"}
        return {"content_range": None}  # "missing"
    return hook


def _consistent(events: Events, data: bytes) -> None:
    """Whatever reached on_body is the object's bytes at their offsets."""
    for offset, chunk in events.chunks:
        assert chunk == data[offset:offset + len(chunk)]


@pytest.mark.parametrize("part_idx", [0, 2])
@pytest.mark.parametrize("kind", ["other", "unreadable"])
@pytest.mark.parametrize("to_file", [False, True])
def test_a_range_reply_with_another_content_range_fails_after_retries(serve, tmp_path, part_idx, kind, to_file):
    data = os.urandom(4 * PART + 333)
    srv = serve(data, _range_reply(kind, data, part_idx, always=True))
    events = Events()
    exc = _get(srv.port, events, str(tmp_path / "out") if to_file else None, max_retries=2)
    assert isinstance(exc, AwsCrtError) and exc.name == "AWS_ERROR_S3_INVALID_CONTENT_RANGE_HEADER"
    done = events.done()
    assert done["error"].name == exc.name and done["status_code"] is None
    assert srv.attempts[(part_idx * PART, (part_idx + 1) * PART - 1)] == 3  # retried, like the reference
    _consistent(events, data)
    check_for_leaks(timeout_sec=10.0)


def _assert_received(events: Any, out: str | None, data: bytes) -> None:
    """The object arrived whole: in the file ``out``, else through on_body."""
    if out is not None:
        with open(out, "rb") as f:
            assert f.read() == data
    else:
        assert events.body() == data


@pytest.mark.parametrize("part_idx", [0, 2])
@pytest.mark.parametrize("to_file", [False, True])
def test_a_range_reply_with_another_content_range_once_is_retried(serve, tmp_path, part_idx, to_file):
    data = os.urandom(4 * PART + 333)
    srv = serve(data, _range_reply("other", data, part_idx, always=False))
    events = Events()
    out = str(tmp_path / "out")
    assert _get(srv.port, events, out if to_file else None) is None
    _assert_received(events, out if to_file else None, data)
    assert srv.attempts[(part_idx * PART, (part_idx + 1) * PART - 1)] == 2


@pytest.mark.parametrize("to_file", [False, True])
def test_a_206_without_content_range_is_taken_as_the_range_asked_for(serve, tmp_path, to_file):
    """As the reference does (its length is still checked)."""
    data = os.urandom(4 * PART + 333)
    srv = serve(data, _range_reply("missing", data, 2, always=True))
    events = Events()
    out = str(tmp_path / "out")
    assert _get(srv.port, events, out if to_file else None) is None
    _assert_received(events, out if to_file else None, data)


# -- 3. on_headers / on_body raising fails the request with that exception ----------------------
class Boom(Exception):
    pass


def _check_failed_with(events: Events, exc: Any, raised: BaseException) -> None:
    assert exc is raised  # the finished future's exception: the very object raised
    done = events.done()
    assert done["error"] is raised
    assert done["status_code"] is None and done["error_headers"] is None and done["error_body"] is None
    assert done["did_validate_checksum"] is False
    # its traceback holds crtpy's frames (the callback worker's), and so the request and
    # its client: drop it so that the leak check sees them released
    raised.__traceback__ = None


@pytest.mark.parametrize("where", ["first_chunk", "part_2", "last_chunk"])
def test_on_body_raising_fails_the_request_with_its_exception(serve, where):
    data = os.urandom(4 * PART + 333)
    srv = serve(data)
    raised = Boom(where)
    fired: list[int] = []

    def raise_in_body(offset: int) -> BaseException | None:
        if fired:
            return None
        chunk_end = offset + len(events.chunks[-1][1])
        if (where == "first_chunk" or (where == "part_2" and offset >= 2 * PART + PART // 2)
                or (where == "last_chunk" and chunk_end == len(data))):
            fired.append(offset)
            return raised
        return None

    events = Events(raise_in_body=raise_in_body)
    exc = _get(srv.port, events)
    _check_failed_with(events, exc, raised)
    # nothing after the call that raised but on_done
    assert [kind for kind, _ in events.log[-2:]] == ["body", "done"] and events.log[-2][1] == fired[0]
    _consistent(events, data)
    check_for_leaks(timeout_sec=10.0)
    assert events.log[-1][0] == "done"


def test_on_headers_raising_fails_the_request_before_any_body(serve):
    data = os.urandom(3 * PART + 7)
    srv = serve(data)
    raised = Boom("headers")
    events = Events(raise_in_headers=raised)
    exc = _get(srv.port, events)
    _check_failed_with(events, exc, raised)
    assert [kind for kind, _ in events.log] == ["headers", "done"]
    check_for_leaks(timeout_sec=10.0)


@pytest.mark.parametrize("raise_in", ["headers", "body"])
def test_a_default_request_fails_with_what_its_callback_raised(serve, raise_in):
    data = os.urandom(100_000)
    srv = serve(data)
    raised = Boom(raise_in)
    events = Events(raise_in_body=(lambda offset: raised) if raise_in == "body" else None,
                    raise_in_headers=raised if raise_in == "headers" else None)
    client = make_client(srv.port)
    req = client.make_request(type=S3RequestType.DEFAULT, operation_name="GetObject",
                              request=http_request("GET", srv.port, "bucket", "k"), on_headers=events.on_headers,
                              on_body=events.on_body, on_done=events.on_done)
    exc = req.finished_future.exception(TIMEOUT)
    _check_failed_with(events, exc, raised)
    assert [kind for kind, _ in events.log] == (["headers", "done"] if raise_in == "headers"
                                                 else ["headers", "body", "done"])
