# ruff: noqa: F811  (pytest fixtures are imported by name)
"""Caller reads: the thread waiting in ``completion_future.result()`` reads and parses
the response of a request sent directly (``H1Connection.send_direct``) itself.

These tests check that the hand-over of reading between that thread and the loop keeps
every outcome of the loop-only path: errors instead of hangs when the server closes or
the connection is closed from another thread, late and foreign-thread ``result()``
calls, mixes of waiting and non-waiting callers, callback order and threads."""
from __future__ import annotations

import concurrent.futures
import socket
import struct
import threading

import pytest
from helpers.http_caller import OK_1K, KeepAliveServer, engine, ok, wait_until
from helpers.http_servers import h1_server, leak_check  # noqa: F401

from crtpy.exceptions import AwsCrtError
from crtpy.http import HttpClientConnection, HttpHeaders, HttpRequest

TIMEOUT = 10


def connect(port: int) -> HttpClientConnection:
    return HttpClientConnection.new("127.0.0.1", port).result(TIMEOUT)


def req(path: str = "/", method: str = "GET") -> HttpRequest:
    return HttpRequest(method, path, HttpHeaders([("Host", "localhost")]))


class Events:
    """Records callbacks with their threads."""

    def __init__(self) -> None:
        self.items: list[tuple[str, object, threading.Thread]] = []

    def on_response(self, http_stream, status_code, headers, **kwargs):
        self.items.append(("response", status_code, threading.current_thread()))

    def on_body(self, http_stream, chunk, **kwargs):
        self.items.append(("body", bytes(chunk), threading.current_thread()))

    @property
    def body(self) -> bytes:
        return b"".join(x[1] for x in self.items if x[0] == "body")  # type: ignore[misc]


def get(conn, path="/", method="GET", timeout=TIMEOUT):
    ev = Events()
    s = conn.request(req(path, method), ev.on_response, ev.on_body)
    s.activate()
    return s.completion_future.result(timeout), ev


def warm_up(conn, path="/", n=2):
    """At least ``n`` requests, and more until the connection is in ep mode (a response
    that beats its caller's result() call is read by the loop, and ep mode waits for a
    caller that waited): the next request on it is read by its caller."""
    eng = engine(conn)
    for i in range(50):
        get(conn, path)
        if i + 1 >= n and eng._ep_armed:
            return eng
    raise AssertionError("the connection never went into ep mode")


def answering(special):
    """An ``answer`` for KeepAliveServer: ``special(conn)`` for requests to /special,
    OK_1K for others."""
    def answer(conn, index, head):
        if head.startswith(b"GET /special "):
            return special(conn)
        conn.sendall(OK_1K)
        return True
    return answer


# ---------------------------------------------------------------------------------------
def _gated_replies(holder):
    """An ``answer`` for KeepAliveServer that replies by path, once the client's caller
    reads when ``holder["eng"]`` is set: /size/N, /chunked/N, /split/N (head and body in
    separate writes), HEAD, anything else 404."""
    def answer(conn, index, head):
        line = head.split(b"\r\n", 1)[0].decode()
        method, path, _ = line.split(" ")
        eng = holder.get("eng")  # set once the connection is warmed up
        if eng is not None:
            wait_until(lambda: eng._caller_reading)
        kind, _, arg = path[1:].partition("/")
        if kind == "size":
            n = int(arg)
            reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n
            conn.sendall(reply if method == "HEAD" else reply + b"a" * n)
        elif kind == "split":
            n = int(arg)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Split: 1\r\nContent-Length: %d\r\n\r\n" % n)
            for i in range(0, n, 70_000):
                conn.sendall(b"s" * min(70_000, n - i))
        elif kind == "chunked":
            n = int(arg)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, n, 1000):
                piece = b"c" * min(1000, n - i)
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.sendall(b"0\r\n\r\n")
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")
        return True
    return answer


