"""Registry of the threads crtpy starts, so ``common.join_all_native_threads()`` can
wait for the ones whose owners were released."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from . import fork

_lock = threading.Lock()
_threads: set[threading.Thread] = set()


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread owned by crtpy.  Daemon, so interpreter exit never waits
    on a user callback that blocks forever."""
    thread = threading.Thread(target=_run, args=(target,), name=name, daemon=True)
    with _lock:
        _threads.add(thread)
    thread.start()
    return thread


def _run(target: Callable[[], None]) -> None:
    try:
        target()
    finally:
        with _lock:
            _threads.discard(threading.current_thread())


def living() -> list[threading.Thread]:
    with _lock:
        return [t for t in _threads if t.is_alive()]


def join_all(timeout_sec: float = -1.0, *, ignore: Callable[[threading.Thread], bool] | None = None) -> bool:
    """Wait until every crtpy thread (except those ``ignore`` accepts) has finished.
    A negative timeout waits without bound.  Returns False on timeout."""
    deadline = None if timeout_sec is None or timeout_sec < 0 else time.monotonic() + timeout_sec
    current = threading.current_thread()
    while True:
        pending = [t for t in living() if t is not current and not (ignore and ignore(t))]
        if not pending:
            return True
        for t in pending:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            t.join(remaining if remaining is None else min(remaining, 0.5))


@fork.on_fork_child
def _forget_parent_threads() -> None:
    global _lock
    _lock = threading.Lock()
    _threads.clear()
