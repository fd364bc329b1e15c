"""S3FileIoOptions on uploads from send_filepath: direct_io reads through O_DIRECT where
the platform and filesystem allow it (falling back to the page cache), should_stream
drops the file's cached pages once read, and with disk_throughput_gbps bounds the parts
in flight.  Against the fake S3 Express endpoint (tests/helpers/s3express.py)."""
from __future__ import annotations

import itertools
import os

import pytest
from helpers.s3express import FakeS3Express
from test_s3_express import BUCKET, TIMEOUT, _client, _request

from crtpy import s3
from crtpy._s3 import filewrite, meta

MIB = 1024 * 1024


@pytest.fixture
def server():
    srv = FakeS3Express().start()
    yield srv
    srv.stop()


@pytest.fixture
def sources(monkeypatch):
    made: list[meta._FileSource] = []
    real = meta._FileSource.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(meta._FileSource, "__init__", init)
    return made


def _upload(client, server, path, key="obj", **kwargs):
    size = os.path.getsize(path)
    client.make_request(type=s3.S3RequestType.PUT_OBJECT, send_filepath=str(path),
                        request=_request(server, "PUT", key, headers=[("Content-Length", str(size))]),
                        **kwargs).finished_future.result(TIMEOUT)
    return server.objects[f"/{BUCKET}/{key}"]


def _file(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "src"
    path.write_bytes(data)
    return path, data


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="needs O_DIRECT")
@pytest.mark.parametrize("size, part", [(12 * MIB + 7, 5 * MIB), (3 * MIB + 1, 8 * MIB), (11 * MIB, 5 * MIB + 1)])
def test_direct_io_upload(server, tmp_path, sources, size, part):
    path, data = _file(tmp_path, size)
    probe = meta._open_direct(str(path))
    if probe is None:
        pytest.skip("this filesystem refuses O_DIRECT")
    os.close(probe)
    client = _client(part_size=part, fio_options=s3.S3FileIoOptions(direct_io=True))
    assert _upload(client, server, path) == data
    (src,) = sources
    parts = -(-size // max(part, 5 * MIB)) if size > part else 1
    aligned = sum(1 for i in range(parts) if (i * part) % 4096 == 0)
    assert src.direct_reads == aligned and aligned >= 1
    assert src.direct_fd is None  # closed


def test_direct_io_refused_falls_back(server, tmp_path, sources, monkeypatch):
    monkeypatch.delattr(os, "O_DIRECT", raising=False)
    path, data = _file(tmp_path, 6 * MIB + 5)
    client = _client(part_size=5 * MIB, fio_options=s3.S3FileIoOptions(direct_io=True))
    assert _upload(client, server, path) == data
    assert sources[0].direct_fd is None and sources[0].direct_reads == 0


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="needs posix_fadvise")
def test_should_stream_drops_cache_and_bounds_parts_in_flight(server, tmp_path, monkeypatch):
    advice: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def recording(fd, offset, length, how):
        if how == os.POSIX_FADV_DONTNEED:
            advice.append((offset, length))
        return real(fd, offset, length, how)

    monkeypatch.setattr(os, "posix_fadvise", recording)
    size = 26 * MIB + 3
    path, data = _file(tmp_path, size)
    client = _client(part_size=5 * MIB, max_active_connections_override=8)
    fio = s3.S3FileIoOptions(should_stream=True, disk_throughput_gbps=1.0)  # ~1 part in flight per 1.25 Gbps
    assert _upload(client, server, path, fio_options=fio) == data  # request level over the client's
    assert sorted(advice) == [(i * 5 * MIB, min(5 * MIB, size - i * 5 * MIB)) for i in range(6)]
    assert server.max_inflight <= 2
    # without the options the same client leaves the page cache alone
    advice.clear()
    server.max_inflight = 0
    assert _upload(client, server, path, key="again") == data
    assert advice == []


