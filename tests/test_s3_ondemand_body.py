"""GET_OBJECT through on_body: the allocator setting that keeps the received bytes'
heap from being trimmed and faulted in again (crtpy/_s3/alloc.py), and the delivery
itself (order, offsets, chunk types, retries of a part whose bytes were partly handed
on).  Against the fake S3 endpoint of tests/helpers/s3express.py."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
from typing import Any

import pytest
from helpers.s3express import FakeS3Express
from test_s3_express import BUCKET, TIMEOUT, _client, _request

from crtpy import s3
from crtpy._s3 import alloc, meta

MIB = 1024 * 1024

# a part's worth of 256 KiB buffers allocated, then all freed, fifty times over: with
# glibc's initial thresholds each round's memory goes back to the kernel and is faulted
# in again; past raise_trim_threshold it stays in the heap
_CHURN = r"""
import resource, sys
import crtpy._s3.alloc as A
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
f0 = faults()
if sys.argv[1] == "1":
    A.raise_trim_threshold()
    A.raise_trim_threshold()
f1 = faults()
for _ in range(50):
    part = [bytearray(256 * 1024) for _ in range(24)]
    del part
print(f1 - f0, faults() - f1)
"""


def _churn(prime: bool) -> tuple[int, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIBC_TUNABLES", "MALLOC_"))}
    out = subprocess.run([sys.executable, "-c", _CHURN, "1" if prime else "0"], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds")
def test_raise_trim_threshold_keeps_freed_buffers_in_the_heap():
    prime_faults, primed = _churn(True)
    _, plain = _churn(False)
    # the block allocated and freed to move the thresholds is never touched
    assert prime_faults < 64
    # 6 MiB alive at once: ~1,536 faults to touch it once, vs ~1,536 per round when trimmed
    assert primed < 4000
    assert plain > 5 * primed


def test_raise_trim_threshold_runs_once(monkeypatch):
    monkeypatch.setattr(alloc, "_done", False)
    alloc.raise_trim_threshold()
    assert alloc._done
    alloc.raise_trim_threshold()  # a no-op now
    assert alloc._done


@pytest.fixture
def server():
    srv = FakeS3Express().start()
    yield srv
    srv.stop()


def _collect(server: Any, size: int, part: int, **kwargs: Any) -> tuple[bytes, list[tuple[Any, int]]]:
    data = os.urandom(size)
    server.objects[f"/{BUCKET}/k"] = data
    calls: list[tuple[Any, int]] = []
    threads: set[str] = set()

    def on_body(chunk: Any, offset: int, **_: Any) -> None:
        calls.append((chunk, offset))
        threads.add(threading.current_thread().name)

    _client(part_size=part, **kwargs).make_request(
        type=s3.S3RequestType.GET_OBJECT, request=_request(server, "GET", "k"),
        on_body=on_body).finished_future.result(TIMEOUT)
    assert all(not name.startswith("crtpy-loop") for name in threads)
    return data, calls


def test_on_body_get_raises_the_threshold_and_a_file_get_does_not(server, monkeypatch, tmp_path):
    seen: list[int] = []
    monkeypatch.setattr(meta, "raise_trim_threshold", lambda: seen.append(1))
    data, calls = _collect(server, 3 * MIB + 5, MIB)
    assert b"".join(bytes(c) for c, _ in calls) == data
    assert seen == [1]
    _client(part_size=MIB).make_request(
        type=s3.S3RequestType.GET_OBJECT, request=_request(server, "GET", "k"),
        recv_filepath=str(tmp_path / "out")).finished_future.result(TIMEOUT)
    assert seen == [1]
    assert (tmp_path / "out").read_bytes() == data


@pytest.mark.parametrize("size", [0, 1, MIB - 1, MIB, MIB + 1, 5 * MIB + 123])
def test_on_body_chunks_are_bytes_in_order_with_their_offsets(server, size):
    data, calls = _collect(server, size, MIB)
    expect = 0
    for chunk, offset in calls:
        assert type(chunk) is bytes
        assert offset == expect
        expect += len(chunk)
    assert expect == size
    assert b"".join(c for c, _ in calls) == data
