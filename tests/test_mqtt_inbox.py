"""LoopInbox._post (crtpy._mqtt.stream, shared by both MQTT drivers): items posted on
the loop thread itself come after the items other threads posted before them."""
from __future__ import annotations

import collections
import threading
from typing import Any

from crtpy._mqtt import stream


class FakeLoopThread:
    def __init__(self) -> None:
        self.on_loop = False
        self.scheduled: list[Any] = []

    def in_thread(self) -> bool:
        return self.on_loop

    def call_soon(self, fn: Any) -> None:
        self.scheduled.append(fn)


class Inbox(stream.LoopInbox):
    """The driver's side of the LoopInbox contract, recording what it handles."""

    def __init__(self) -> None:
        self.loop_thread = FakeLoopThread()
        self.incoming = collections.deque()
        self.incoming_scheduled = False
        self.lock = threading.RLock()
        self.handled: list[str] = []
        self.after = 0

    def _handle_item(self, item: Any) -> None:
        self.handled.append(item)

    def after_core(self) -> None:
        self.after += 1

    def _drain(self) -> None:
        self.incoming_scheduled = False
        with self.lock:
            while self.incoming:
                self._handle_item(self.incoming.popleft())
            self.after_core()


def test_loop_thread_post_waits_behind_earlier_posts() -> None:
    box = Inbox()
    box._post("a")  # from a user thread: queued, a drain scheduled
    box._post("b")
    assert box.handled == [] and len(box.loop_thread.scheduled) == 1
    box.loop_thread.on_loop = True
    box._post("c")  # on the loop, before the scheduled drain ran
    assert box.handled == ["a", "b", "c"] and not box.incoming
    for fn in box.loop_thread.scheduled:  # the drain scheduled earlier finds nothing
        fn()
    assert box.handled == ["a", "b", "c"]


def test_loop_thread_post_with_nothing_queued_is_handled_at_once() -> None:
    box = Inbox()
    box.loop_thread.on_loop = True
    box._post("x")
    assert box.handled == ["x"] and box.after == 1 and box.loop_thread.scheduled == []


# -- the inline reader's wait (stream._wait_readable) --------------------------------------
class Proto:
    """The fields of MqttStreamProtocol that _wait_readable uses."""

    def __init__(self, answer_due: bool) -> None:
        from crtpy._runtime.spin import Spinner

        self.answer_due = answer_due
        self.reader_asleep = False
        self.spinner = Spinner()


def test_wait_never_blocks_without_a_time_limit(monkeypatch: Any) -> None:
    """A wait whose end already passed (the thread was held up) polls once, it does not
    poll(-1)."""
    calls: list[int] = []
    for timeout in (-0.0025, -0.01, -5.0):
        stream._wait_readable(Proto(False), lambda ms: calls.append(ms) or [], timeout)
    assert calls == [0, 0, 0]


def test_wait_spins_for_a_due_answer_then_blocks_for_the_rest(monkeypatch: Any) -> None:
    from crtpy._runtime import spin

    monkeypatch.setattr(spin, "ENABLED", True)
    calls: list[int] = []
    p = Proto(True)
    assert stream._wait_readable(p, lambda ms: calls.append(ms) or [], 0.5) == []
    assert p.spinner.spins == 1 and not p.answer_due and not p.reader_asleep
    assert calls[:-1] == [0] * (len(calls) - 1) and 400 <= calls[-1] <= 501


def test_wait_about_to_end_does_not_spin(monkeypatch: Any) -> None:
    """Less time left than a spin: no spin (it would count as a miss for nothing)."""
    from crtpy._runtime import spin

    monkeypatch.setattr(spin, "ENABLED", True)
    calls: list[int] = []
    p = Proto(True)
    stream._wait_readable(p, lambda ms: calls.append(ms) or [], stream.INLINE_SPIN_SEC / 2)
    assert p.spinner.spins == 0 and calls == [1] and not p.answer_due
