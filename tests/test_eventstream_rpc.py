"""Event-stream RPC client against the project's own loopback server (plain and TLS),
with the reference client as an oracle for one full scenario."""
from __future__ import annotations

import queue
import ssl
import threading
from typing import Any

import pytest
from helpers.certs import pki  # noqa: F401 - fixture
from helpers.eventstream_server import (
    CONNECT,
    PING,
    PING_RESPONSE,
    PROTOCOL_ERROR,
    RpcServer,
    rpc_frame,
)

from crtpy.eventstream import Header
from crtpy.eventstream.rpc import (
    ClientConnection,
    ClientConnectionHandler,
    ClientContinuation,
    ClientContinuationHandler,
    MessageFlag,
    MessageType,
)
from crtpy.exceptions import AwsCrtError

TIMEOUT = 10.0


def headers_dict(headers):
    return {h.name: h.value for h in headers}


class ConnHandler(ClientConnectionHandler):
    def __init__(self) -> None:
        self.events: queue.Queue[tuple] = queue.Queue()
        self.log: list[tuple] = []
        self.connection: ClientConnection | None = None
        self.threads: set = set()

    def _put(self, event: tuple) -> None:
        self.threads.add(threading.current_thread().name)
        self.log.append(event)
        self.events.put(event)

    def on_connection_setup(self, connection, error, **kwargs) -> None:
        self.connection = connection
        self._put(("setup", connection, error))

    def on_connection_shutdown(self, reason, **kwargs) -> None:
        self._put(("shutdown", reason))

    def on_protocol_message(self, headers, payload, message_type, flags, **kwargs) -> None:
        self._put(("protocol", headers_dict(headers), payload, message_type, flags))

    def next(self, kind: str | None = None) -> tuple:
        while True:
            event = self.events.get(timeout=TIMEOUT)
            if kind is None or event[0] == kind:
                return event


class StreamHandler(ClientContinuationHandler):
    def __init__(self, log: list | None = None, name: str = "") -> None:
        self.events: queue.Queue[tuple] = queue.Queue()
        self.shared_log = log
        self.name = name
        self.continuation: ClientContinuation | None = None

    def on_continuation_message(self, headers, payload, message_type, flags, **kwargs) -> None:
        event = ("message", headers_dict(headers), payload, message_type, flags)
        if self.shared_log is not None:
            self.shared_log.append((self.name,) + event)
        self.events.put(event)

    def on_continuation_closed(self, **kwargs) -> None:
        if self.shared_log is not None:
            self.shared_log.append((self.name, "closed"))
        self.events.put(("closed",))

    def next(self) -> tuple:
        return self.events.get(timeout=TIMEOUT)


@pytest.fixture
def server():
    with RpcServer() as srv:
        yield srv


def open_connection(port: int, tls=None, payload: bytes = b"") -> tuple:
    handler = ConnHandler()
    ClientConnection.connect(handler=handler, host_name="127.0.0.1", port=port,
                             tls_connection_options=tls).result(TIMEOUT)
    _kind, connection, error = handler.next("setup")
    assert error is None and connection is not None
    connection.send_protocol_message(message_type=MessageType.CONNECT, payload=payload,
                                     headers=[Header.from_string(":version", "0.1.0")]).result(TIMEOUT)
    ack = handler.next("protocol")
    assert ack[3] == MessageType.CONNECT_ACK
    return connection, handler, ack


def close(connection: ClientConnection) -> None:
    connection.close().exception(TIMEOUT)


