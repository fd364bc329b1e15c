"""crtpy.mqtt_request_response against Mosquitto, with a responder in the test.

Most scenarios run on both implementations (``impl`` = crtpy or the reference awscrt),
so the reference's observable behaviour is checked next to ours."""
from __future__ import annotations

import gc
import threading

import pytest
from helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401  (fixtures)
from helpers.rr_responder import Responder, Statuses, connect_mqtt5, impl, request_options

IMPLS = ["crtpy", "awscrt"]


@pytest.fixture
def responder(mosquitto):  # noqa: F811
    r = Responder(mosquitto.port)
    yield r
    r.close()


class Env:
    def __init__(self, name, broker, max_rr=4, max_streaming=2, timeout=5):
        self.m5, self.rr = impl(name)
        self.client, self.lifecycle = connect_mqtt5(self.m5, broker.port)
        self.rrc = self.rr.Client(self.client, self.rr.ClientOptions(max_rr, max_streaming, timeout))

    def close(self):
        self.rrc = None
        self.client.stop()
        self.client = None
        gc.collect()


@pytest.fixture
def env_factory(mosquitto, leak_check):  # noqa: F811  (leak check after the clients are gone)
    envs = []

    def make(name, **kw):
        e = Env(name, mosquitto, **kw)
        envs.append(e)
        return e

    yield make
    for e in envs:
        e.close()


def _error_name(fut, timeout=10.0):
    exc = fut.exception(timeout)
    return getattr(exc, "name", type(exc).__name__)


@pytest.mark.parametrize("name", IMPLS)
def test_accepted_and_rejected(name, env_factory, responder, leak_check):
    e = env_factory(name)
    rr = e.rr
    ok = e.rrc.make_request(request_options(rr, "thing", "tok-1", v=1)).result(10)
    assert isinstance(ok, rr.Response)
    assert ok.topic == "svc/thing/accepted" and b'"echo": 1' in ok.payload
    bad = e.rrc.make_request(request_options(rr, "thing", "tok-2", mode="reject", v=2)).result(10)
    assert bad.topic == "svc/thing/rejected" and b'"tok-2"' in bad.payload


@pytest.mark.parametrize("name", IMPLS)
def test_nested_token_path(name, env_factory, responder, leak_check):
    e = env_factory(name)
    r = e.rrc.make_request(request_options(e.rr, "n", "deep", token_path="a.b.token", v=3)).result(10)
    assert r.topic == "svc/n/accepted" and b'"deep"' in r.payload


# crtpy only: with the budget exactly one pair of filters, awscrt 0.38.0 often never
# publishes the requests that join the shared subscriptions a moment after the first ones
# (they hang until their timeout; seen in most runs under pytest).
@pytest.mark.parametrize("name", ["crtpy"])
def test_concurrent_requests_share_subscriptions(name, env_factory, responder, leak_check):
    e = env_factory(name, max_rr=2)   # room for exactly one pair of filters
    futs = [e.rrc.make_request(request_options(e.rr, "shared", f"t{i}", v=i, delay=0.05 * (9 - i)))
            for i in range(10)]
    results = [f.result(10) for f in futs]
    # every request got its own answer although they overlapped on the same two subscriptions
    assert [r.payload for r in results] == [f'{{"token": "t{i}", "echo": {i}}}'.encode() for i in range(10)]
    # answers went out in the reverse order of the requests
    sent = [ev[2]["echo"] for ev in responder.log if ev[0] == "sent"]
    assert sent == list(range(9, -1, -1))


def test_subscriptions_counted_and_released_crtpy(env_factory, responder, leak_check):
    e = env_factory("crtpy", max_rr=2)
    engine = e.rrc._engine
    calls = []
    unsubscribed = threading.Semaphore(0)
    adapter = engine.adapter
    sub, unsub = adapter.subscribe, adapter.unsubscribe

    def spy_unsub(f, done):
        calls.append(("unsub", f))

        def done2(err):
            done(err)
            unsubscribed.release()
        unsub(f, done2)

    adapter.subscribe = lambda f, done: (calls.append(("sub", f)), sub(f, done))
    adapter.unsubscribe = spy_unsub
    futs = [e.rrc.make_request(request_options(e.rr, "c", f"t{i}", delay=0.2)) for i in range(5)]
    for f in futs:
        f.result(10)
    # one SUBSCRIBE per filter for all five requests
    assert sorted(c for c in calls if c[0] == "sub") == [("sub", "svc/c/accepted"), ("sub", "svc/c/rejected")]
    # released after the last one: both filters unsubscribed, the budget is free again
    assert unsubscribed.acquire(timeout=10) and unsubscribed.acquire(timeout=10)
    assert sorted(c for c in calls if c[0] == "unsub") == [("unsub", "svc/c/accepted"), ("unsub", "svc/c/rejected")]
    assert e.rrc.make_request(request_options(e.rr, "d", "next")).result(10).topic == "svc/d/accepted"
    assert engine.loop_thread.run_sync(lambda: dict(engine.subs.records).keys() <= {"svc/d/accepted", "svc/d/rejected"})
    adapter.subscribe, adapter.unsubscribe = sub, unsub


