"""Helpers for the tests of the MQTT direct send (``crtpy._mqtt.stream``): a fixture that
makes every submission a direct-send candidate and counts what went which way, and a
stand-in for the duplicate socket that takes only part of each write (or fails)."""
from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from crtpy._mqtt import stream

__all__ = ["DirectStats", "FlakySocket", "direct_stats", "install_flaky", "sometimes_busy"]


class DirectStats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.direct = 0  # direct writes (by a submitting thread)
        self.posted = 0  # items handed to the loop thread

    def __repr__(self) -> str:
        return f"DirectStats(direct={self.direct}, posted={self.posted})"


@pytest.fixture
def direct_stats(monkeypatch: pytest.MonkeyPatch) -> Iterator[DirectStats]:
    """No burst rule (every submission may go direct) and counters of both paths."""
    stats = DirectStats()
    send_locked = stream.LoopInbox._send_locked
    post = stream.LoopInbox._post

    def counting_send(self: Any, sock: Any, data: bytes, answer: bool = False) -> None:
        with stats.lock:
            stats.direct += 1
        send_locked(self, sock, data, answer)

    def counting_post(self: Any, item: Any) -> None:
        with stats.lock:
            stats.posted += 1
        post(self, item)

    monkeypatch.setattr(stream, "_BURST_SEC", 0.0)
    monkeypatch.setattr(stream.LoopInbox, "_send_locked", counting_send)
    monkeypatch.setattr(stream.LoopInbox, "_post", counting_post)
    yield stats


class FlakySocket:
    """Wraps the duplicate socket: ``mode`` "partial" sends at most ``limit`` bytes per
    call, "eagain" takes nothing (BlockingIOError), "epipe" fails (BrokenPipeError)."""

    def __init__(self, real: socket.socket, mode: str, limit: int = 3) -> None:
        self.real = real
        self.mode = mode
        self.limit = limit
        self.calls = 0
        self.short = 0  # calls that did not take everything

    def send(self, data: bytes, flags: int = 0) -> int:
        self.calls += 1
        if self.mode == "eagain":
            self.short += 1
            raise BlockingIOError(11, "fake EAGAIN")
        if self.mode == "epipe":
            self.short += 1
            raise BrokenPipeError(32, "fake EPIPE")
        n = self.real.send(bytes(data[: self.limit]), flags)
        if n < len(data):
            self.short += 1
        return n


def install_flaky(driver: Any, mode: str, limit: int = 3) -> FlakySocket:
    """Replace the current connection's direct socket of ``driver`` (under its lock)."""
    with driver.lock:
        proto = driver.protocol
        assert proto is not None and proto.direct is not None, "no direct socket on this connection"
        flaky = FlakySocket(proto.direct, mode, limit)
        proto.direct = flaky
        return flaky


def sometimes_busy(monkeypatch: pytest.MonkeyPatch, share: float = 0.3, seed: int = 1) -> None:
    """Make the direct send find the transport busy on a random ``share`` of attempts,
    so that operations handed to the loop and direct writes interleave densely."""
    rng = random.Random(seed)
    quiet = stream.LoopInbox._direct_socket_locked

    def maybe(self: Any) -> Any:
        if rng.random() < share:
            return None
        return quiet(self)

    monkeypatch.setattr(stream.LoopInbox, "_direct_socket_locked", maybe)
