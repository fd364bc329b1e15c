"""Sans-I/O pieces of crtpy.mqtt_request_response: topic rules, correlation-token
extraction and the subscription manager (budgets, sharing, session loss)."""
from __future__ import annotations

import json

import pytest

from crtpy._request_response import tokens
from crtpy._request_response.subscriptions import Acquire, Kind, Status, SubscriptionManager
from crtpy._request_response.topics import matches, valid_filter, valid_topic

RR, ST = Kind.REQUEST_RESPONSE, Kind.STREAMING


@pytest.mark.parametrize("topic,ok", [("a", True), ("a/b/c", True), ("a//b", True), ("", False),
                                      ("a/+", False), ("a/#", False), ("a\0b", False)])
def test_valid_topic(topic, ok):
    assert valid_topic(topic) is ok


@pytest.mark.parametrize("f,ok", [("a", True), ("a/+/c", True), ("#", True), ("a/#", True), ("+", True),
                                  ("a/#/b", False), ("a/b#", False), ("a+/b", False), ("", False)])
def test_valid_filter(f, ok):
    assert valid_filter(f) is ok


@pytest.mark.parametrize("f,t,ok", [("a/b", "a/b", True), ("a/+", "a/b", True), ("a/+", "a/b/c", False),
                                    ("a/#", "a/b/c", True), ("a/#", "a", True), ("#", "$SYS/x", False),
                                    ("+/x", "$aws/x", False), ("$aws/+", "$aws/x", True), ("a/b", "a/c", False)])
def test_matches(f, t, ok):
    assert matches(f, t) is ok


def test_token_paths():
    doc = json.dumps({"clientToken": "t1", "a": {"b": {"token": "deep"}}, "n": 5, "l": ["x"]}).encode()
    assert tokens.token_at(doc, "clientToken") == "t1"
    assert tokens.token_at(doc, "a.b.token") == "deep"
    assert tokens.token_at(doc, "a.b") is None          # an object, not a string
    assert tokens.token_at(doc, "n") is None            # a number
    assert tokens.token_at(doc, "l.0") is None          # arrays are not walked
    assert tokens.token_at(doc, "missing") is None
    assert tokens.token_at(b"not json", "clientToken") is None
    assert tokens.token_at(b"", "clientToken") is None
    assert tokens.token_at(b"[1,2]", "clientToken") is None
    assert tokens.token_at(b"\xff\xfe", "x") is None
    assert tokens.token_at(memoryview(b'{"x": "y"}'), "x") == "y"


def _drain(m):
    return m.drain()


def test_shared_subscription_is_reference_counted():
    m = SubscriptionManager(4, 2)
    m.on_connected(False)
    assert m.acquire(1, RR, ["a/accepted", "a/rejected"]) == Acquire.SUBSCRIBING
    assert m.acquire(2, RR, ["a/accepted", "a/rejected"]) == Acquire.SUBSCRIBING
    actions, _ = _drain(m)
    assert actions == [("subscribe", "a/accepted"), ("subscribe", "a/rejected")]  # once each
    m.on_subscribe_complete("a/accepted", None, False)
    m.on_subscribe_complete("a/rejected", None, False)
    _, events = _drain(m)
    assert [(e[0], e[1], e[3]) for e in events] == [("established", "a/accepted", {1, 2}),
                                                    ("established", "a/rejected", {1, 2})]
    assert m.acquire(3, RR, ["a/accepted"]) == Acquire.SUBSCRIBED
    m.release(1, ["a/accepted", "a/rejected"])
    m.release(3, ["a/accepted"])
    assert _drain(m) == ([], [])                    # request 2 still listens
    m.release(2, ["a/accepted", "a/rejected"])
    actions, _ = _drain(m)
    assert actions == [("unsubscribe", "a/accepted"), ("unsubscribe", "a/rejected")]
    assert m.acquire(4, RR, ["a/accepted"]) == Acquire.BLOCKED  # until the UNSUBACK
    m.on_unsubscribe_complete("a/accepted", None)
    m.on_unsubscribe_complete("a/rejected", None)
    _, events = _drain(m)
    assert events == [("capacity",), ("capacity",)]
    assert m.records == {}