# -- connection level ---------------------------------------------------------------------------
def test_connect_ack_ping_and_close(server, leak_check):
    connection, handler, ack = open_connection(server.port)
    assert ack[4] == MessageFlag.CONNECTION_ACCEPTED
    assert ack[1]["greeting"] == "hello" and ack[2] == b"ack"
    assert ack[1][":message-type"] == MessageType.CONNECT_ACK
    assert connection.is_open()
    assert connection.host_name == "127.0.0.1" and connection.port == server.port
    received = server.connection().wait_for(lambda m: m.message_type == CONNECT)
    assert received.headers[":version"] == "0.1.0" and received.stream_id == 0

    flushed = []
    fut = connection.send_protocol_message(message_type=MessageType.PING, payload=b"hi",
                                           headers=[Header.from_string("k", "v")],
                                           on_flush=lambda error, **kw: flushed.append(error))
    assert fut.result(TIMEOUT) is None
    _kind, headers, payload, mtype, _flags = handler.next("protocol")
    assert (payload, mtype, headers["k"]) == (b"hi", MessageType.PING_RESPONSE, "v")
    assert flushed == [None]

    assert connection.close() is connection.shutdown_future
    assert not connection.is_open()  # at once, before the shutdown completes
    assert connection.shutdown_future.result(TIMEOUT) is None
    assert handler.next("shutdown") == ("shutdown", None)
    assert not connection.is_open()
    assert handler.log[0][0] == "setup"
    assert handler.threads and all(name.startswith("crtpy-callback") for name in handler.threads)
    # sending after close fails through the future (and on_flush)
    errors = []
    fut = connection.send_protocol_message(message_type=MessageType.PING,
                                           on_flush=lambda error, **kw: errors.append(error))
    with pytest.raises(AwsCrtError) as info:
        fut.result(TIMEOUT)
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_RPC_CONNECTION_CLOSED"
    assert server.connection().closed.wait(TIMEOUT)


def test_close_sends_what_was_queued_first(server, leak_check):
    connection, _handler, _ = open_connection(server.port)
    cont = connection.new_stream(StreamHandler())
    # a stream the server never answers, so nothing flows back while the client closes
    futures = [cont.activate(operation="silent", message_type=MessageType.APPLICATION_MESSAGE, payload=b"0")]
    futures += [cont.send_message(message_type=MessageType.APPLICATION_MESSAGE, payload=str(i).encode())
                for i in range(1, 50)]
    connection.close()
    for f in futures:
        assert f.result(TIMEOUT) is None
    assert connection.shutdown_future.result(TIMEOUT) is None
    assert cont.closed_future.result(TIMEOUT) is None
    sc = server.connection()
    sc.wait_for(lambda m: m.payload == b"49")
    assert [m.payload for m in sc.received if m.stream_id == 1] == [str(i).encode() for i in range(50)]


def test_connect_refused_by_server_ack(server, leak_check):
    server.reject = True
    connection, handler, ack = open_connection(server.port, payload=b"reject")
    assert not ack[4] & MessageFlag.CONNECTION_ACCEPTED
    _kind, reason = handler.next("shutdown")
    assert isinstance(reason, AwsCrtError) and reason.name == "AWS_IO_SOCKET_CLOSED"
    with pytest.raises(AwsCrtError):
        connection.shutdown_future.result(TIMEOUT)
    assert not connection.is_open()


def test_tcp_connection_refused(leak_check):
    with RpcServer() as srv:
        port = srv.port
    handler = ConnHandler()
    future = ClientConnection.connect(handler=handler, host_name="127.0.0.1", port=port)
    with pytest.raises(AwsCrtError) as info:
        future.result(TIMEOUT)
    assert info.value.name == "AWS_IO_SOCKET_CONNECTION_REFUSED"
    assert handler.next() == ("setup", None, info.value)
    with pytest.raises(queue.Empty):
        handler.events.get(timeout=0.2)  # nothing after a failed setup


def test_bad_port_and_arguments(leak_check):
    handler = ConnHandler()
    with pytest.raises(AwsCrtError) as info:
        ClientConnection.connect(handler=handler, host_name="127.0.0.1", port=70000).result(TIMEOUT)
    assert info.value.name == "AWS_IO_SOCKET_INVALID_ADDRESS"
    with pytest.raises(TypeError):
        ClientConnection.connect(handler=handler, host_name="127.0.0.1", port="80")  # type: ignore[arg-type]


