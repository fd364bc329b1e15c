"""The one exponential backoff with jitter used by every retry and reconnect loop
(S3 part retries, MQTT reconnects, credential refreshes)."""
from __future__ import annotations

import enum
import random
from collections.abc import Callable


class ExponentialBackoffJitterMode(enum.IntEnum):
    """Jitter applied to retry delays.  The one definition: ``crtpy.io`` exports this
    class as ``ExponentialBackoffJitterMode``; crtpy's own code calls it ``JitterMode``."""

    DEFAULT = 0
    NONE = 1
    FULL = 2
    DECORRELATED = 3


JitterMode = ExponentialBackoffJitterMode


class Backoff:
    """Delays for successive retries: ``min_delay * 2**attempt`` capped at ``max_delay``,
    with the chosen jitter.  ``DEFAULT`` means ``FULL``."""

    def __init__(self, min_delay: float, max_delay: float, jitter: int = JitterMode.DEFAULT,
                 rng: Callable[[], float] | None = None) -> None:
        if min_delay < 0 or max_delay < 0:
            raise ValueError("backoff delays must not be negative")
        if max_delay < min_delay:
            raise ValueError(f"max_delay ({max_delay}) is smaller than min_delay ({min_delay})")
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.jitter = JitterMode(jitter)
        self._rng = rng or random.random
        self.attempts = 0
        self._last = min_delay

    def reset(self) -> None:
        self.attempts = 0
        self._last = self.min_delay

    def next_delay(self) -> float:
        """The delay before the next attempt; advances the attempt counter."""
        # (``int ** int`` is typed Any: a negative exponent would give a float)
        ceiling: float = min(self.max_delay, self.min_delay * (2 ** min(self.attempts, 62)))
        self.attempts += 1
        mode = self.jitter
        if mode == JitterMode.NONE:
            delay = ceiling
        elif mode == JitterMode.DECORRELATED:
            upper = max(self.min_delay, self._last * 3)
            delay = min(self.max_delay, self.min_delay + self._rng() * (upper - self.min_delay))
        else:  # DEFAULT and FULL
            delay = self._rng() * ceiling
        self._last = delay
        return delay
