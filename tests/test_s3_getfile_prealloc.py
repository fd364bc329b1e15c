"""A multipart download to recv_filepath reserves the file's blocks in one go once the
object's size is known (crtpy/_s3/filewrite.py preallocate): the file's size still
grows with the writes only, the content is exact, and where the call is refused the
download goes on without it.  Against the fake S3 endpoint of tests/helpers/s3express.py."""
from __future__ import annotations

import os
import sys
from typing import Any

import pytest
from helpers.s3express import FakeS3Express
from test_s3_express import BUCKET, TIMEOUT, _client, _request

from crtpy import s3
from crtpy._s3 import filewrite, meta

MIB = 1024 * 1024
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fallocate(2) is Linux's")


@pytest.fixture
def server():
    srv = FakeS3Express().start()
    yield srv
    srv.stop()


def _get(server: Any, dst: Any, size: int, part: int, **kwargs: Any) -> bytes:
    data = os.urandom(size)
    server.objects[f"/{BUCKET}/k"] = data
    _client(part_size=part, **kwargs).make_request(
        type=s3.S3RequestType.GET_OBJECT, recv_filepath=str(dst),
        request=_request(server, "GET", "k")).finished_future.result(TIMEOUT)
    return data


@linux_only
def test_preallocate_reserves_blocks_without_changing_the_size(tmp_path, monkeypatch):
    _any_filesystem(monkeypatch, tmp_path)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        if not filewrite.preallocate(fd, 3 * MIB):
            pytest.skip("this filesystem cannot preallocate")
        st = os.fstat(fd)
        assert st.st_size == 0
        assert st.st_blocks * 512 >= 3 * MIB
        os.pwrite(fd, b"abc", MIB)
        assert os.fstat(fd).st_size == MIB + 3
        assert os.pread(fd, 4, MIB - 1) == b"\0abc"
    finally:
        os.close(fd)


def test_preallocate_refused_is_harmless(tmp_path):
    assert filewrite.preallocate(-1, MIB) is False  # a bad descriptor: no exception
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        assert filewrite.preallocate(fd, 0) is False
    finally:
        os.close(fd)


@linux_only
@pytest.mark.parametrize("size, part", [(5 * MIB + 7, MIB), (3 * MIB, MIB), (MIB + 1, MIB)])
def test_multipart_download_preallocates_the_whole_object(server, tmp_path, monkeypatch, size, part):
    calls: list[tuple[int, int]] = []
    real = filewrite.preallocate

    def spy(fd: int, n: int) -> bool:
        ok = real(fd, n)
        calls.append((n, os.fstat(fd).st_blocks * 512 if ok else -1))
        return ok

    monkeypatch.setattr(filewrite, "preallocate", spy)
    _any_filesystem(monkeypatch, tmp_path)
    dst = tmp_path / "dst"
    data = _get(server, dst, size, part)
    assert dst.read_bytes() == data
    assert os.path.getsize(dst) == size  # nothing reserved shows past the end
    assert [n for n, _ in calls] == [size]
    if calls[0][1] >= 0:
        assert calls[0][1] >= size


def test_single_part_download_does_not_preallocate(server, tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(filewrite, "preallocate", lambda fd, n: calls.append(n) or True)
    dst = tmp_path / "dst"
    assert _get(server, dst, 1000, MIB) == dst.read_bytes()
    assert calls == []


@linux_only
def test_download_goes_on_when_preallocation_is_refused(server, tmp_path, monkeypatch):
    calls: list[int] = []
    real = filewrite._libc_calls()
    if real is None:
        pytest.skip("no fallocate here")
    monkeypatch.setattr(filewrite, "_libc_calls", lambda: (_refusing(calls), real[1]))
    _any_filesystem(monkeypatch, tmp_path)
    dst = tmp_path / "dst"
    data = _get(server, dst, 3 * MIB + 11, MIB)
    assert dst.read_bytes() == data
    assert calls == [3 * MIB + 11]


def _any_filesystem(monkeypatch: Any, path: Any) -> None:
    """Let preallocate() try on the filesystem of ``path``, whichever it is."""
    fd = os.open(path, os.O_RDONLY)
    try:
        kind = filewrite.fs_type(fd)
    finally:
        os.close(fd)
    monkeypatch.setattr(filewrite, "PREALLOCATE_FS", frozenset({kind}))


def _refusing(calls: list[int]) -> Any:
    def fallocate(fd: int, mode: int, offset: int, n: int) -> int:
        assert mode == filewrite.FALLOC_FL_KEEP_SIZE and offset == 0
        calls.append(n)
        return -1
    return fallocate


@linux_only
def test_other_filesystems_are_not_preallocated(tmp_path, monkeypatch):
    real = filewrite._libc_calls()
    if real is None:
        pytest.skip("no fallocate here")
    calls: list[int] = []
    monkeypatch.setattr(filewrite, "_libc_calls", lambda: (_refusing(calls), real[1]))
    monkeypatch.setattr(filewrite, "PREALLOCATE_FS", frozenset())  # e.g. tmpfs: not listed
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        assert filewrite.preallocate(fd, MIB) is False
        assert os.fstat(fd).st_blocks == 0
    finally:
        os.close(fd)
    assert calls == []


def _mount_type(path: str) -> str | None:
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[1] == path:
                    return fields[2]
    except OSError:
        pass
    return None


@linux_only
def test_fs_type_tells_tmpfs_from_the_temp_dir(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        kind = filewrite.fs_type(fd)
    finally:
        os.close(fd)
    assert kind is not None and kind > 0
    if _mount_type("/dev/shm") == "tmpfs":
        shm = os.open("/dev/shm", os.O_RDONLY)
        try:
            assert filewrite.fs_type(shm) == 0x01021994  # TMPFS_MAGIC
        finally:
            os.close(shm)
    assert filewrite.fs_type(-1) is None


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="needs O_DIRECT")
def test_direct_io_download_does_not_preallocate(server, tmp_path, monkeypatch):
    probe = meta._open_direct(str(tmp_path / "probe"), os.O_WRONLY | os.O_CREAT)
    if probe is None:
        pytest.skip("this filesystem refuses O_DIRECT")
    os.close(probe)
    calls: list[int] = []
    monkeypatch.setattr(filewrite, "preallocate", lambda fd, n: calls.append(n) or True)
    dst = tmp_path / "dst"
    data = _get(server, dst, 4 * MIB + 3, MIB, fio_options=s3.S3FileIoOptions(direct_io=True))
    assert dst.read_bytes() == data
    assert calls == []
