"""crtpy.s3 against moto's S3 server on loopback: PUT/GET (single and multipart), every
checksum algorithm in both locations, files, callbacks, DEFAULT requests.  boto3 on the
same server is the independent reader/writer."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import uuid

import pytest
import xxhash
from helpers.s3_servers import Recorder, http_request, make_client, moto_server  # noqa: F401

from crtpy import checksums
from crtpy.s3 import S3ChecksumAlgorithm, S3ChecksumConfig, S3ChecksumLocation, S3RequestType, S3ResponseError

MIB = 1024 * 1024
PART = 5 * MIB  # S3's (and moto's) minimum upload part size
TIMEOUT = 60


@pytest.fixture(scope="module")
def bucket(moto_server):  # noqa: F811
    name = "crtpy-" + uuid.uuid4().hex[:12]
    moto_server.boto3().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def client(moto_server):  # noqa: F811
    c = make_client(moto_server.port, part_size=PART)
    yield c
    del c


def _data(n: int) -> bytes:
    return os.urandom(n)


def _put(client, srv, bucket, key, data, *, checksum=None, from_file=None, rec=None, headers=()):
    rec = rec or Recorder()
    body = None if from_file else io.BytesIO(data)
    req = client.make_request(
        type=S3RequestType.PUT_OBJECT,
        request=http_request("PUT", srv.port, bucket, key, headers=[("Content-Length", str(len(data))), *headers],
                             body=body),
        send_filepath=from_file, checksum_config=checksum, **rec.callbacks())
    exc = req.finished_future.exception(TIMEOUT)
    assert exc is None, exc
    return rec


def _get(client, srv, bucket, key, *, validate=False, recv=None):
    rec = Recorder()
    req = client.make_request(type=S3RequestType.GET_OBJECT, request=http_request("GET", srv.port, bucket, key),
                              recv_filepath=recv, checksum_config=S3ChecksumConfig(validate_response=validate),
                              **rec.callbacks())
    exc = req.finished_future.exception(TIMEOUT)
    return rec, exc


def _expected(algo: S3ChecksumAlgorithm, data: bytes) -> str:
    if algo == S3ChecksumAlgorithm.CRC32:
        raw = checksums.crc32(data).to_bytes(4, "big")
    elif algo == S3ChecksumAlgorithm.CRC32C:
        raw = checksums.crc32c(data).to_bytes(4, "big")
    elif algo == S3ChecksumAlgorithm.CRC64NVME:
        raw = checksums.crc64nvme(data).to_bytes(8, "big")
    elif algo == S3ChecksumAlgorithm.XXHASH64:
        raw = xxhash.xxh64(data).digest()
    elif algo == S3ChecksumAlgorithm.XXHASH3:
        raw = xxhash.xxh3_64(data).digest()
    elif algo == S3ChecksumAlgorithm.XXHASH128:
        raw = xxhash.xxh3_128(data).digest()
    else:
        raw = hashlib.new(algo.name.lower(), data).digest()
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("size", [0, 1, PART - 1, PART, PART + 1, 3 * PART + 12345])
def test_put_then_get_sizes(client, moto_server, bucket, size):  # noqa: F811
    data = _data(size)
    key = f"sizes/{size}"
    rec = _put(client, moto_server, bucket, key, data)
    assert rec.progress == size
    assert rec.status == 200
    assert rec.done_kwargs["error"] is None and rec.done_kwargs["status_code"] == 200
    stored = moto_server.boto3().get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == data
    if size > PART:
        assert stored["ETag"].endswith(f'-{-(-size // PART)}"')  # a multipart upload
    got, exc = _get(client, moto_server, bucket, key)
    assert exc is None
    assert got.body() == data
    assert got.progress == size
    assert got.status == 200
    assert {n.lower(): v for n, v in got.headers}["content-length"] == str(size)


@pytest.mark.parametrize("location", list(S3ChecksumLocation))
@pytest.mark.parametrize("algo", list(S3ChecksumAlgorithm))
def test_single_put_checksum_matches_server(client, moto_server, bucket, algo, location):  # noqa: F811
    data = _data(100_000)
    key = f"cks/{algo.name}/{location.name}"
    _put(client, moto_server, bucket, key, data, checksum=S3ChecksumConfig(algorithm=algo, location=location))
    stored = moto_server.boto3().get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert stored["Body"].read() == data
    assert stored[f"Checksum{algo.name}"] == _expected(algo, data)
    rec, exc = _get(client, moto_server, bucket, key, validate=True)
    assert exc is None and rec.body() == data
    assert rec.done_kwargs["did_validate_checksum"] is True
    assert rec.done_kwargs["checksum_validation_algorithm"] == algo


@pytest.mark.parametrize("location", list(S3ChecksumLocation))
@pytest.mark.parametrize("algo", list(S3ChecksumAlgorithm))
def test_multipart_checksums(client, moto_server, bucket, algo, location, tmp_path):  # noqa: F811
    data = _data(2 * PART + 7)
    path = tmp_path / "src"
    path.write_bytes(data)
    key = f"mpu-cks/{algo.name}/{location.name}"
    _put(client, moto_server, bucket, key, data, checksum=S3ChecksumConfig(algorithm=algo, location=location),
         from_file=str(path))
    s3 = moto_server.boto3()
    stored = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert stored["Body"].read() == data
    value = stored[f"Checksum{algo.name}"]
    if algo == S3ChecksumAlgorithm.CRC64NVME:
        # full-object checksum, combined by crtpy from the part CRCs
        assert stored["ChecksumType"] == "FULL_OBJECT"
        assert value == _expected(algo, data)
        rec, exc = _get(client, moto_server, bucket, key, validate=True)
        assert exc is None and rec.body() == data
        assert rec.done_kwargs["did_validate_checksum"] is True
    else:
        assert stored["ChecksumType"] == "COMPOSITE" and value.endswith("-3")


def test_files_both_ways(client, moto_server, bucket, tmp_path):  # noqa: F811
    data = _data(2 * PART + 99)
    src = tmp_path / "src"
    src.write_bytes(data)
    rec = _put(client, moto_server, bucket, "files/a", data, from_file=str(src),
               checksum=S3ChecksumConfig(S3ChecksumAlgorithm.CRC32C, S3ChecksumLocation.TRAILER))
    assert rec.progress == len(data)
    dst = tmp_path / "dst"
    got, exc = _get(client, moto_server, bucket, "files/a", recv=str(dst))
    assert exc is None
    assert got.chunks == []  # no on_body with recv_filepath
    assert got.progress == len(data)
    assert dst.read_bytes() == data


def test_get_missing_object(client, moto_server, bucket, tmp_path):  # noqa: F811
    dst = tmp_path / "never"
    rec, exc = _get(client, moto_server, bucket, "does/not/exist", recv=str(dst))
    assert isinstance(exc, S3ResponseError)
    assert exc.status_code == 404
    assert exc.operation_name == "GetObject"
    assert b"NoSuchKey" in exc.body
    assert rec.done_kwargs["error_headers"] is not None
    assert rec.done_kwargs["status_code"] == 404
    assert not dst.exists()


def test_user_headers_reach_the_object(client, moto_server, bucket):  # noqa: F811
    data = _data(PART + 10)
    _put(client, moto_server, bucket, "meta/x", data,
         headers=[("Content-Type", "text/x-crtpy"), ("x-amz-meta-color", "blue")])
    head = moto_server.boto3().head_object(Bucket=bucket, Key="meta/x")
    assert head["ContentType"] == "text/x-crtpy"
    assert head["Metadata"] == {"color": "blue"}


def _default(client, srv, method, bucket, key="", query="", op="X", body=None):
    rec = Recorder()
    headers = [("Content-Length", str(len(body)))] if body is not None else []
    req = client.make_request(type=S3RequestType.DEFAULT, operation_name=op,
                              request=http_request(method, srv.port, bucket, key, query, headers,
                                                   io.BytesIO(body) if body is not None else None),
                              **rec.callbacks())
    return rec, req.finished_future.exception(TIMEOUT)


def test_default_requests(client, moto_server, bucket):  # noqa: F811
    _put(client, moto_server, bucket, "dflt/one", b"hello world")
    rec, exc = _default(client, moto_server, "HEAD", bucket, "dflt/one", op="HeadObject")
    assert exc is None and rec.status == 200
    assert {n.lower(): v for n, v in rec.headers}["content-length"] == "11"
    rec, exc = _default(client, moto_server, "GET", bucket, "", "list-type=2&prefix=dflt/", op="ListObjectsV2")
    assert exc is None
    assert b"<Key>dflt/one</Key>" in rec.body()
    rec, exc = _default(client, moto_server, "DELETE", bucket, "dflt/one", op="DeleteObject")
    assert exc is None and rec.status == 204
    rec, exc = _default(client, moto_server, "HEAD", bucket, "dflt/one", op="HeadObject")
    assert isinstance(exc, S3ResponseError) and exc.status_code == 404
    assert rec.done_kwargs["error_operation_name"] == "HeadObject"


def test_on_body_order_and_many_parts(moto_server, bucket):  # noqa: F811
    # small GET parts (GET has no 5 MiB minimum): many parallel ranges, delivered in order
    data = _data(3 * MIB + 5)
    c = make_client(moto_server.port, part_size=256 * 1024, max_active_connections_override=6)
    moto_server.boto3().put_object(Bucket=bucket, Key="order/x", Body=data)
    rec, exc = _get(c, moto_server, bucket, "order/x")
    assert exc is None
    assert rec.body() == data  # Recorder.body() asserts the offsets are in order
    assert rec.progress == len(data)


class _Unseekable(io.RawIOBase):
    """A stream of unknown length (no seek, no tell)."""

    def __init__(self, data: bytes) -> None:
        self._src = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        return self._src.readinto(b)


@pytest.mark.parametrize("size", [0, 1000, 2 * PART + 3])
def test_put_from_stream_of_unknown_length(client, moto_server, bucket, size):  # noqa: F811
    data = _data(size)
    rec = Recorder()
    req = client.make_request(type=S3RequestType.PUT_OBJECT,
                              request=http_request("PUT", moto_server.port, bucket, f"unknown/{size}",
                                                   body=_Unseekable(data)),
                              checksum_config=S3ChecksumConfig(S3ChecksumAlgorithm.CRC32, S3ChecksumLocation.TRAILER),
                              **rec.callbacks())
    assert req.finished_future.exception(TIMEOUT) is None
    assert rec.progress == size
    assert moto_server.boto3().get_object(Bucket=bucket, Key=f"unknown/{size}")["Body"].read() == data


def test_get_with_user_range_is_passed_through(client, moto_server, bucket):  # noqa: F811
    data = _data(PART + 100)
    moto_server.boto3().put_object(Bucket=bucket, Key="range/x", Body=data)
    rec = Recorder()
    req = client.make_request(type=S3RequestType.GET_OBJECT,
                              request=http_request("GET", moto_server.port, bucket, "range/x",
                                                   headers=[("Range", "bytes=10-99")]),
                              **rec.callbacks())
    assert req.finished_future.exception(TIMEOUT) is None
    assert rec.status == 206
    assert rec.body() == data[10:100]
