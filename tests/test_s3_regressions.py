"""crtpy.s3 regressions found by other helpers: callback calling conventions, a caller's
full-object checksum header on a multipart upload, checksum validation of multipart
objects, cancel right after make_request, unretrieved futures on cancel."""
from __future__ import annotations

import base64
import gc
import io
import logging
import os
import threading
import uuid
from typing import Any

import pytest
from helpers.s3_proxy import FaultProxy
from helpers.s3_servers import http_request, make_client, moto_server  # noqa: F401 - fixture

from crtpy.exceptions import AwsCrtError
from crtpy.s3 import S3ChecksumAlgorithm, S3ChecksumConfig, S3ChecksumLocation, S3RequestType, S3RetryConfig

MIB = 1024 * 1024
PART = 5 * MIB
TIMEOUT = 60


class RecordingProxy(FaultProxy):
    """The fault proxy, also keeping every request's headers."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    def _action_for(self, method: str, path: str, headers: dict[str, str]) -> str | None:
        with self._lock:
            self.seen.append((method, path, dict(headers)))
        return super()._action_for(method, path, headers)


@pytest.fixture(scope="module")
def proxy(moto_server):  # noqa: F811
    p = RecordingProxy(moto_server.port)
    yield p
    p.close()


@pytest.fixture()
def bucket(moto_server, proxy):  # noqa: F811
    proxy.clear()
    proxy.seen.clear()
    name = "regr-" + uuid.uuid4().hex[:12]
    moto_server.boto3().create_bucket(Bucket=name)
    return name


def _client(port: int, **kwargs: Any) -> Any:
    kwargs.setdefault("retry_config", S3RetryConfig(max_retries=3, backoff_scale_factor_ms=5))
    kwargs.setdefault("part_size", PART)
    return make_client(port, **kwargs)


def _put(c: Any, port: int, bucket: str, key: str, data: bytes, checksum: Any = None,
         headers: list[tuple[str, str]] | None = None, **kwargs: Any) -> Any:
    hdrs = [("Content-Length", str(len(data)))] + list(headers or [])
    return c.make_request(type=S3RequestType.PUT_OBJECT,
                          request=http_request("PUT", port, bucket, key, headers=hdrs, body=io.BytesIO(data)),
                          checksum_config=checksum, **kwargs)


def _get(c: Any, port: int, bucket: str, key: str) -> tuple[Any, dict[str, Any], list[bytes]]:
    done: dict[str, Any] = {}
    chunks: list[bytes] = []
    req = c.make_request(type=S3RequestType.GET_OBJECT, request=http_request("GET", port, bucket, key),
                         checksum_config=S3ChecksumConfig(validate_response=True),
                         on_done=lambda **kw: done.update(kw),
                         on_body=lambda chunk, offset, **kw: chunks.append(bytes(chunk)))
    return req, done, chunks


def test_on_progress_is_called_positionally(moto_server, proxy, bucket):  # noqa: F811
    # s3transfer's progress wrapper takes *args and reads args[0]
    totals: list[int] = []
    lock = threading.Lock()

    def on_progress(*args: Any, **kwargs: Any) -> None:
        assert not kwargs and len(args) == 1
        with lock:
            totals.append(args[0])

    c = _client(proxy.port)
    data = os.urandom(2 * PART + 7)
    assert _put(c, proxy.port, bucket, "p", data, on_progress=on_progress).finished_future.exception(TIMEOUT) is None
    assert sum(totals) == len(data)
    totals.clear()
    req = c.make_request(type=S3RequestType.GET_OBJECT, request=http_request("GET", proxy.port, bucket, "p"),
                         on_progress=on_progress)
    assert req.finished_future.exception(TIMEOUT) is None
    assert sum(totals) == len(data)


@pytest.mark.parametrize("algo", ["crc64nvme", "crc32"])
def test_checksum_header_on_multipart_put_is_a_full_object_checksum(moto_server, proxy, bucket, algo):  # noqa: F811
    from crtpy.checksums import crc32, crc64nvme

    data = os.urandom(2 * PART + 12345)
    value = crc64nvme(data).to_bytes(8, "big") if algo == "crc64nvme" else crc32(data).to_bytes(4, "big")
    b64 = base64.b64encode(value).decode()
    c = _client(proxy.port)
    req = _put(c, proxy.port, bucket, "full", data, headers=[(f"x-amz-checksum-{algo}", b64)])
    assert req.finished_future.exception(TIMEOUT) is None
    seen = [(m, p, h) for m, p, h in proxy.seen if p.startswith(f"/{bucket}/full")]
    create = [h for m, p, h in seen if m == "POST" and p.endswith("?uploads")]
    parts = [h for m, p, h in seen if m == "PUT" and "partNumber=" in p]
    complete = [h for m, p, h in seen if m == "POST" and "uploadId=" in p]
    assert len(create) == 1 and len(parts) == 3 and len(complete) == 1
    assert create[0]["x-amz-checksum-algorithm"] == algo.upper()
    assert create[0]["x-amz-checksum-type"].upper() == "FULL_OBJECT"
    for h in parts:
        assert h["x-amz-trailer"] == f"x-amz-checksum-{algo}"
        assert f"x-amz-checksum-{algo}" not in h  # the whole object's value is not a part's
    assert complete[0][f"x-amz-checksum-{algo}"] == b64
    assert complete[0]["x-amz-checksum-type"].upper() == "FULL_OBJECT"
    head = moto_server.boto3().head_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert head[f"Checksum{algo.upper()}"] == b64
    assert moto_server.boto3().get_object(Bucket=bucket, Key="full")["Body"].read() == data


@pytest.mark.parametrize("get_part", [PART, 16 * MIB])
def test_composite_checksum_of_multipart_object_is_not_a_mismatch(moto_server, proxy, bucket, get_part):  # noqa: F811
    # moto stores the CRC32-of-part-CRC32s without the "-N" suffix; like the reference, a
    # checksum that is not stated to be FULL_OBJECT on a multipart object is not compared
    data = os.urandom(12 * MIB)
    c = _client(proxy.port)
    req = _put(c, proxy.port, bucket, "comp", data,
               S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC32, location=S3ChecksumLocation.TRAILER))
    assert req.finished_future.exception(TIMEOUT) is None
    head = moto_server.boto3().head_object(Bucket=bucket, Key="comp", ChecksumMode="ENABLED")
    assert "-" not in head["ChecksumCRC32"] and head["ETag"].endswith('-3"')
    req, done, chunks = _get(_client(proxy.port, part_size=get_part), proxy.port, bucket, "comp")
    assert req.finished_future.exception(TIMEOUT) is None
    assert b"".join(chunks) == data
    assert done["did_validate_checksum"] is False


def test_full_object_checksum_of_multipart_object_is_validated(moto_server, proxy, bucket):  # noqa: F811
    data = os.urandom(12 * MIB)
    c = _client(proxy.port)
    req = _put(c, proxy.port, bucket, "whole", data,
               S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC64NVME, location=S3ChecksumLocation.TRAILER))
    assert req.finished_future.exception(TIMEOUT) is None
    req, done, chunks = _get(c, proxy.port, bucket, "whole")
    assert req.finished_future.exception(TIMEOUT) is None
    assert b"".join(chunks) == data and done["did_validate_checksum"] is True
    # a byte corrupted in a middle part is caught
    proxy.add_rule(lambda m, p, h: m == "GET" and h.get("range", "").startswith(f"bytes={PART}-"), "corrupt", 10)
    req, done, chunks = _get(c, proxy.port, bucket, "whole")
    exc = req.finished_future.exception(TIMEOUT)
    assert isinstance(exc, AwsCrtError) and exc.name == "AWS_ERROR_S3_RESPONSE_CHECKSUM_MISMATCH"


def test_corrupted_single_part_object_is_caught(moto_server, proxy, bucket):  # noqa: F811
    data = os.urandom(MIB)
    moto_server.boto3().put_object(Bucket=bucket, Key="one", Body=data, ChecksumAlgorithm="CRC32")
    proxy.add_rule(lambda m, p, h: m == "GET", "corrupt", 100)
    req, _, _ = _get(_client(proxy.port), proxy.port, bucket, "one")
    exc = req.finished_future.exception(TIMEOUT)
    assert isinstance(exc, AwsCrtError) and exc.name == "AWS_ERROR_S3_RESPONSE_CHECKSUM_MISMATCH"


def test_cancel_right_after_make_request_always_finishes(moto_server, bucket, caplog):  # noqa: F811
    caplog.set_level(logging.ERROR, logger="asyncio")
    c = _client(moto_server.port, retry_config=S3RetryConfig(max_retries=0))
    data = os.urandom(2 * PART + 1)
    outcomes = set()
    for i in range(25):
        calls: list[dict[str, Any]] = []
        req = _put(c, moto_server.port, bucket, f"c{i}", data, on_done=lambda calls=calls, **kw: calls.append(kw))
        req.cancel()
        exc = req.finished_future.exception(TIMEOUT)  # never pending forever
        outcomes.add(getattr(exc, "name", None))
        assert exc is None or exc.name == "AWS_ERROR_S3_CANCELED"
        assert len(calls) == 1
    assert "AWS_ERROR_S3_CANCELED" in outcomes
    uploads = moto_server.boto3().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == []
    del c, req
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_cancel_mid_upload_leaves_no_unretrieved_exchange_errors(moto_server, bucket, caplog):  # noqa: F811
    caplog.set_level(logging.ERROR, logger="asyncio")
    c = _client(moto_server.port)
    data = os.urandom(6 * PART)
    for i in range(4):
        moving = threading.Event()
        req = _put(c, moto_server.port, bucket, f"m{i}", data, on_progress=lambda n, ev=moving: ev.set())
        assert moving.wait(TIMEOUT)
        req.cancel()
        exc = req.finished_future.exception(TIMEOUT)
        assert isinstance(exc, AwsCrtError) and exc.name == "AWS_ERROR_S3_CANCELED"
    assert moto_server.boto3().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    del c, req
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_download_cancelled_at_any_moment_leaves_no_file(moto_server, bucket, tmp_path):  # noqa: F811
    data = os.urandom(2 * PART + 3)
    moto_server.boto3().put_object(Bucket=bucket, Key="d", Body=data)
    c = _client(moto_server.port)
    for i in range(20):
        dst = tmp_path / f"d{i}"
        req = c.make_request(type=S3RequestType.GET_OBJECT, request=http_request("GET", moto_server.port, bucket, "d"),
                             recv_filepath=str(dst))
        req.cancel()
        exc = req.finished_future.exception(TIMEOUT)
        if exc is None:
            assert dst.read_bytes() == data
        else:
            assert isinstance(exc, AwsCrtError) and exc.name == "AWS_ERROR_S3_CANCELED"
            assert not dst.exists()