def test_many_requests_within_budget_crtpy(env_factory, responder, leak_check):
    e = env_factory("crtpy", max_rr=4, timeout=20)
    adapter = e.rrc._engine.adapter
    sub, unsub = adapter.subscribe, adapter.unsubscribe
    held: set[str] = set()
    peak = [0]

    def spy_sub(f, done):
        held.add(f)
        peak[0] = max(peak[0], len(held))
        sub(f, done)

    def spy_unsub(f, done):
        def done2(err):
            held.discard(f)
            done(err)
        unsub(f, done2)

    adapter.subscribe, adapter.unsubscribe = spy_sub, spy_unsub
    futs = [e.rrc.make_request(request_options(e.rr, f"m{i % 5}", f"tok{i}", v=i, delay=0.01 * (i % 3)))
            for i in range(100)]
    results = [f.result(30) for f in futs]
    assert [r.topic for r in results] == [f"svc/m{i % 5}/accepted" for i in range(100)]
    assert all(f'"tok{i}"'.encode() in r.payload for i, r in enumerate(results))
    assert 2 <= peak[0] <= 4              # the budget (4 filters = 2 services at a time) held
    adapter.subscribe, adapter.unsubscribe = sub, unsub


@pytest.mark.parametrize("name", IMPLS)
def test_timeout_and_late_answer(name, env_factory, responder, leak_check):
    e = env_factory(name, timeout=2)
    if name == "awscrt":
        # awscrt 0.38.0 sometimes never publishes a request that joins a shared
        # subscription a moment after the first (see above): settle the quick one first
        quick = e.rrc.make_request(request_options(e.rr, "slow", "quick-1"))
        assert quick.result(10).topic == "svc/slow/accepted"
    never = e.rrc.make_request(request_options(e.rr, "slow", "never-1", mode="never"))
    late = e.rrc.make_request(request_options(e.rr, "slow", "late-1", delay=4.0))
    if name != "awscrt":
        quick = e.rrc.make_request(request_options(e.rr, "slow", "quick-1"))
    assert quick.result(10).topic == "svc/slow/accepted"
    assert _error_name(never) == "AWS_ERROR_MQTT_REQUEST_RESPONSE_TIMEOUT"
    assert _error_name(late) == "AWS_ERROR_MQTT_REQUEST_RESPONSE_TIMEOUT"


@pytest.mark.parametrize("name", IMPLS)
def test_budget_queues_excess_requests(name, env_factory, responder, leak_check):
    e = env_factory(name, max_rr=2)
    first = e.rrc.make_request(request_options(e.rr, "one", "a", delay=0.5))
    second = e.rrc.make_request(request_options(e.rr, "two", "b"))   # needs two more filters: waits
    responder.wait_gets(1)
    assert not second.done()
    assert first.result(10).topic == "svc/one/accepted"
    assert second.result(10).topic == "svc/two/accepted"
    gets = [g["token"] for g in responder.wait_gets(2)]
    assert gets == ["a", "b"]                        # "two" was published only after "one" ended
    sent = [ev for ev in responder.log if ev[0] in ("get", "sent")]
    assert [s[0] for s in sent] == ["get", "sent", "get", "sent"]


@pytest.mark.parametrize("name", IMPLS)
def test_request_larger_than_budget_times_out(name, env_factory, responder, leak_check):
    e = env_factory(name, max_rr=2, timeout=1)
    f = e.rrc.make_request(request_options(
        e.rr, "big", "x", filters=["svc/big/accepted", "svc/big/rejected", "svc/big/other"]))
    assert _error_name(f) == "AWS_ERROR_MQTT_REQUEST_RESPONSE_TIMEOUT"
    assert responder.gets() == []                    # never published


@pytest.mark.parametrize("name", IMPLS)
def test_requests_without_token_run_one_at_a_time(name, env_factory, responder, leak_check):
    e = env_factory(name)
    futs = [e.rrc.make_request(request_options(e.rr, "nt", None, v=i, delay=0.1)) for i in range(3)]
    assert [f.result(10).payload for f in futs] == [f'{{"token": null, "echo": {i}}}'.encode() for i in range(3)]
    kinds = [ev[0] for ev in responder.log]
    assert kinds == ["get", "sent"] * 3              # never two token-less requests in flight


