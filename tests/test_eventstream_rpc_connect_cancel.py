"""Event-stream RPC: a connect future completed by the user (cancelled) before the
connection is set up.  Setup must not log an error for the completed future, and the
connection nobody waits for any more must be closed and released.

The public module's connect futures are not cancellable today (unlike the reference's
plain futures), so the test makes them cancellable, as a user of the reference could."""
from __future__ import annotations

import logging
import queue
import threading

import pytest
from helpers.eventstream_server import RpcServer

from crtpy import io
from crtpy._runtime.futures import CrtFuture
from crtpy.eventstream import rpc
from crtpy.eventstream.rpc import ClientConnection, ClientConnectionHandler

TIMEOUT = 10.0


class Handler(ClientConnectionHandler):
    def __init__(self) -> None:
        self.events: queue.Queue[tuple] = queue.Queue()

    def on_connection_setup(self, connection, error, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.events.put(("setup", connection is not None, error))

    def on_connection_shutdown(self, reason, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.events.put(("shutdown", reason))

    def on_protocol_message(self, headers, payload, message_type, flags, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.events.put(("protocol", message_type))


def test_cancelled_connect_future_closes_the_connection(monkeypatch, caplog, leak_check):
    monkeypatch.setattr(rpc, "_callback_future", CrtFuture)  # cancellable, like the reference's
    elg = io.EventLoopGroup(1)
    bootstrap = io.ClientBootstrap(elg, io.DefaultHostResolver(elg))
    loop_thread = elg._next_loop_thread()  # the group's only loop: the one connect() uses
    entered, gate = threading.Event(), threading.Event()
    loop_thread.call_soon(lambda: (entered.set(), gate.wait(TIMEOUT)))
    assert entered.wait(TIMEOUT)
    handler = Handler()
    with caplog.at_level(logging.DEBUG), RpcServer() as server:
        try:
            # the loop is held: the connection cannot be set up before the cancel
            future = ClientConnection.connect(handler=handler, host_name="127.0.0.1", port=server.port,
                                              bootstrap=bootstrap)
            assert future.cancel()
        finally:
            gate.set()
        assert handler.events.get(timeout=TIMEOUT) == ("setup", True, None)
        assert handler.events.get(timeout=TIMEOUT) == ("shutdown", None)  # closed by us
        assert future.cancelled()
        assert server.connection(0).closed.wait(TIMEOUT)  # the server saw the close
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    del future, handler, bootstrap, elg


def test_connect_future_not_cancelled_still_completes(leak_check):
    handler = Handler()
    with RpcServer() as server:
        future = ClientConnection.connect(handler=handler, host_name="127.0.0.1", port=server.port)
        assert future.result(TIMEOUT) is None
        assert handler.events.get(timeout=TIMEOUT) == ("setup", True, None)
        with pytest.raises(queue.Empty):
            handler.events.get(timeout=0.2)  # still open: nobody closed it
        assert not server.connection(0).closed.is_set()