def test_messages_before_connect_ack_are_protocol_errors(server, leak_check):
    handler = ConnHandler()
    ClientConnection.connect(handler=handler, host_name="127.0.0.1", port=server.port).result(TIMEOUT)
    connection = handler.next("setup")[1]
    fut = connection.send_protocol_message(message_type=MessageType.PING)
    with pytest.raises(AwsCrtError) as info:
        fut.result(TIMEOUT)
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_RPC_PROTOCOL_ERROR"
    _kind, reason = handler.next("shutdown")
    assert reason.name == "AWS_ERROR_EVENT_STREAM_RPC_PROTOCOL_ERROR"
    assert not connection.is_open()


def test_second_connect_is_a_protocol_error(server, leak_check):
    connection, handler, _ = open_connection(server.port)
    with pytest.raises(AwsCrtError) as info:
        connection.send_protocol_message(message_type=MessageType.CONNECT).result(TIMEOUT)
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_RPC_PROTOCOL_ERROR"
    assert handler.next("shutdown")[1].name == "AWS_ERROR_EVENT_STREAM_RPC_PROTOCOL_ERROR"


def test_server_ping_is_delivered_not_answered(server, leak_check):
    connection, handler, _ = open_connection(server.port)
    stream = StreamHandler()
    cont = connection.new_stream(stream)
    cont.activate(operation="ping_me", message_type=MessageType.APPLICATION_MESSAGE, payload=b"x").result(TIMEOUT)
    _kind, _headers, payload, mtype, _flags = handler.next("protocol")
    assert (mtype, payload) == (MessageType.PING, b"are you there")
    assert stream.next()[2] == b"x"
    # our own ping goes out after the point where an automatic answer would have been
    connection.send_protocol_message(message_type=MessageType.PING, payload=b"mine").result(TIMEOUT)
    assert handler.next("protocol")[3] == MessageType.PING_RESPONSE
    sc = server.connection()
    sc.wait_for(lambda m: m.message_type == PING and m.payload == b"mine")
    assert not [m for m in sc.received if m.message_type == PING_RESPONSE]
    close(connection)


# -- streams ---------------------------------------------------------------------------------------
def test_concurrent_continuations_messages_both_ways(server, leak_check):
    connection, _handler, _ = open_connection(server.port)
    n_streams, n_messages = 6, 15
    handlers = [StreamHandler() for _ in range(n_streams)]
    continuations = [connection.new_stream(h) for h in handlers]
    barrier = threading.Barrier(n_streams)
    failures: list = []

    def drive(i: int) -> None:
        try:
            barrier.wait(TIMEOUT)
            cont = continuations[i]
            futures = [cont.activate(operation="echo", message_type=MessageType.APPLICATION_MESSAGE,
                                     payload=f"{i}:0".encode(),
                                     headers=[Header.from_int32("stream", i)])]
            for j in range(1, n_messages):
                flags = MessageFlag.TERMINATE_STREAM if j == n_messages - 1 else MessageFlag.NONE
                futures.append(cont.send_message(message_type=MessageType.APPLICATION_MESSAGE,
                                                 payload=f"{i}:{j}".encode(), flags=flags))
            for f in futures:
                f.result(TIMEOUT)
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(n_streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 2)
    assert not failures
    for i, h in enumerate(continuations):
        assert h.closed_future.result(TIMEOUT) is None
        assert h.is_closed()
    # every echo that arrived before our TERMINATE_STREAM was flushed is delivered in order
    for i, h in enumerate(handlers):
        events = []
        while True:
            e = h.next()
            events.append(e)
            if e[0] == "closed":
                break
        payloads = [e[2] for e in events if e[0] == "message"]
        assert payloads == [f"{i}:{j}".encode() for j in range(len(payloads))]
        assert all(e[1]["echo"] is True for e in events if e[0] == "message")
    # the server saw every message, and stream ids increasing in activation order
    sc = server.connection()
    sc.wait_for(lambda m: sum(1 for x in sc.received if x.stream_id > 0) == n_streams * n_messages)
    stream_ids = [m.stream_id for m in sc.received if "operation" in m.headers]
    assert stream_ids == sorted(stream_ids) == list(range(1, n_streams + 1))
    by_stream: dict = {}
    for m in sc.received:
        if m.stream_id > 0:
            by_stream.setdefault(m.stream_id, []).append(m)
    for msgs in by_stream.values():
        i = msgs[0].headers["stream"]
        assert [m.payload for m in msgs] == [f"{i}:{j}".encode() for j in range(n_messages)]
        assert msgs[-1].flags == MessageFlag.TERMINATE_STREAM
        assert msgs[0].headers["operation"] == "echo"
    close(connection)


