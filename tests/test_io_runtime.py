"""EventLoopGroup / DefaultHostResolver / ClientBootstrap lifetimes, InputStream, enums."""
from __future__ import annotations

import gc
import io as pyio
import subprocess
import sys
import threading

import pytest

import crtpy
from crtpy import io
from crtpy._runtime.backoff import JitterMode
from crtpy.exceptions import AwsCrtError


def crtpy_loop_threads():
    return [t for t in threading.enumerate() if t.name.startswith("crtpy-loop-")]


def test_event_loop_group_threads_start_on_first_use(leak_check):
    before = {t.ident for t in crtpy_loop_threads()}
    elg = io.EventLoopGroup(2)
    assert not [t for t in crtpy_loop_threads() if t.ident not in before]
    first = elg._next_loop_thread()
    assert len([t for t in crtpy_loop_threads() if t.ident not in before]) == 1
    second = elg._next_loop_thread()
    assert second is not first
    assert elg._next_loop_thread() is first  # round-robin over the two
    assert len([t for t in crtpy_loop_threads() if t.ident not in before]) == 2
    event = elg.shutdown_event
    del elg, first, second
    gc.collect()
    assert event.wait(10)


def test_unused_event_loop_group_shuts_down(leak_check):
    elg = io.EventLoopGroup(4)
    event = elg.shutdown_event
    del elg
    gc.collect()
    assert event.wait(10)


def test_event_loop_group_shutdown_stops_its_threads(leak_check):
    before = {t.ident for t in crtpy_loop_threads()}
    elg = io.EventLoopGroup(3)
    assert elg._num_threads == 3
    # work runs on the loops, taken in turn: each of the three starts on first use
    assert [elg._next_loop_thread().run_sync(lambda: 42, timeout=5) for _ in range(4)] == [42] * 4
    mine = [t for t in crtpy_loop_threads() if t.ident not in before]
    assert len(mine) == 3
    event = elg.shutdown_event
    assert not event.is_set()
    del elg
    gc.collect()
    assert event.wait(10), "EventLoopGroup shutdown_event never fired"
    for t in mine:
        t.join(5)
        assert not t.is_alive()
    assert not [t for t in crtpy_loop_threads() if t.ident not in before]


def test_bootstrap_shutdown_after_release(leak_check):
    elg = io.EventLoopGroup(1)
    resolver = io.DefaultHostResolver(elg, max_hosts=4)
    bootstrap = io.ClientBootstrap(elg, resolver)
    b_event, e_event = bootstrap.shutdown_event, elg.shutdown_event
    del elg, resolver
    gc.collect()
    assert not e_event.is_set()  # the bootstrap keeps its group alive
    del bootstrap
    gc.collect()
    assert b_event.wait(10) and e_event.wait(10)


def test_static_defaults(leak_check):
    b1 = io.ClientBootstrap.get_or_create_static_default()
    assert io.ClientBootstrap.get_or_create_static_default() is b1
    assert b1._event_loop_group is io.EventLoopGroup.get_or_create_static_default()
    assert b1._host_resolver is io.DefaultHostResolver.get_or_create_static_default()
    event = b1._event_loop_group.shutdown_event
    del b1
    io.ClientBootstrap.release_static_default()
    io.DefaultHostResolver.release_static_default()
    io.EventLoopGroup.release_static_default()
    gc.collect()
    assert event.wait(10)


def test_default_thread_count_and_cpu_group(leak_check):
    from crtpy.common import get_cpu_count_for_group

    elg = io.EventLoopGroup()
    assert 1 <= elg._num_threads
    del elg
    elg = io.EventLoopGroup(cpu_group=0)
    assert elg._num_threads == max(1, get_cpu_count_for_group(0)) or elg._num_threads >= 1
    del elg
    with pytest.raises(ValueError):
        io.EventLoopGroup(cpu_group=10_000)
    with pytest.raises(TypeError):
        io.EventLoopGroup("2")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        io.EventLoopGroup(-1)


def test_constructor_type_checks(leak_check):
    elg = io.EventLoopGroup(1)
    with pytest.raises(TypeError):
        io.DefaultHostResolver("elg")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        io.DefaultHostResolver(elg, max_hosts=0)
    with pytest.raises(TypeError):
        io.ClientBootstrap(elg, "resolver")  # type: ignore[arg-type]


