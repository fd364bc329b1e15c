"""A private Mosquitto broker for MQTT tests (3.1.1 and 5).

``Mosquitto(tmpdir, ...)`` writes a config into its own directory and runs the broker on
free 127.0.0.1 ports: a plain listener (``port``), optionally a username/password
listener (``auth_port``, users from ``users``) and a TLS listener (``tls_port``, server
certificate from the test PKI of ``helpers.certs``; ``require_client_cert`` for mTLS).
Extra global options (``max_inflight_messages``, ``max_packet_size``, ``persistence``
(off unless given; its file then lives in the broker's directory), ...) go in ``extra``.  ``stop()``/``start()``/``restart()`` keep the same ports, so clients can
reconnect after a restart.  The fixture ``mosquitto`` gives a started default broker;
``mosquitto_factory`` makes customised ones, all stopped after the test.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest
from conftest import free_port, require_binary

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Mosquitto", "Recorder", "mosquitto", "mosquitto_factory", "wait_port"]


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts TCP connections on ``port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.02)


def _password_line(user: str, password: str) -> str:
    """A mosquitto 2 password file line ($6$: SHA-512 over password + salt)."""
    salt = os.urandom(12)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return f"{user}:$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


class Mosquitto:
    def __init__(self, directory: str, *, binary: str | None = None, tls: bool = False,
                 pki: Any = None, require_client_cert: bool = False,
                 users: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
                 verbose: bool = False) -> None:
        self.binary = binary or require_binary("mosquitto", "/usr/sbin/mosquitto")
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.auth_port = free_port() if users else None
        self.tls_port = free_port() if tls else None
        self.users = dict(users or {})
        self.pki = pki
        self.require_client_cert = require_client_cert
        self.extra = dict(extra or {})
        self.verbose = verbose
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(directory, "mosquitto.log")
        self.conf_path = os.path.join(directory, "mosquitto.conf")
        self._write_config()

    def _write_config(self) -> None:
        lines = ["per_listener_settings true", f"log_dest file {self.log_path}", "log_type error",
                 "log_type warning", "log_type notice", "log_type information"]
        if "persistence" not in self.extra:
            lines.append("persistence false")
        elif "persistence_location" not in self.extra:
            lines.append(f"persistence_location {self.dir}/")
        if self.verbose:
            lines.append("log_type all")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', who cannot read our files
        for key, value in self.extra.items():
            lines.append(f"{key} {value}")
        lines += [f"listener {self.port} {self.host}", "allow_anonymous true"]
        if self.auth_port:
            pw = os.path.join(self.dir, "passwords")
            with open(pw, "w") as f:
                f.writelines(_password_line(u, p) + "\n" for u, p in self.users.items())
            os.chmod(pw, 0o600)
            lines += [f"listener {self.auth_port} {self.host}", "allow_anonymous false",
                      f"password_file {pw}"]
        if self.tls_port:
            if self.pki is None:
                raise ValueError("a TLS listener needs the test PKI (helpers.certs.pki)")
            lines += [f"listener {self.tls_port} {self.host}", "allow_anonymous true",
                      f"cafile {self.pki.ca_cert}", f"certfile {self.pki.server_cert}",
                      f"keyfile {self.pki.server_key}"]
            if self.require_client_cert:
                lines.append("require_certificate true")
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    # -- process control ------------------------------------------------------------------
    def start(self) -> Mosquitto:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen([self.binary, "-c", self.conf_path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for p in (self.port, self.auth_port, self.tls_port):
                if p:
                    wait_port(p)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start; log:\n{self.log()}") from None
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def mosquitto_factory(tmp_path):  # type: ignore[no-untyped-def]
    brokers: list[Mosquitto] = []
    count = [0]

    def make(**kwargs: Any) -> Mosquitto:
        count[0] += 1
        b = Mosquitto(str(tmp_path / f"mosquitto{count[0]}"), **kwargs)
        brokers.append(b)
        return b.start()

    yield make
    for b in brokers:
        b.stop()
    shutil.rmtree(str(tmp_path), ignore_errors=True)


@pytest.fixture
def mosquitto(mosquitto_factory):  # type: ignore[no-untyped-def]
    return mosquitto_factory()


class Recorder:
    """Collects MQTT5 lifecycle events and received messages from client callbacks
    (called on crtpy's callback threads) and lets the test wait for them."""

    def __init__(self) -> None:
        import threading

        self.cond = threading.Condition()
        self.events: list[tuple[str, Any]] = []
        self.messages: list[Any] = []

    def _add(self, kind: str, data: Any) -> None:
        with self.cond:
            if kind == "publish":
                self.messages.append(data.publish_packet)
            self.events.append((kind, data))
            self.cond.notify_all()

    def options(self, **kwargs: Any) -> dict[str, Any]:
        """ClientOptions keyword arguments wiring every callback to this recorder."""
        opts: dict[str, Any] = {
            "on_publish_callback_fn": lambda d: self._add("publish", d),
            "on_lifecycle_event_stopped_fn": lambda d: self._add("stopped", d),
            "on_lifecycle_event_attempting_connect_fn": lambda d: self._add("attempting", d),
            "on_lifecycle_event_connection_success_fn": lambda d: self._add("success", d),
            "on_lifecycle_event_connection_failure_fn": lambda d: self._add("failure", d),
            "on_lifecycle_event_disconnection_fn": lambda d: self._add("disconnection", d)}
        opts.update(kwargs)
        return opts

    def of(self, kind: str) -> list[Any]:
        with self.cond:
            return [d for k, d in self.events if k == kind]

    def wait(self, kind: str, count: int = 1, timeout: float = 10.0) -> Any:
        """Wait for the ``count``-th event of ``kind`` and return it."""
        with self.cond:
            ok = self.cond.wait_for(lambda: len([1 for k, _ in self.events if k == kind]) >= count, timeout)
            if not ok:
                raise AssertionError(f"no {count}x {kind!r} within {timeout}s; events: "
                                     f"{[k for k, _ in self.events]}")
            return [d for k, d in self.events if k == kind][count - 1]

    def wait_messages(self, count: int, timeout: float = 10.0) -> list[Any]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"only {len(self.messages)} of {count} messages within {timeout}s")
            return list(self.messages)