def test_caller_read_runs_callbacks_in_order_on_the_waiting_thread(leak_check):
    holder: dict = {}
    srv = KeepAliveServer(_gated_replies(holder))
    try:
        conn = connect(srv.port)
        holder["eng"] = eng = warm_up(conn, "/size/10")
        before = eng.caller_reads
        cases = [("/size/0", "GET", 0, b""), ("/size/1", "GET", 1, b"a"), ("/size/1024", "GET", 1024, b"a"),
                 ("/split/100000", "GET", 100_000, b"s"), ("/size/600000", "GET", 600_000, b"a"),
                 ("/split/900000", "GET", 900_000, b"s"), ("/chunked/5000", "GET", 5000, b"c"),
                 ("/size/10", "HEAD", 0, b""), ("/nothing", "GET", 9, None), ("/size/3", "GET", 3, b"a")]
        for path, method, size, fill in cases:
            status, ev = get(conn, path, method)
            assert status == (404 if fill is None else 200)
            kinds = [k for k, _, _ in ev.items]
            assert kinds[0] == "response" and set(kinds[1:]) <= {"body"}, kinds
            assert ev.items[0][1] == status
            assert ev.body == (b"not found" if fill is None else fill * size)
            # read and delivered by the thread that waited
            assert {t for _, _, t in ev.items} == {threading.current_thread()}
        assert eng.caller_reads == before + len(cases)
        assert len(srv._conns) == 1  # one keep-alive connection
        conn.close().result(TIMEOUT)
    finally:
        srv.stop()


def test_no_callbacks_still_completes():
    holder: dict = {}
    srv = KeepAliveServer(_gated_replies(holder))
    try:
        conn = connect(srv.port)
        holder["eng"] = eng = warm_up(conn, "/size/5")
        before = eng.caller_reads
        for _ in range(5):
            s = conn.request(req("/size/2000"))
            s.activate()
            assert s.completion_future.result(TIMEOUT) == 200
            assert s.response_status_code == 200
        assert eng.caller_reads == before + 5
        conn.close().result(TIMEOUT)
    finally:
        srv.stop()


@pytest.mark.parametrize("how", ["nothing", "partial_head", "partial_body", "reset"])
def test_server_closes_during_caller_read_fails_the_stream(how):
    holder: dict = {}

    def misbehave(conn):
        wait_until(lambda: holder["eng"]._caller_reading)
        if how == "partial_head":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
        elif how == "partial_body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + b"x" * 100)
        elif how == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False  # the server closes the connection

    srv = KeepAliveServer(answering(misbehave))
    try:
        conn = connect(srv.port)
        holder["eng"] = eng = warm_up(conn)
        with pytest.raises(AwsCrtError) as info:
            get(conn, "/special")
        assert info.value.name in ("AWS_IO_SOCKET_CLOSED", "AWS_ERROR_HTTP_CONNECTION_CLOSED",
                                   "AWS_IO_SOCKET_CONNECTION_RESET", "AWS_ERROR_HTTP_PROTOCOL_ERROR")
        conn.shutdown_future.exception(TIMEOUT)  # the connection shuts down
        assert not conn.is_open()
        assert eng._direct is None and not eng._caller_reading
    finally:
        srv.stop()


def test_response_ending_at_close_read_by_the_caller():
    holder: dict = {}

    def until_eof(conn):
        wait_until(lambda: holder["eng"]._caller_reading)
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\nall-of-it")
        return False

    srv = KeepAliveServer(answering(until_eof))
    try:
        conn = connect(srv.port)
        holder["eng"] = warm_up(conn)
        status, ev = get(conn, "/special")
        assert status == 200 and ev.body == b"all-of-it"
        conn.shutdown_future.exception(TIMEOUT)
        assert not conn.is_open()
    finally:
        srv.stop()


def test_connection_close_response_then_shutdown():
    holder: dict = {}

    def bye(conn):
        wait_until(lambda: holder["eng"]._caller_reading)
        conn.sendall(ok(b"bye", b"Connection: close\r\n"))
        return False

    srv = KeepAliveServer(answering(bye))
    try:
        conn = connect(srv.port)
        holder["eng"] = eng = warm_up(conn)
        before = eng.caller_reads
        status, ev = get(conn, "/special")
        assert status == 200 and ev.body == b"bye"
        assert eng.caller_reads == before + 1
        assert conn.shutdown_future.exception(TIMEOUT) is None  # a clean close
        assert not conn.is_open()
        with pytest.raises(AwsCrtError):
            get(conn)
    finally:
        srv.stop()


def test_malformed_response_in_caller_read():
    holder: dict = {}

    def garbage(conn):
        wait_until(lambda: holder["eng"]._caller_reading)
        conn.sendall(b"HTTP/1.1 abc\r\n\r\n")
        return True

    srv = KeepAliveServer(answering(garbage))
    try:
        conn = connect(srv.port)
        holder["eng"] = warm_up(conn)
        with pytest.raises(AwsCrtError) as info:
            get(conn, "/special")
        assert info.value.name == "AWS_ERROR_HTTP_PROTOCOL_ERROR"
        conn.shutdown_future.exception(TIMEOUT)
        assert not conn.is_open()
    finally:
        srv.stop()


