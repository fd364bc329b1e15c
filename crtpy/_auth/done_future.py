"""A future created already completed, cheaply.

Signing with credentials at hand finishes inside ``aws_sign_request``; building a full
``concurrent.futures.Future`` and then completing it costs more than the signature
itself, so such calls return a :class:`DoneFuture` instead.  It is a real
``CrtFuture`` (so ``concurrent.futures.wait``/``as_completed`` accept it): its lock is
made on first use, and reading it needs no lock since it never changes.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures._base import FINISHED
from typing import Any

from .._runtime.callbacks import invoke
from .._runtime.futures import CrtFuture


class DoneFuture(CrtFuture):
    def __init__(self, result: Any = None, exception: BaseException | None = None) -> None:
        super().__init__()  # (builds no Condition) then final from the start
        self._state = FINISHED
        self._result = result
        self._exception = exception

    def result(self, timeout: float | None = None) -> Any:
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self._exception

    def cancel(self) -> bool:
        return False

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        invoke(fn, self)

    def add_done_callback_inline(self, fn: Callable[[Any], object]) -> None:
        fn(self)
