"""crtpy: the AWS Common Runtime in Python.

The public modules mirror those of ``awscrt`` (``crtpy.io``, ``crtpy.http``,
``crtpy.mqtt5``, ...).  :func:`install_as_awscrt` lets code written for ``awscrt``
run on crtpy unchanged.
"""
from __future__ import annotations

import threading
from typing import ClassVar
from weakref import WeakSet

from ._runtime import fork as _fork
from ._runtime import logs as _logs  # noqa: F401  (sets crtpy's default log level)

__all__ = [
    "aio",
    "auth",
    "aws_iot_metrics",
    "crypto",
    "http",
    "io",
    "logging",
    "mqtt",
    "mqtt5",
    "mqtt_request_response",
    "s3",
    "websocket",
]

__version__ = "0.1.0"
#: The version of the ``awscrt`` API that crtpy implements.
__awscrt_version__ = "0.38.0"


class NativeResource:
    """Base class of every crtpy object that owns runtime resources (threads, sockets,
    connections, clients).

    Tests set ``NativeResource._track_lifetime = True`` to have every new resource
    recorded in ``NativeResource._living`` until it is garbage collected; see
    :func:`crtpy._test.check_for_leaks`.

    Every resource remembers the process it was made in: used in a child after
    ``os.fork()``, it raises ``AwsCrtError(AWS_ERROR_INVALID_STATE)`` instead of
    touching threads that do not exist there (see :meth:`_check_fork`).
    """

    _track_lifetime = False
    _living: ClassVar[WeakSet[NativeResource]] = WeakSet()
    _living_lock = threading.Lock()

    def __init__(self) -> None:
        self._fork_generation = _fork.generation()
        if NativeResource._track_lifetime:
            with NativeResource._living_lock:
                NativeResource._living.add(self)

    def _check_fork(self) -> None:
        """Raise if this resource was created before an ``os.fork()`` of this process."""
        _fork.check(self._fork_generation, type(self).__name__)


def install_as_awscrt() -> None:
    """Make ``import awscrt`` (and every ``awscrt.*`` submodule) give crtpy's modules.

    Call it before anything imports ``awscrt``.  The modules are loaded lazily, on first
    import.  Raises :class:`RuntimeError` if the real ``awscrt`` is already imported,
    because objects of the two runtimes cannot be mixed.
    """
    from ._alias import install

    install()
