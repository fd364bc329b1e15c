"""The request-response engine over a scripted protocol adapter: failure paths that a
real broker does not produce on demand (refused SUBSCRIBE, failed PUBLISH), session
loss, and shutdown."""
from __future__ import annotations

import queue
import threading

import pytest

from crtpy._request_response.engine import Engine
from crtpy._runtime.loop import LoopThread


class FakeAdapter:
    """Records what the engine asks for; the test completes each call."""

    def __init__(self) -> None:
        self.loop_thread = LoopThread("rr-fake-loop")
        self.loop = self.loop_thread.loop
        self.connected = True
        self.sink = None
        self.calls: queue.Queue = queue.Queue()

    def attach(self, sink):
        self.sink = sink

    def detach(self):
        self.sink = None

    def detach_now(self, sink):
        self.sink = None

    def subscribe(self, f, done):
        self.calls.put(("subscribe", f, done))

    def unsubscribe(self, f, done):
        self.calls.put(("unsubscribe", f, done))

    def publish(self, topic, payload, done):
        self.calls.put(("publish", topic, payload, done))

    def next(self, kind=None):
        call = self.calls.get(timeout=10)
        if kind is not None:
            assert call[0] == kind, call
        return call

    def on_loop(self, fn, *args):
        self.loop_thread.run_sync(lambda: fn(*args), timeout=10)


@pytest.fixture
def fake():
    a = FakeAdapter()
    yield a
    a.loop_thread.stop()
    a.loop_thread.join(5)


def _engine(fake, max_rr=4, max_streaming=2, timeout=5.0):
    return Engine(fake, max_rr, max_streaming, timeout)


def _paths(name):
    return [(f"{name}/accepted", "token"), (f"{name}/rejected", "token")]


def test_request_flow_and_correlation(fake):
    eng = _engine(fake)
    fut = eng.submit(["s/accepted", "s/rejected"], _paths("s"), "s/get", b'{"token":"a"}', "a")
    subs = [fake.next("subscribe"), fake.next("subscribe")]
    assert sorted(c[1] for c in subs) == ["s/accepted", "s/rejected"]
    assert fake.calls.empty()                       # nothing published before both SUBACKs
    fake.on_loop(subs[0][2], None, False)
    assert fake.calls.empty()
    fake.on_loop(subs[1][2], None, False)
    pub = fake.next("publish")
    assert pub[1:3] == ("s/get", b'{"token":"a"}')
    fake.on_loop(pub[3], None)
    fake.on_loop(fake.sink.on_publish, "s/accepted", b'{"token":"other"}')
    assert not fut.done()
    fake.on_loop(fake.sink.on_publish, "s/elsewhere", b'{"token":"a"}')
    assert not fut.done()
    fake.on_loop(fake.sink.on_publish, "s/rejected", b'{"token":"a","code":404}')
    r = fut.result(10)
    assert (r.topic, r.payload) == ("s/rejected", b'{"token":"a","code":404}')
    assert {fake.next("unsubscribe")[1], fake.next("unsubscribe")[1]} == {"s/accepted", "s/rejected"}
    eng.close()


def test_refused_subscription_fails_the_request(fake):
    eng = _engine(fake)
    fut = eng.submit(["s/accepted"], _paths("s"), "s/get", b"{}", "a")
    sub = fake.next("subscribe")
    fake.on_loop(sub[2], "AWS_ERROR_MQTT_PROTOCOL_ADAPTER_FAILING_REASON_CODE", False)
    assert fut.exception(10).name == "AWS_ERROR_MQTT_REQUEST_RESPONSE_SUBSCRIBE_FAILURE"
    eng.close()


def test_failed_publish_fails_the_request(fake):
    eng = _engine(fake)
    fut = eng.submit(["s/accepted"], _paths("s"), "s/get", b"{}", "a")
    fake.on_loop(fake.next("subscribe")[2], None, False)
    fake.on_loop(fake.next("publish")[3], RuntimeError("PUBACK 0x87"))
    assert fut.exception(10).name == "AWS_ERROR_MQTT_REQUEST_RESPONSE_PUBLISH_FAILURE"
    assert fake.next("unsubscribe")[1] == "s/accepted"
    eng.close()