def test_fio_defaults_change_nothing(server, tmp_path, sources):
    path, data = _file(tmp_path, 100_000)
    assert _upload(_client(fio_options=s3.S3FileIoOptions()), server, path) == data
    assert sources[0].direct_fd is None and not sources[0].drop_cache


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="needs O_DIRECT")
@pytest.mark.parametrize("size, part", [(3 * MIB + 5, MIB), (4 * MIB, MIB), (2 * MIB + 100, MIB + 1)])
def test_direct_io_download(server, tmp_path, monkeypatch, size, part):
    """crtpy's extension: direct_io also writes recv_filepath through O_DIRECT."""
    probe = meta._open_direct(str(tmp_path / "probe"), os.O_WRONLY | os.O_CREAT)
    if probe is None:
        pytest.skip("this filesystem refuses O_DIRECT")
    os.close(probe)
    writers: list[filewrite.FileWriter] = []
    direct_writes: list[tuple[int, int]] = []
    real_init, real_write = filewrite.FileWriter.__init__, filewrite.FileWriter.direct_write

    def init(self, *args):
        real_init(self, *args)
        writers.append(self)

    def write(self, view, offset):
        if self.direct_ok:
            direct_writes.append((offset, len(view)))
        return real_write(self, view, offset)

    monkeypatch.setattr(filewrite.FileWriter, "__init__", init)
    monkeypatch.setattr(filewrite.FileWriter, "direct_write", write)
    data = os.urandom(size)
    server.objects[f"/{BUCKET}/k"] = data
    dst = tmp_path / "dst"
    client = _client(part_size=part, fio_options=s3.S3FileIoOptions(direct_io=True))
    client.make_request(type=s3.S3RequestType.GET_OBJECT, recv_filepath=str(dst),
                        request=_request(server, "GET", "k")).finished_future.result(TIMEOUT)
    assert dst.read_bytes() == data
    (writer,) = writers
    assert writer.direct_fd is None  # closed
    if part % 4096 == 0:
        # part 0 (streamed before the size is known) goes through the page cache, and so
        # does the unaligned end; everything between is written directly, once
        direct_writes.sort()
        assert all(off % 4096 == 0 and n % 4096 == 0 for off, n in direct_writes)
        assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(direct_writes))
        assert direct_writes[0][0] == part
        assert sum(n for _, n in direct_writes) == size - size % 4096 - part
    else:
        assert not writer.direct_ok  # unaligned parts: all through the page cache


def test_direct_io_download_refused_falls_back(server, tmp_path, monkeypatch):
    monkeypatch.delattr(os, "O_DIRECT", raising=False)
    data = os.urandom(3 * MIB + 1)
    server.objects[f"/{BUCKET}/k"] = data
    dst = tmp_path / "dst"
    client = _client(part_size=MIB, fio_options=s3.S3FileIoOptions(direct_io=True))
    client.make_request(type=s3.S3RequestType.GET_OBJECT, recv_filepath=str(dst),
                        request=_request(server, "GET", "k")).finished_future.result(TIMEOUT)
    assert dst.read_bytes() == data


@pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="needs O_DIRECT")
@pytest.mark.parametrize("memory_limit", [None, 4 * MIB])  # writes in the background / inline
def test_direct_io_download_cancelled(server, tmp_path, monkeypatch, memory_limit):
    """A cancel during direct writes: the request fails as cancelled, the partial file is
    removed and no descriptor is left open."""
    import threading

    from crtpy.exceptions import AwsCrtError

    started, release = threading.Event(), threading.Event()
    real_job = filewrite.FileWriter.job

    def slow_job(self, att, pieces, offset, final):
        if att.direct:  # a part after the first, once the O_DIRECT descriptor is open
            started.set()
            release.wait(TIMEOUT)
        return real_job(self, att, pieces, offset, final)

    monkeypatch.setattr(filewrite.FileWriter, "job", slow_job)
    server.objects[f"/{BUCKET}/k"] = os.urandom(6 * MIB)
    dst = tmp_path / "dst"
    client = _client(part_size=MIB, fio_options=s3.S3FileIoOptions(direct_io=True), memory_limit=memory_limit)
    req = client.make_request(type=s3.S3RequestType.GET_OBJECT, recv_filepath=str(dst),
                              request=_request(server, "GET", "k"))
    assert started.wait(TIMEOUT)
    req.cancel()
    release.set()
    with pytest.raises(AwsCrtError) as info:
        req.finished_future.result(TIMEOUT)
    assert info.value.name == "AWS_ERROR_S3_CANCELED"
    assert not dst.exists()

    def open_on_dst() -> list[str]:
        found = []
        for name in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                continue
            if target.startswith(str(dst)):
                found.append(target)
        return found

    assert open_on_dst() == []  # neither the plain nor the O_DIRECT descriptor
