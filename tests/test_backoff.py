"""The shared retry/backoff helper."""
import pytest

from crtpy._runtime.backoff import Backoff, JitterMode


def test_no_jitter_doubles_up_to_the_cap():
    b = Backoff(0.1, 1.0, JitterMode.NONE)
    assert [round(b.next_delay(), 6) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next_delay() == pytest.approx(0.1)


def test_full_jitter_stays_under_the_exponential_ceiling():
    values = iter([0.0, 0.5, 1.0, 0.999])
    b = Backoff(0.2, 10.0, JitterMode.FULL, rng=lambda: next(values))
    assert b.next_delay() == 0.0
    assert b.next_delay() == pytest.approx(0.2)      # 0.5 * 0.4
    assert b.next_delay() == pytest.approx(0.8)      # 1.0 * 0.8
    assert b.next_delay() == pytest.approx(1.5984)   # 0.999 * 1.6


def test_default_is_full_jitter_and_bounded():
    b = Backoff(1.0, 5.0)
    for _ in range(100):
        assert 0.0 <= b.next_delay() <= 5.0


def test_decorrelated_jitter_is_bounded():
    b = Backoff(0.5, 4.0, JitterMode.DECORRELATED)
    for _ in range(200):
        d = b.next_delay()
        assert 0.5 <= d <= 4.0


def test_huge_attempt_counts_do_not_overflow():
    b = Backoff(1.0, 30.0, JitterMode.NONE)
    for _ in range(5000):
        d = b.next_delay()
    assert d == 30.0


@pytest.mark.parametrize("lo,hi", [(-1, 1), (2, 1)])
def test_bad_bounds_are_rejected(lo, hi):
    with pytest.raises(ValueError):
        Backoff(lo, hi)