def test_refused_streaming_subscription_halts(fake):
    eng = _engine(fake)
    events = queue.Queue()
    sid = eng.new_stream("n/#", lambda k, e: events.put((k, e)), lambda t, p: events.put(("pub", t, p)))
    eng.open_stream(sid)
    fake.on_loop(fake.next("subscribe")[2], "AWS_ERROR_MQTT_PROTOCOL_ADAPTER_FAILING_REASON_CODE", False)
    kind, exc = events.get(timeout=10)
    assert kind == 2 and exc.name == "AWS_ERROR_MQTT_REQUEST_RESPONSE_SUBSCRIBE_FAILURE"
    fake.on_loop(fake.sink.on_publish, "n/x", b"ignored")   # a halted stream gets nothing
    eng.close()
    fake.on_loop(lambda: None)
    assert events.empty()


def test_session_loss_and_streams(fake):
    eng = _engine(fake)
    events = queue.Queue()
    thread_names = set()

    def on_status(k, e):
        thread_names.add(threading.current_thread().name)
        events.put(("status", k))

    sid = eng.new_stream("n/+", on_status, lambda t, p: events.put(("pub", t, p)))
    eng.open_stream(sid)
    fake.on_loop(fake.next("subscribe")[2], None, False)
    assert events.get(timeout=10) == ("status", 0)
    fake.on_loop(fake.sink.on_disconnected)
    fake.on_loop(fake.sink.on_connected, True)    # session kept: nothing happens
    assert fake.calls.empty() and events.empty()
    fake.on_loop(fake.sink.on_disconnected)
    fake.on_loop(fake.sink.on_connected, False)   # session lost: LOST, subscribe again
    assert events.get(timeout=10) == ("status", 1)
    fake.on_loop(fake.next("subscribe")[2], None, False)
    assert events.get(timeout=10) == ("status", 0)
    fake.on_loop(fake.sink.on_publish, "n/1", b"m")
    assert events.get(timeout=10) == ("pub", "n/1", b"m")
    assert not any(n.startswith("rr-fake-loop") for n in thread_names)
    eng.close_stream(sid)
    assert fake.next("unsubscribe")[1] == "n/+"
    eng.close()


def test_blocked_stream_opens_when_a_slot_frees(fake):
    eng = _engine(fake, max_streaming=1)
    events = queue.Queue()
    a = eng.new_stream("a", lambda k, e: events.put(("a", k)), lambda t, p: None)
    b = eng.new_stream("b", lambda k, e: events.put(("b", k)), lambda t, p: None)
    eng.open_stream(a)
    fake.on_loop(fake.next("subscribe")[2], None, False)
    assert events.get(timeout=10) == ("a", 0)
    eng.close_stream(a)
    unsub = fake.next("unsubscribe")
    eng.open_stream(b)                     # "a" is still being unsubscribed: b waits
    fake.on_loop(lambda: None)
    assert fake.calls.empty()
    fake.on_loop(unsub[2], None)
    sub = fake.next("subscribe")
    assert sub[1] == "b"
    fake.on_loop(sub[2], None, False)
    assert events.get(timeout=10) == ("b", 0)
    eng.close()


def test_close_fails_queued_and_in_flight_requests(fake):
    eng = _engine(fake, max_rr=2)
    f1 = eng.submit(["x/1", "x/2"], _paths("x"), "x/get", b"{}", "a")
    f2 = eng.submit(["y/1"], _paths("y"), "y/get", b"{}", "b")      # queued: budget full
    fake.next("subscribe")
    fake.next("subscribe")
    eng.close()
    for f in (f1, f2):
        assert f.exception(10).name == "AWS_ERROR_MQTT_REQUEST_RESPONSE_CLIENT_SHUT_DOWN"
    f3 = eng.submit(["z"], _paths("z"), "z/get", b"{}", "c")
    assert f3.exception(10).name == "AWS_ERROR_MQTT_REQUEST_RESPONSE_CLIENT_SHUT_DOWN"
    assert fake.sink is None


def test_timeout_releases_subscriptions(fake):
    eng = _engine(fake, timeout=0.2)
    fut = eng.submit(["t"], _paths("t"), "t/get", b"{}", "a")
    sub = fake.next("subscribe")
    assert fut.exception(10).name == "AWS_ERROR_MQTT_REQUEST_RESPONSE_TIMEOUT"
    fake.on_loop(sub[2], None, False)     # the SUBACK arrives after the timeout
    assert fake.next("unsubscribe")[1] == "t"
    eng.close()