def test_join_all_native_threads_after_release(leak_check):
    elg = io.EventLoopGroup(2)
    bootstrap = io.ClientBootstrap(elg, io.DefaultHostResolver(elg))
    bootstrap._host_resolver._resolve("localhost").result(10)
    del elg, bootstrap
    gc.collect()
    assert crtpy.common.join_all_native_threads(timeout_sec=10)
    assert not crtpy_loop_threads()


def test_using_a_stopped_loop_raises(leak_check):
    elg = io.EventLoopGroup(1)
    lt = elg._next_loop_thread()
    del elg
    gc.collect()
    assert lt.join(10)
    with pytest.raises(AwsCrtError) as e:
        lt.call_soon(lambda: None)
    assert e.value.name == "AWS_IO_EVENT_LOOP_SHUTDOWN"


# -- InputStream -------------------------------------------------------------------------
def test_input_stream_readinto_zero_copy():
    stream = io.InputStream(pyio.BytesIO(b"hello world"))
    buf = bytearray(5)
    assert stream._read_into(memoryview(buf)) == 5 and buf == b"hello"
    assert stream._length() == 11
    assert stream._seek(6) == 6
    assert stream._read_into(memoryview(buf)) == 5 and buf == b"world"
    assert stream._read_into(memoryview(buf)) == 0


def test_input_stream_read_only_and_nonblocking():
    class ReadOnly:
        def __init__(self):
            self.chunks = [b"ab", None, b"c", b""]

        def read(self, n):
            return self.chunks.pop(0)

    stream = io.InputStream(ReadOnly())
    buf = bytearray(8)
    assert stream._read_into(memoryview(buf)) == 2
    assert stream._read_into(memoryview(buf)) is None  # would block
    assert stream._read_into(memoryview(buf)) == 1
    assert stream._read_into(memoryview(buf)) == 0
    assert stream._length() is None
    with pytest.raises(AwsCrtError) as e:
        stream._seek(0)
    assert e.value.name == "AWS_IO_STREAM_SEEK_UNSUPPORTED"


def test_input_stream_wrap():
    raw = pyio.BytesIO(b"x")
    wrapped = io.InputStream.wrap(raw)
    assert isinstance(wrapped, io.InputStream)
    assert io.InputStream.wrap(wrapped) is wrapped
    assert io.InputStream.wrap(None, allow_none=True) is None
    with pytest.raises(TypeError):
        io.InputStream.wrap(None)
    with pytest.raises(TypeError):
        io.InputStream(42)  # type: ignore[arg-type]


def test_input_stream_read_error_is_awscrterror():
    class Broken(pyio.RawIOBase):
        def readinto(self, b):
            raise OSError("disk on fire")

    with pytest.raises(AwsCrtError) as e:
        io.InputStream(Broken())._read_into(memoryview(bytearray(4)))
    assert e.value.name == "AWS_IO_STREAM_READ_FAILED"


# -- enums -------------------------------------------------------------------------------
def test_enum_values_match_reference():
    awscrt_io = pytest.importorskip("awscrt.io")
    for name in ("LogLevel", "SocketDomain", "SocketType", "TlsVersion", "TlsCipherPref",
                 "ExponentialBackoffJitterMode"):
        mine, ref = getattr(io, name), getattr(awscrt_io, name)
        assert {m.name: m.value for m in mine} == {m.name: m.value for m in ref}, name
    assert {m.name: m.value for m in io.Pkcs11Lib.InitializeFinalizeBehavior} == \
        {m.name: m.value for m in awscrt_io.Pkcs11Lib.InitializeFinalizeBehavior}


def test_jitter_mode_single_definition():
    for m in io.ExponentialBackoffJitterMode:
        assert JitterMode(m.value).name == m.name


def test_public_modules_import_without_warnings() -> None:
    # A fresh interpreter, with every warning turned into an error: importing the package and
    # its main public modules must not warn (no DeprecationWarning, ResourceWarning, ...).
    modules = "crtpy, crtpy.io, crtpy.http, crtpy.mqtt5, crtpy.s3, crtpy.auth"
    proc = subprocess.run([sys.executable, "-W", "error", "-c", f"import {modules}"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