def test_request_response_budget_blocks():
    m = SubscriptionManager(2, 1)
    m.on_connected(False)
    assert m.acquire(1, RR, ["x/1", "x/2"]) == Acquire.SUBSCRIBING
    assert m.acquire(2, RR, ["y/1"]) == Acquire.BLOCKED
    assert m.acquire(3, RR, ["a", "b", "c"]) == Acquire.BLOCKED   # never fits: waits (times out)
    assert m.acquire(4, RR, ["x/2"]) == Acquire.SUBSCRIBING       # shares an existing one
    assert m.used(RR) == 2


def test_streaming_budget_no_capacity_vs_blocked():
    m = SubscriptionManager(2, 1)
    m.on_connected(False)
    assert m.acquire(1, ST, ["s/1"]) == Acquire.SUBSCRIBING
    assert m.acquire(2, ST, ["s/2"]) == Acquire.NO_CAPACITY
    assert m.acquire(3, ST, ["s/1"]) == Acquire.SUBSCRIBING       # same filter: shared
    m.on_subscribe_complete("s/1", None, False)
    m.release(1, ["s/1"])
    m.release(3, ["s/1"])
    _drain(m)
    assert m.records["s/1"].status == Status.UNSUBSCRIBING
    assert m.acquire(4, ST, ["s/2"]) == Acquire.BLOCKED           # frees up after the UNSUBACK


def test_kinds_do_not_share_a_filter():
    m = SubscriptionManager(2, 2)
    m.on_connected(True)
    assert m.acquire(1, ST, ["t"]) == Acquire.SUBSCRIBING
    assert m.acquire(2, RR, ["t"]) == Acquire.BLOCKED


def test_offline_subscribes_wait_for_connection():
    m = SubscriptionManager(2, 2)
    assert m.acquire(1, ST, ["t"]) == Acquire.SUBSCRIBING
    assert _drain(m) == ([], [])
    m.on_connected(False)
    assert _drain(m)[0] == [("subscribe", "t")]


def test_session_loss_reports_lost_and_resubscribes():
    m = SubscriptionManager(2, 2)
    m.on_connected(False)
    m.acquire(1, ST, ["t"])
    m.on_subscribe_complete("t", None, False)
    _drain(m)
    m.on_disconnected()
    m.on_connected(True)                            # session kept: nothing to do
    assert _drain(m) == ([], [])
    m.on_disconnected()
    m.on_connected(False)
    actions, events = _drain(m)
    assert actions == [("subscribe", "t")]
    assert [e[0] for e in events] == ["lost"]


def test_refused_subscription_fails_listeners_and_frees_the_slot():
    m = SubscriptionManager(2, 2)
    m.on_connected(False)
    m.acquire(1, ST, ["t"])
    m.acquire(2, ST, ["t"])
    _drain(m)
    m.on_subscribe_complete("t", "AWS_ERROR_MQTT_PROTOCOL_ADAPTER_FAILING_REASON_CODE", False)
    _, events = _drain(m)
    assert ("capacity",) in events
    failed = [e for e in events if e[0] == "failed"]
    assert failed and failed[0][3] == {1, 2}
    assert m.records == {}


def test_retryable_failure_resubscribes():
    m = SubscriptionManager(2, 2)
    m.on_connected(False)
    m.acquire(1, RR, ["t"])
    _drain(m)
    m.on_subscribe_complete("t", "AWS_ERROR_MQTT5_CLIENT_TERMINATED", True)
    assert _drain(m)[0] == [("subscribe", "t")]
    m.on_disconnected()
    m.on_subscribe_complete("t", "AWS_ERROR_MQTT5_CLIENT_TERMINATED", True)
    assert _drain(m) == ([], [])
    m.on_connected(False)
    assert _drain(m)[0] == [("subscribe", "t")]


def test_released_while_subscribing_unsubscribes_after_suback():
    m = SubscriptionManager(2, 2)
    m.on_connected(False)
    m.acquire(1, RR, ["t"])
    _drain(m)
    m.release(1, ["t"])
    assert _drain(m) == ([], [])
    m.on_subscribe_complete("t", None, False)
    assert _drain(m)[0] == [("unsubscribe", "t")]