def test_close_from_another_thread_during_caller_read(leak_check):
    release = threading.Event()
    srv = KeepAliveServer(answering(lambda c: release.wait(TIMEOUT) and False))
    try:
        conn = connect(srv.port)
        eng = warm_up(conn)
        s = conn.request(req("/special"))
        s.activate()

        def closer():
            wait_until(lambda: eng._caller_reading)
            conn.close()

        t = threading.Thread(target=closer)
        t.start()
        with pytest.raises(AwsCrtError) as info:
            s.completion_future.result(TIMEOUT)
        t.join(TIMEOUT)
        assert info.value.name in ("AWS_ERROR_HTTP_CONNECTION_CLOSED", "AWS_IO_SOCKET_CLOSED")
        conn.shutdown_future.result(TIMEOUT)
        assert not conn.is_open()
        assert eng._direct is None and eng._ep is None and not eng._caller_reading
    finally:
        release.set()
        srv.stop()


def test_result_from_another_thread_and_late(h1_server):
    conn = connect(h1_server.port)
    eng = warm_up(conn, "/size/10")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        # result() from another thread while the response is on its way
        for _ in range(5):
            ev = Events()
            s = conn.request(req("/size/3000"), ev.on_response, ev.on_body)
            s.activate()
            waiter = pool.submit(s.completion_future.result, TIMEOUT)
            assert waiter.result(TIMEOUT) == 200
            assert ev.body == b"a" * 3000
            assert threading.current_thread() not in {t for _, _, t in ev.items}
        # result() only after the response is complete (the loop read it)
        for _ in range(3):
            ev = Events()
            done = threading.Event()
            s = conn.request(req("/size/700"), ev.on_response, ev.on_body)
            s.completion_future.add_done_callback(lambda f, done=done: done.set())
            s.activate()
            assert done.wait(TIMEOUT)
            assert pool.submit(s.completion_future.result, 0).result(TIMEOUT) == 200
            assert ev.body == b"a" * 700
    # waiting callers read again afterwards
    before = eng.caller_reads
    for _ in range(3):
        assert get(conn, "/size/10")[0] == 200
    assert eng.caller_reads > before
    conn.close().result(TIMEOUT)


def test_result_timeout_then_the_response():
    release = threading.Event()

    def slow(conn):
        release.wait(TIMEOUT)
        conn.sendall(ok(b"late"))
        return True

    srv = KeepAliveServer(answering(slow))
    try:
        conn = connect(srv.port)
        warm_up(conn)
        ev = Events()
        s = conn.request(req("/special"), ev.on_response, ev.on_body)
        s.activate()
        with pytest.raises(concurrent.futures.TimeoutError):
            s.completion_future.result(0.05)
        release.set()
        assert s.completion_future.result(TIMEOUT) == 200
        assert ev.body == b"late"
        for _ in range(3):  # the connection goes on
            status, ev = get(conn)
            assert status == 200 and ev.body == b"k" * 1024
        conn.close().result(TIMEOUT)
    finally:
        release.set()
        srv.stop()


def test_idle_connection_in_ep_mode_notices_server_close():
    holder: dict = {}

    def close_when_idle(conn):
        eng = holder["eng"]
        wait_until(lambda: eng._caller_reading)
        conn.sendall(OK_1K)
        wait_until(lambda: eng._idle and eng._ep_armed)  # read by the caller: ep mode again
        return False

    srv = KeepAliveServer(answering(close_when_idle))
    try:
        conn = connect(srv.port)
        holder["eng"] = warm_up(conn, n=3)
        assert get(conn, "/special")[0] == 200
        conn.shutdown_future.exception(TIMEOUT)
        assert not conn.is_open()
    finally:
        srv.stop()


def test_mixed_waiting_and_non_waiting_callers(leak_check):
    def answer(conn, index, head):
        conn.sendall(ok(b"%d:" % index + b"m" * (index % 7) * 100))
        return True

    srv = KeepAliveServer(answer)
    loop_threads = set()
    try:
        conn = connect(srv.port)
        eng = engine(conn)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            for i in range(240):
                ev = Events()
                s = conn.request(req(), ev.on_response, ev.on_body)
                mode = i % 4
                if mode == 1:
                    done = threading.Event()
                    s.completion_future.add_done_callback(lambda f, done=done: done.set())
                s.activate()
                if mode == 0:
                    status = s.completion_future.result(TIMEOUT)
                elif mode == 1:
                    assert done.wait(TIMEOUT)
                    status = s.completion_future.result(0)
                elif mode == 2:
                    status = pool.submit(s.completion_future.result, TIMEOUT).result(TIMEOUT)
                else:
                    try:
                        status = s.completion_future.result(0)
                    except concurrent.futures.TimeoutError:
                        status = s.completion_future.result(TIMEOUT)
                assert status == 200
                assert ev.body == b"%d:" % i + b"m" * (i % 7) * 100
                assert ev.items[0][0] == "response"
                loop_threads |= {t.name for _, _, t in ev.items}
        assert eng.caller_reads > 0
        assert not any(name.startswith("crtpy-loop") for name in loop_threads)
        conn.close().result(TIMEOUT)
    finally:
        srv.stop()