def test_server_terminates_stream(server, leak_check):
    connection, _handler, _ = open_connection(server.port)
    stream = StreamHandler()
    cont = connection.new_stream(stream)
    assert not cont.is_closed()
    cont.activate(operation="count", message_type=MessageType.APPLICATION_MESSAGE, payload=b"4").result(TIMEOUT)
    events = [stream.next() for _ in range(5)]
    assert [e[2] for e in events[:4]] == [b"0", b"1", b"2", b"3"]
    assert [e[4] for e in events[:4]] == [0, 0, 0, MessageFlag.TERMINATE_STREAM]
    assert events[0][1][":stream-id"] == 1
    assert events[4] == ("closed",)
    assert cont.is_closed()
    with pytest.raises(RuntimeError) as info:
        cont.send_message(message_type=MessageType.APPLICATION_MESSAGE)
    assert isinstance(info.value, AwsCrtError)
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_RPC_STREAM_CLOSED"
    # the connection is still fine
    assert connection.is_open()
    close(connection)


def test_application_error_and_late_messages(server, leak_check):
    connection, handler, _ = open_connection(server.port)
    err = StreamHandler()
    connection.new_stream(err).activate(operation="error", message_type=MessageType.APPLICATION_MESSAGE)
    _kind, _headers, _payload, mtype, flags = err.next()
    assert (mtype, flags) == (MessageType.APPLICATION_ERROR, MessageFlag.TERMINATE_STREAM)
    assert err.next() == ("closed",)
    late = StreamHandler()
    connection.new_stream(late).activate(operation="late", message_type=MessageType.APPLICATION_MESSAGE)
    assert late.next()[2] == b"last"
    assert late.next() == ("closed",)
    # the message sent after the end is dropped; the PING behind it still arrives
    assert handler.next("protocol")[2] == b"still here"
    assert late.events.empty()
    assert connection.is_open()
    close(connection)


def test_client_terminate_on_activate(server, leak_check):
    connection, _handler, _ = open_connection(server.port)
    stream = StreamHandler()
    cont = connection.new_stream(stream)
    cont.activate(operation="silent", message_type=MessageType.APPLICATION_MESSAGE,
                  flags=MessageFlag.TERMINATE_STREAM).result(TIMEOUT)
    assert stream.next() == ("closed",)
    assert cont.closed_future.result(TIMEOUT) is None
    close(connection)


def test_synchronous_errors(server, leak_check):
    connection, _handler, _ = open_connection(server.port)
    cont = connection.new_stream(StreamHandler())
    with pytest.raises(RuntimeError) as info:
        cont.send_message(message_type=MessageType.APPLICATION_MESSAGE)
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_RPC_STREAM_NOT_ACTIVATED"
    with pytest.raises(TypeError):
        cont.activate(operation=None, message_type=MessageType.APPLICATION_MESSAGE)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError) as info:
        connection.send_protocol_message(message_type=MessageType.PING,
                                         headers=[Header.from_byte_buf("big", b"\0" * 40000)])
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_MESSAGE_INVALID_HEADERS_LEN"
    with pytest.raises(ValueError):
        connection.send_protocol_message(message_type=MessageType.PING,
                                         headers=[Header.from_int32("n" * 300, 1)])
    cont.activate(operation="silent", message_type=MessageType.APPLICATION_MESSAGE).result(TIMEOUT)
    with pytest.raises(RuntimeError):
        cont.activate(operation="silent", message_type=MessageType.APPLICATION_MESSAGE)
    close(connection)
    assert cont.closed_future.result(TIMEOUT) is None  # open streams close with the connection
    with pytest.raises(RuntimeError) as info:
        cont.send_message(message_type=MessageType.APPLICATION_MESSAGE)
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_RPC_STREAM_CLOSED"
    with pytest.raises(RuntimeError) as info:
        connection.new_stream(StreamHandler()).activate(operation="x", message_type=0)
    assert info.value.name == "AWS_ERROR_EVENT_STREAM_RPC_CONNECTION_CLOSED"