@pytest.mark.parametrize("name", IMPLS)
def test_same_token_waits_for_the_first(name, env_factory, responder, leak_check):
    e = env_factory(name)
    f1 = e.rrc.make_request(request_options(e.rr, "dup", "same", v=1, delay=0.3))
    f2 = e.rrc.make_request(request_options(e.rr, "dup", "same", v=2, delay=0.1))
    assert f1.result(10).payload == b'{"token": "same", "echo": 1}'
    assert f2.result(10).payload == b'{"token": "same", "echo": 2}'
    assert [ev[0] for ev in responder.log] == ["get", "sent", "get", "sent"]


@pytest.mark.parametrize("name", IMPLS)
def test_request_made_offline_runs_after_start(name, env_factory, responder, leak_check):
    e = env_factory(name)
    before = len(e.lifecycle["disconnection"])
    e.client.stop()
    with e.lifecycle["cond"]:
        assert e.lifecycle["cond"].wait_for(lambda: len(e.lifecycle["disconnection"]) > before, 10)
    f = e.rrc.make_request(request_options(e.rr, "off", "o1", v=7))
    assert not f.done()
    e.client.start()
    assert f.result(10).payload == b'{"token": "o1", "echo": 7}'


@pytest.mark.parametrize("name", IMPLS)
def test_wrong_token_is_ignored(name, env_factory, responder, leak_check):
    e = env_factory(name, timeout=2)
    f = e.rrc.make_request(request_options(e.rr, "w", "mine", mode="never"))
    responder.wait_gets(1)
    responder.publish("svc/w/accepted", b'{"token": "other"}')
    responder.publish("svc/w/accepted", b'not json')
    responder.publish("svc/w/accepted", b'{"token": 7}')
    responder.publish("svc/w/accepted", b'{"token": "mine", "ok": true}')
    assert f.result(10).payload == b'{"token": "mine", "ok": true}'


@pytest.mark.parametrize("name", IMPLS)
def test_dropping_the_client_fails_pending_requests(name, env_factory, responder, leak_check):
    e = env_factory(name, timeout=30)
    f = e.rrc.make_request(request_options(e.rr, "gone", "g", mode="never"))
    responder.wait_gets(1)
    e.rrc = None
    gc.collect()
    assert _error_name(f) == "AWS_ERROR_MQTT_REQUEST_RESPONSE_CLIENT_SHUT_DOWN"


@pytest.mark.parametrize("name", IMPLS)
def test_invalid_requests(name, env_factory, leak_check):
    e = env_factory(name)
    rr = e.rr
    good = {"subscription_topic_filters": ["a/b"], "response_paths": [rr.ResponsePath("a/b", "t")],
            "publish_topic": "a/get", "payload": b"{}", "correlation_token": "t"}
    for change in ({"publish_topic": ""}, {"publish_topic": "a/#"}, {"payload": b""}):
        f = e.rrc.make_request(rr.RequestOptions(**{**good, **change}))
        assert isinstance(f.exception(10), ValueError), change
    for change in ({"subscription_topic_filters": []}, {"response_paths": []}):
        # (the reference's binding raises SystemError around the TypeError)
        with pytest.raises(TypeError if name == "crtpy" else (TypeError, SystemError)):
            e.rrc.make_request(rr.RequestOptions(**{**good, **change}))
    with pytest.raises(AssertionError):
        e.rrc.make_request(rr.RequestOptions(**{**good, "payload": "text"}))


@pytest.mark.parametrize("name", IMPLS)
def test_client_option_checks(name, mosquitto, leak_check):  # noqa: F811
    m5, rr = impl(name)
    client = m5.Client(m5.ClientOptions(host_name="127.0.0.1", port=mosquitto.port))
    for args in [(0, 0), (1, 5), (2, 1, 0)]:
        with pytest.raises(RuntimeError, match="AWS_ERROR_INVALID_ARGUMENT"):
            rr.Client(client, rr.ClientOptions(*args))
    for args in [(-1, 1), (2, -1), (2, 1, -5)]:
        with pytest.raises(OverflowError):
            rr.Client(client, rr.ClientOptions(*args))
    with pytest.raises(AssertionError):
        rr.Client(client, rr.ClientOptions(2, 1, None))
    with pytest.raises(AssertionError):
        rr.Client(object(), rr.ClientOptions(2, 1))
    assert rr.Client(client, rr.ClientOptions(2, 0)) is not None
    with pytest.raises(RuntimeError, match="AWS_ERROR_INVALID_ARGUMENT"):
        rr.Client(client, rr.ClientOptions(2, 1)).create_stream(rr.StreamingOperationOptions("a/#/b"))
    del client
    gc.collect()