def test_threads_sharing_a_connection():
    srv = KeepAliveServer(_gated_replies({}))
    try:
        conn = connect(srv.port)
        warm_up(conn, "/size/1")
        errors: list[BaseException] = []

        def worker(k):
            try:
                for j in range(25):
                    size = 100 * k + j
                    status, ev = get(conn, f"/size/{size}")
                    assert status == 200 and ev.body == b"a" * size
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert len(srv._conns) == 1
        assert get(conn, "/size/5")[1].body == b"aaaaa"
        conn.close().result(TIMEOUT)
    finally:
        srv.stop()


def test_stale_loop_wake_up_keeps_ep_mode():
    """A wake-up of the loop for bytes that a caller has read meanwhile must not take
    reading away from the next caller."""
    holder: dict = {}

    def gated(conn):
        wait_until(lambda: holder["eng"]._caller_reading)
        conn.sendall(ok(b"gated"))
        return True

    srv = KeepAliveServer(answering(gated))
    try:
        conn = connect(srv.port)
        holder["eng"] = eng = warm_up(conn)
        done = concurrent.futures.Future()
        eng.loop.call_soon_threadsafe(lambda: done.set_result(eng._ep_readable()))
        done.result(TIMEOUT)
        assert eng._ep_armed and eng._idle
        before = eng.caller_reads
        status, ev = get(conn, "/special")
        assert status == 200 and ev.body == b"gated"
        assert eng.caller_reads == before + 1
        conn.close().result(TIMEOUT)
    finally:
        srv.stop()


def test_caller_gives_back_in_the_middle_of_a_large_body():
    """result() times out while its thread reads a large body (past the parser): the
    loop reads the rest the same way, and the connection stays in step."""
    holder: dict = {}
    release = threading.Event()
    size = 700_000

    def big(conn):
        eng = holder["eng"]
        wait_until(lambda: eng._caller_reading)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"b" * 300_000)
        wait_until(lambda: eng.raw_body_left and eng.raw_body_left < size - 250_000)
        release.wait(TIMEOUT)
        conn.sendall(b"b" * (size - 300_000))
        return True

    srv = KeepAliveServer(answering(big))
    try:
        conn = connect(srv.port)
        holder["eng"] = warm_up(conn)
        ev = Events()
        s = conn.request(req("/special"), ev.on_response, ev.on_body)
        s.activate()
        with pytest.raises(concurrent.futures.TimeoutError):
            s.completion_future.result(0.3)
        done = threading.Event()
        s.completion_future.add_done_callback(lambda f: done.set())
        release.set()  # the loop reads the rest: nobody waits in result() now
        assert done.wait(TIMEOUT)
        assert s.completion_future.result(0) == 200
        assert ev.body == b"b" * size
        for _ in range(3):
            status, ev = get(conn)
            assert status == 200 and ev.body == b"k" * 1024
        conn.close().result(TIMEOUT)
    finally:
        release.set()
        srv.stop()


def test_slow_server_pauses_the_spin():
    """Callers poll a little before they sleep; a server slower than that makes the
    connection stop spinning for a while (bounded CPU for nothing)."""
    import time

    from crtpy._http import h1
    from crtpy._runtime import spin

    holder: dict = {}

    def slow(conn):
        wait_until(lambda: holder["eng"]._caller_reading)
        time.sleep(20 * h1.SPIN_SEC + 0.01)  # a server that thinks longer than callers spin
        conn.sendall(ok(b"slow"))
        return True

    srv = KeepAliveServer(answering(slow))
    try:
        conn = connect(srv.port)
        holder["eng"] = eng = warm_up(conn)
        paused = False
        for _ in range(3 * spin.MAX_MISSES):
            status, ev = get(conn, "/special")
            assert status == 200 and ev.body == b"slow"
            if eng._spinner.pause:
                paused = True
                break
        assert paused or not spin.ENABLED
        conn.close().result(TIMEOUT)
    finally:
        srv.stop()
