"""Fork handling.

After ``os.fork()`` the child has none of the parent's threads, so every event loop,
callback worker and connection made before the fork is dead there.  The child's
generation number goes up; objects remember the generation they were made in and
raise a clear error when used in another one, and module-level singletons register
reset hooks so the child can build fresh ones.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

_log = logging.getLogger("crtpy.runtime")

_generation = 0
_hooks: list[Callable[[], None]] = []
_hooks_lock = threading.Lock()


def generation() -> int:
    """The current process generation: 0 in the original process, +1 per fork."""
    return _generation


def check(created_in: int, what: str) -> None:
    """Raise AwsCrtError(AWS_ERROR_INVALID_STATE) if an object made in generation
    ``created_in`` is used in another process generation."""
    if created_in != _generation:
        from .._errors import error

        raise error(
            "AWS_ERROR_INVALID_STATE",
            f"this {what} was created before os.fork() and cannot be used in the child "
            "process; create a new one in the child")


def on_fork_child(hook: Callable[[], None]) -> Callable[[], None]:
    """Register ``hook`` to run in the child right after a fork (usable as a decorator).
    Hooks run in registration order and must only drop state, never start threads."""
    with _hooks_lock:
        _hooks.append(hook)
    return hook


def _after_fork_in_child() -> None:
    global _generation, _hooks_lock
    _generation += 1
    # The lock may have been held by a thread that does not exist in the child.
    _hooks_lock = threading.Lock()
    # Iterate over a snapshot: a hook may register another hook.
    for hook in _hooks.copy():
        try:
            hook()
        except Exception:  # noqa: BLE001 - a broken hook must not break the child
            _log.exception("crtpy fork hook %r failed", hook)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
