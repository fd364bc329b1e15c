"""crtpy._runtime.spin: the bounded, adaptive busy-poll shared by HTTP caller reads and
MQTT inline reads (polls until something is ready or the budget is spent, pauses after
misses, at most one spinner per CPU but one, switched off as a whole)."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from crtpy._runtime import spin


@pytest.fixture(autouse=True)
def enabled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(spin, "ENABLED", True)
    monkeypatch.setattr(spin, "_MAX_SPINNERS", 1)
    yield
    assert spin._spinners[0] == 0  # every spin gave its slot back


class Poll:
    """A poll() that finds something on its ``ready_on``-th call (never: 0)."""

    def __init__(self, ready_on: int = 0) -> None:
        self.calls: list[int] = []
        self.ready_on = ready_on

    def __call__(self, timeout: int) -> list[Any]:
        self.calls.append(timeout)
        return [(3, 1)] if len(self.calls) == self.ready_on else []


def test_returns_what_poll_found_without_blocking() -> None:
    s = spin.Spinner()
    poll = Poll(ready_on=5)
    assert s.spin(poll, 1.0) == [(3, 1)]
    assert poll.calls == [0] * 5  # never a blocking poll
    assert (s.spins, s.hits, s.misses) == (1, 1, 0)


def test_gives_up_after_its_budget() -> None:
    s = spin.Spinner()
    poll = Poll()
    assert s.spin(poll, 0.0005) == []
    assert len(poll.calls) >= 1 and set(poll.calls) == {0}
    assert (s.spins, s.hits, s.misses) == (1, 0, 1)


def test_misses_in_a_row_pause_it_then_it_spins_again() -> None:
    s = spin.Spinner()
    for _ in range(spin.MAX_MISSES):
        assert s.wanted()
        s.spin(Poll(), 0.0)
    assert s.pause == spin.PAUSE and s.misses == 0
    assert [s.wanted() for _ in range(spin.PAUSE)] == [False] * spin.PAUSE
    assert s.wanted()


def test_a_hit_resets_the_misses() -> None:
    s = spin.Spinner()
    for _ in range(spin.MAX_MISSES - 1):
        s.spin(Poll(), 0.0)
    s.spin(Poll(ready_on=1), 1.0)
    s.spin(Poll(), 0.0)
    assert s.pause == 0 and s.misses == 1


def test_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spin, "ENABLED", False)
    assert not spin.Spinner().wanted()


def test_polite_spin_yields_the_cpu_between_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    yields: list[int] = []
    monkeypatch.setattr(spin, "_sched_yield", lambda: yields.append(1))
    spin.Spinner().spin(Poll(ready_on=4), 1.0, polite=True)
    assert len(yields) == 3  # between the four polls
    spin.Spinner().spin(Poll(ready_on=4), 1.0)
    assert len(yields) == 3


def test_one_spinner_at_a_time_the_others_block_at_once() -> None:
    inside = threading.Event()
    release = threading.Event()

    def held(timeout: int) -> list[Any]:
        inside.set()
        release.wait(10)
        return [(1, 1)]

    t = threading.Thread(target=spin.Spinner().spin, args=(held, 10.0))
    t.start()
    try:
        assert inside.wait(10)
        other = spin.Spinner()
        poll = Poll(ready_on=1)
        assert other.spin(poll, 1.0) == []  # the slot is taken: no poll at all
        assert poll.calls == [] and other.spins == 0 and other.misses == 0
    finally:
        release.set()
        t.join(10)
    assert spin.Spinner().spin(Poll(ready_on=1), 1.0) == [(3, 1)]  # the slot is free again


def test_a_failing_poll_frees_the_slot() -> None:
    def broken(timeout: int) -> list[Any]:
        raise OSError("bad descriptor")

    with pytest.raises(OSError):
        spin.Spinner().spin(broken, 1.0)
    assert spin._spinners[0] == 0


def test_spins_that_lose_their_cpu_count_as_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy process sharing the CPU keeps a yielding spinner off it for a time slice:
    even when the answer is there afterwards, blocking would have seen it sooner, so
    such spins pause the spinner like spins that outlast their budget."""
    import time

    monkeypatch.setattr(spin, "_sched_yield", lambda: time.sleep(0.003))
    s = spin.Spinner()
    for i in range(spin.MAX_MISSES):
        assert s.wanted()
        assert s.spin(Poll(ready_on=2), 0.0001, polite=True) == [(3, 1)]  # the answer, late
        assert s.hits == 0
    assert s.pause == spin.PAUSE
    s = spin.Spinner()
    s.spin(Poll(), 0.0001, polite=True)
    s.spin(Poll(ready_on=1), 0.0001, polite=True)  # in time: the misses start over
    assert s.misses == 0 and s.hits == 1


def test_ready_to_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    s = spin.Spinner()
    assert s.ready_to_spin()
    s.pause = 1
    assert not s.ready_to_spin()
    s.pause = 0
    monkeypatch.setattr(spin, "_spinners", [1])
    assert not s.ready_to_spin()  # the slot is taken
    monkeypatch.setattr(spin, "_spinners", [0])
    monkeypatch.setattr(spin, "ENABLED", False)
    assert not s.ready_to_spin()


def test_usable_cpus_follow_the_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert spin._usable_cpus() == 1
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert spin._usable_cpus() == (os.cpu_count() or 1)


def test_fork_child_gets_every_slot_back() -> None:
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    spin._spinners[0] = 1  # a thread of the parent spins while it forks
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: only this thread exists
            ok = spin._spinners[0] == 0 and spin.Spinner().spin(Poll(ready_on=1), 1.0) == [(3, 1)]
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
        os.close(w)
        assert os.read(r, 1) == b"1"
        os.close(r)
        os.waitpid(pid, 0)
    finally:
        spin._spinners[0] = 0