def test_send_from_inside_callbacks_does_not_deadlock(server, leak_check):
    connection, _handler, _ = open_connection(server.port)
    done = threading.Event()
    count = []

    class PingPong(StreamHandler):
        def on_continuation_message(self, headers, payload, message_type, flags, **kwargs) -> None:
            count.append(payload)
            if flags & MessageFlag.TERMINATE_STREAM:
                return
            n = int(payload) + 1
            last = n == 20
            # wait on the flush from inside the callback: must not block the connection
            self.continuation.send_message(
                message_type=MessageType.APPLICATION_MESSAGE, payload=str(n).encode(),
                flags=MessageFlag.TERMINATE_STREAM if last else MessageFlag.NONE).result(TIMEOUT)
            connection.send_protocol_message(message_type=MessageType.PING).result(TIMEOUT)

        def on_continuation_closed(self, **kwargs) -> None:
            done.set()

    h = PingPong()
    h.continuation = connection.new_stream(h)
    h.continuation.activate(operation="echo", message_type=MessageType.APPLICATION_MESSAGE, payload=b"0")
    assert done.wait(TIMEOUT)
    assert count[:20] == [str(i).encode() for i in range(20)]
    close(connection)


# -- failures from the server side -------------------------------------------------------------------
@pytest.mark.parametrize("operation, reason", [
    ("hangup", "AWS_IO_SOCKET_CLOSED"),
    ("garbage", "AWS_ERROR_EVENT_STREAM_MESSAGE_CHECKSUM_FAILURE"),
    ("bad_prelude", "AWS_ERROR_EVENT_STREAM_PRELUDE_CHECKSUM_FAILURE"),
    ("unknown_stream", "AWS_ERROR_EVENT_STREAM_RPC_PROTOCOL_ERROR"),
])
def test_server_failures_close_streams_then_connection(server, leak_check, operation, reason):
    connection, handler, _ = open_connection(server.port)
    log: list = []
    idle = StreamHandler(log, "idle")
    active = StreamHandler(log, "active")
    idle_cont = connection.new_stream(idle)
    idle_cont.activate(operation="silent", message_type=MessageType.APPLICATION_MESSAGE).result(TIMEOUT)
    cont = connection.new_stream(active)
    cont.activate(operation=operation, message_type=MessageType.APPLICATION_MESSAGE).result(TIMEOUT)
    _kind, got = handler.next("shutdown")
    assert got.name == reason
    with pytest.raises(AwsCrtError):
        connection.shutdown_future.result(TIMEOUT)
    # streams closed before the connection reported its shutdown; data first
    assert ("idle", "closed") in log and ("active", "closed") in log
    if operation == "hangup":
        assert log.index(("active", "message", {":message-type": 0, ":message-flags": 0, ":stream-id": 2},
                          b"bye", MessageType.APPLICATION_MESSAGE, 0)) < log.index(("active", "closed"))
    else:
        assert not [e for e in log if e[1] == "message"]  # never a partial/garbled message
    assert idle_cont.is_closed() and cont.is_closed()
    if operation == "unknown_stream":  # the client told the server why
        error = server.connection().wait_for(lambda m: m.message_type == PROTOCOL_ERROR)
        assert b"message" in error.payload


def test_malformed_header_types_from_server(server, leak_check):
    _connection, handler, _ = open_connection(server.port)
    # a stream message without :stream-id is a protocol violation
    server.send_raw(_frame_without_stream_id())
    assert handler.next("shutdown")[1].name == "AWS_ERROR_EVENT_STREAM_RPC_PROTOCOL_ERROR"


def _frame_without_stream_id() -> bytes:
    from helpers.eventstream_server import frame

    return frame([(":message-type", 4, 2), (":message-flags", 4, 0)])