@pytest.mark.parametrize("name", IMPLS)
def test_streaming_budget_halts_excess(name, env_factory, responder, leak_check):
    e = env_factory(name, max_streaming=1)
    a, b, c = Statuses(), Statuses(), Statuses()
    sa = e.rrc.create_stream(e.rr.StreamingOperationOptions("news/a", a.status, a.publish))
    sa.open()
    assert a.wait(1) == [("status", 0, None)]
    sc = e.rrc.create_stream(e.rr.StreamingOperationOptions("news/a", c.status, c.publish))
    sc.open()                                         # same filter: shares the subscription
    assert c.wait(1) == [("status", 0, None)]
    sb = e.rrc.create_stream(e.rr.StreamingOperationOptions("news/b", b.status, b.publish))
    sb.open()
    assert b.wait(1) == [("status", 2, "AWS_ERROR_MQTT_REQUEST_RESPONSE_NO_SUBSCRIPTION_CAPACITY")]
    responder.publish("news/a", b"hello")
    assert a.wait(2)[1] == ("publish", "news/a", b"hello")
    assert c.wait(2)[1] == ("publish", "news/a", b"hello")
    del sa, sb, sc


@pytest.mark.parametrize("name", IMPLS)
def test_streaming_wildcard_and_threads(name, env_factory, responder, leak_check):
    e = env_factory(name)
    s = Statuses()
    op = e.rrc.create_stream(e.rr.StreamingOperationOptions("dev/+/temp", s.status, s.publish))
    assert not s.snapshot()
    op.open()
    s.wait(1)
    with pytest.raises(RuntimeError, match="AWS_ERROR_MQTT_REUQEST_RESPONSE_STREAM_ALREADY_ACTIVATED"):
        op.open()
    responder.publish("dev/1/temp", b"20")
    responder.publish("dev/2/hum", b"x")
    responder.publish("dev/3/temp", b"21")
    assert s.wait(3)[1:] == [("publish", "dev/1/temp", b"20"), ("publish", "dev/3/temp", b"21")]
    if name == "crtpy":
        assert all(t.startswith("crtpy-callback") for t in s.threads), s.threads
    del op


@pytest.mark.parametrize("name", IMPLS)
def test_streaming_across_broker_restart(name, env_factory, mosquitto, responder, leak_check):  # noqa: F811
    e = env_factory(name)
    s = Statuses()
    op = e.rrc.create_stream(e.rr.StreamingOperationOptions("alerts/#", s.status, s.publish))
    op.open()
    assert s.wait(1) == [("status", 0, None)]
    responder.publish("alerts/x", b"before")
    s.wait(2)
    responder.close()
    mosquitto.restart()
    # a new connection without a session: lost, then established again
    assert s.wait(4, timeout=15)[2:] == [("status", 1, None), ("status", 0, None)]
    r2 = Responder(mosquitto.port)
    try:
        r2.publish("alerts/y", b"after")
        assert s.wait(5)[4] == ("publish", "alerts/y", b"after")
    finally:
        r2.close()
    del op


def test_request_over_mqtt311_connection(mosquitto, responder, leak_check):  # noqa: F811
    mqtt = pytest.importorskip("crtpy.mqtt")
    from crtpy import io
    from crtpy import mqtt_request_response as rr

    try:
        conn = mqtt.Connection(client=mqtt.Client(io.ClientBootstrap.get_or_create_static_default()),
                               host_name="127.0.0.1", port=mosquitto.port, client_id="rr311",
                               reconnect_min_timeout_secs=1, reconnect_max_timeout_secs=2)
        conn.connect().result(10)
    except Exception as exc:  # noqa: BLE001 - the 3.1.1 client is still being built
        pytest.skip(f"crtpy.mqtt.Connection not usable yet: {exc!r}")
    try:
        c = rr.Client(conn, rr.ClientOptions(4, 2, 5))
        futs = [c.make_request(request_options(rr, "v311", f"t{i}", v=i, delay=0.05)) for i in range(3)]
        assert [f.result(10).topic for f in futs] == ["svc/v311/accepted"] * 3
        s = Statuses()
        op = c.create_stream(rr.StreamingOperationOptions("m311/#", s.status, s.publish))
        op.open()
        assert s.wait(1) == [("status", 0, None)]
        responder.publish("m311/a", b"x")
        assert s.wait(2)[1] == ("publish", "m311/a", b"x")
        responder.close()
        mosquitto.restart()
        assert s.wait(4, timeout=20)[2:] == [("status", 1, None), ("status", 0, None)]
        r2 = Responder(mosquitto.port)
        try:
            assert c.make_request(request_options(rr, "v311", "after")).result(10).topic == "svc/v311/accepted"
            r2.publish("m311/b", b"y")
            assert s.wait(5)[4] == ("publish", "m311/b", b"y")
        finally:
            r2.close()
        del op, c, futs
    finally:
        conn.disconnect().result(10)
        del conn
        gc.collect()