# -- TLS ---------------------------------------------------------------------------------------------
def _server_ssl(pki) -> ssl.SSLContext:  # noqa: F811
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    return ctx


def _client_tls(ca_path: str):
    from crtpy.io import ClientTlsContext, TlsConnectionOptions, TlsContextOptions

    opts = TlsContextOptions()
    opts.override_default_trust_store_from_path(ca_filepath=ca_path)
    conn_opts = TlsConnectionOptions(ClientTlsContext(opts))
    conn_opts.set_server_name("localhost")
    return conn_opts


def test_tls_connection(pki, leak_check):  # noqa: F811
    with RpcServer(ssl_context=_server_ssl(pki)) as srv:
        tls = _client_tls(str(pki.ca_cert))
        connection, _handler, ack = open_connection(srv.port, tls=tls)
        del tls
        assert ack[4] == MessageFlag.CONNECTION_ACCEPTED
        stream = StreamHandler()
        connection.new_stream(stream).activate(operation="count", payload=b"2",
                                               message_type=MessageType.APPLICATION_MESSAGE)
        assert [stream.next()[2], stream.next()[2], stream.next()] == [b"0", b"1", ("closed",)]
        close(connection)


def test_tls_untrusted_server(pki, leak_check):  # noqa: F811
    with RpcServer(ssl_context=_server_ssl(pki)) as srv:
        handler = ConnHandler()
        future = ClientConnection.connect(handler=handler, host_name="127.0.0.1", port=srv.port,
                                          tls_connection_options=_client_tls(str(pki.other_ca_cert)))
        with pytest.raises(AwsCrtError) as info:
            future.result(TIMEOUT)
        assert info.value.name == "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE"
        assert handler.next()[1] is None


# -- the reference as an oracle -------------------------------------------------------------------------
def _scenario(rpc: Any, eventstream: Any, port: int) -> list:
    """One deterministic conversation; returns the normalized callback log."""
    log: list = []

    class H(rpc.ClientConnectionHandler):
        def __init__(self) -> None:
            self.q: queue.Queue[Any] = queue.Queue()

        def on_connection_setup(self, connection, error, **kw):
            log.append(("setup", error is None))
            self.q.put(connection)

        def on_connection_shutdown(self, reason, **kw):
            log.append(("shutdown", getattr(reason, "name", None)))
            self.q.put("shutdown")

        def on_protocol_message(self, headers, payload, message_type, flags, **kw):
            log.append(("protocol", [(h.name, int(h.type), h.value) for h in headers], payload,
                        int(message_type), flags))
            self.q.put("protocol")

    class S(rpc.ClientContinuationHandler):
        def __init__(self) -> None:
            self.q: queue.Queue[Any] = queue.Queue()

        def on_continuation_message(self, headers, payload, message_type, flags, **kw):
            log.append(("message", [(h.name, int(h.type), h.value) for h in headers], payload,
                        int(message_type), flags))

        def on_continuation_closed(self, **kw):
            log.append(("closed",))
            self.q.put("closed")

    h = H()
    rpc.ClientConnection.connect(handler=h, host_name="127.0.0.1", port=port).result(TIMEOUT)
    conn = h.q.get(timeout=TIMEOUT)
    conn.send_protocol_message(message_type=rpc.MessageType.CONNECT,
                               headers=[eventstream.Header.from_int64("t", 5)]).result(TIMEOUT)
    h.q.get(timeout=TIMEOUT)
    for op, payload in (("count", b"3"), ("error", b""), ("late", b"")):
        s = S()
        c = conn.new_stream(s)
        c.activate(operation=op, payload=payload, message_type=rpc.MessageType.APPLICATION_MESSAGE,
                   headers=[eventstream.Header.from_uuid("u", __import__("uuid").UUID(int=1))]).result(TIMEOUT)
        s.q.get(timeout=TIMEOUT)
        if op == "late":
            h.q.get(timeout=TIMEOUT)  # the PING that follows
    conn.send_protocol_message(message_type=rpc.MessageType.PING, payload=b"p").result(TIMEOUT)
    h.q.get(timeout=TIMEOUT)
    conn.close().result(TIMEOUT)
    while h.q.get(timeout=TIMEOUT) != "shutdown":
        pass
    return log


def test_same_callbacks_as_reference(leak_check):
    awscrt_rpc = pytest.importorskip("awscrt.eventstream.rpc")
    import awscrt.eventstream as awscrt_es

    import crtpy.eventstream as crtpy_es
    import crtpy.eventstream.rpc as crtpy_rpc

    with RpcServer() as srv:
        theirs = _scenario(awscrt_rpc, awscrt_es, srv.port)
    with RpcServer() as srv:
        ours = _scenario(crtpy_rpc, crtpy_es, srv.port)
    assert ours == theirs
    assert len(ours) > 10


MISBEHAVIOURS = {
    "duplicate_connect_ack": lambda: rpc_frame(5, 1),
    "unknown_message_type": lambda: rpc_frame(9),
    "missing_stream_id": lambda: _frame_without_stream_id(),
    "stream_id_as_string": lambda: _frame([(":message-type", 4, 2), (":message-flags", 4, 0), (":stream-id", 7, "0")]),
    "application_message_on_stream_0": lambda: rpc_frame(0),
    "negative_stream_id": lambda: rpc_frame(0, 0, -5),
    "connect_from_server": lambda: rpc_frame(4),
    "protocol_error_from_server": lambda: rpc_frame(6, payload=b"oops"),
}


def _frame(headers) -> bytes:
    from helpers.eventstream_server import frame

    return frame(headers)


def _react(rpc: Any, data: bytes) -> tuple:
    events: queue.Queue[tuple] = queue.Queue()

    class H(rpc.ClientConnectionHandler):
        def on_connection_setup(self, connection, error, **kw):
            events.put(("setup", connection))

        def on_connection_shutdown(self, reason, **kw):
            events.put(("shutdown", getattr(reason, "name", None)))

        def on_protocol_message(self, headers, payload, message_type, flags, **kw):
            events.put(("protocol", int(message_type), flags, payload))

    with RpcServer() as srv:
        rpc.ClientConnection.connect(handler=H(), host_name="127.0.0.1", port=srv.port).result(TIMEOUT)
        connection = events.get(timeout=TIMEOUT)[1]
        connection.send_protocol_message(message_type=rpc.MessageType.CONNECT).result(TIMEOUT)
        events.get(timeout=TIMEOUT)  # the CONNECT_ACK
        srv.send_raw(data)
        first = events.get(timeout=TIMEOUT)
        told = None
        if first[0] == "shutdown":
            told = srv.connection().wait_for(lambda m: m.message_type == PROTOCOL_ERROR).message_type
        else:
            assert connection.is_open()
        connection.close().exception(TIMEOUT)
    return first, told


@pytest.mark.parametrize("case", sorted(MISBEHAVIOURS))
def test_server_misbehaviour_same_as_reference(case, leak_check):
    awscrt_rpc = pytest.importorskip("awscrt.eventstream.rpc")
    import crtpy.eventstream.rpc as crtpy_rpc

    data = MISBEHAVIOURS[case]()
    assert _react(crtpy_rpc, data) == _react(awscrt_rpc, data)


def test_large_payloads_both_ways(server, leak_check):
    import os

    connection, handler, _ = open_connection(server.port)
    stream = StreamHandler()
    cont = connection.new_stream(stream)
    big = os.urandom(4 * 1024 * 1024)
    flushed = []
    cont.activate(operation="echo", message_type=MessageType.APPLICATION_MESSAGE, payload=big,
                  on_flush=lambda error, **kw: flushed.append(error)).result(TIMEOUT)
    assert stream.next()[2] == big
    cont.send_message(message_type=MessageType.APPLICATION_MESSAGE, payload=memoryview(big)[:1000]).result(TIMEOUT)
    assert stream.next()[2] == big[:1000]
    connection.send_protocol_message(message_type=MessageType.PING, payload=big[::-1]).result(TIMEOUT)
    assert handler.next("protocol")[2] == big[::-1]
    assert flushed == [None]
    close(connection)
