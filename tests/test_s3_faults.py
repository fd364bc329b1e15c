"""crtpy.s3 under faults: a proxy of our own between the client and moto drops
connections, answers 500/503, corrupts bytes.  A transfer either succeeds with identical
data or fails with the right error name; cancel aborts the multipart upload."""
from __future__ import annotations

import io
import os
import threading
import uuid

import pytest
from helpers.certs import pki  # noqa: F401
from helpers.s3_proxy import FaultProxy
from helpers.s3_servers import Recorder, http_request, make_client, moto_server  # noqa: F401

from crtpy.exceptions import AwsCrtError
from crtpy.s3 import S3ChecksumAlgorithm, S3ChecksumConfig, S3ChecksumLocation, S3RequestType, S3RetryConfig

MIB = 1024 * 1024
PART = 5 * MIB
TIMEOUT = 60


@pytest.fixture(scope="module")
def proxy(moto_server):  # noqa: F811
    p = FaultProxy(moto_server.port)
    yield p
    p.close()


@pytest.fixture()
def bucket(moto_server, proxy):  # noqa: F811
    proxy.clear()
    name = "faults-" + uuid.uuid4().hex[:12]
    moto_server.boto3().create_bucket(Bucket=name)
    return name


def _client(proxy, **kwargs):
    kwargs.setdefault("retry_config", S3RetryConfig(max_retries=3, backoff_scale_factor_ms=5))
    return make_client(proxy.port, part_size=PART, **kwargs)


def _put(c, proxy, bucket, key, data, checksum=None, rec=None):
    rec = rec or Recorder()
    req = c.make_request(type=S3RequestType.PUT_OBJECT,
                         request=http_request("PUT", proxy.port, bucket, key,
                                              headers=[("Content-Length", str(len(data)))], body=io.BytesIO(data)),
                         checksum_config=checksum, **rec.callbacks())
    return req, rec


def _get(c, proxy, bucket, key, validate=False, recv=None):
    rec = Recorder()
    req = c.make_request(type=S3RequestType.GET_OBJECT, request=http_request("GET", proxy.port, bucket, key),
                         checksum_config=S3ChecksumConfig(validate_response=validate), recv_filepath=recv,
                         **rec.callbacks())
    return req, rec


def _pending_uploads(moto_server, bucket):  # noqa: F811
    return moto_server.boto3().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def _part(n):
    return lambda m, p, h: m == "PUT" and f"partNumber={n}&" in p


def _range_from(start):
    return lambda m, p, h: m == "GET" and h.get("range", "").startswith(f"bytes={start}-")


def test_upload_survives_drops_and_throttling(moto_server, proxy, bucket):  # noqa: F811
    data = os.urandom(3 * PART + 1)
    proxy.add_rule(_part(2), "drop")
    proxy.add_rule(_part(1), "503")
    proxy.add_rule(_part(3), "500", times=2)
    proxy.add_rule(lambda m, p, h: m == "POST" and "uploadId=" in p, "503")  # CompleteMultipartUpload
    c = _client(proxy)
    req, rec = _put(c, proxy, bucket, "up/x", data,
                    S3ChecksumConfig(S3ChecksumAlgorithm.CRC64NVME, S3ChecksumLocation.TRAILER))
    assert req.finished_future.exception(TIMEOUT) is None
    assert len(proxy.fired) == 5
    assert moto_server.boto3().get_object(Bucket=bucket, Key="up/x")["Body"].read() == data
    assert rec.progress == len(data)
    assert _pending_uploads(moto_server, bucket) == []


def test_upload_gives_up_with_the_error_name_and_aborts(moto_server, proxy, bucket):  # noqa: F811
    data = os.urandom(2 * PART + 1)
    proxy.add_rule(_part(2), "500", times=100)
    c = _client(proxy, retry_config=S3RetryConfig(max_retries=2, backoff_scale_factor_ms=1))
    req, rec = _put(c, proxy, bucket, "up/fail", data)
    exc = req.finished_future.exception(TIMEOUT)
    assert isinstance(exc, AwsCrtError)
    assert exc.name == "AWS_ERROR_S3_INTERNAL_ERROR"
    assert exc.status_code == 500 and exc.operation_name == "UploadPart"
    assert rec.done_kwargs["error_operation_name"] == "UploadPart"
    assert sum(1 for f in proxy.fired if "partNumber=2&" in f[1]) == 3  # first try + 2 retries
    assert _pending_uploads(moto_server, bucket) == []
    s3 = moto_server.boto3()
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_download_survives_dropped_responses(moto_server, proxy, bucket, tmp_path):  # noqa: F811
    data = os.urandom(3 * PART + 17)
    moto_server.boto3().put_object(Bucket=bucket, Key="down/x", Body=data)
    proxy.add_rule(_range_from(PART), "drop_response")
    proxy.add_rule(_range_from(2 * PART), "503")
    proxy.add_rule(_range_from(0), "500")
    c = _client(proxy)
    dst = tmp_path / "out"
    req, rec = _get(c, proxy, bucket, "down/x", recv=str(dst))
    assert req.finished_future.exception(TIMEOUT) is None
    assert len(proxy.fired) == 3
    assert dst.read_bytes() == data
    req, rec = _get(c, proxy, bucket, "down/x")
    assert req.finished_future.exception(TIMEOUT) is None
    assert rec.body() == data


def test_corrupt_single_response_is_retried(moto_server, proxy, bucket):  # noqa: F811
    data = os.urandom(200_000)
    moto_server.boto3().put_object(Bucket=bucket, Key="corrupt/one", Body=data, ChecksumAlgorithm="CRC32")
    proxy.add_rule(lambda m, p, h: m == "GET", "corrupt")
    c = _client(proxy)
    req, rec = _get(c, proxy, bucket, "corrupt/one", validate=True)
    assert req.finished_future.exception(TIMEOUT) is None
    assert proxy.fired and proxy.fired[0][2] == "corrupt"
    assert rec.body() == data
    assert rec.done_kwargs["did_validate_checksum"] is True
    assert rec.done_kwargs["checksum_validation_algorithm"] == S3ChecksumAlgorithm.CRC32


def test_always_corrupt_fails_with_checksum_mismatch(moto_server, proxy, bucket):  # noqa: F811
    data = os.urandom(200_000)
    moto_server.boto3().put_object(Bucket=bucket, Key="corrupt/always", Body=data, ChecksumAlgorithm="SHA256")
    proxy.add_rule(lambda m, p, h: m == "GET", "corrupt", times=100)
    c = _client(proxy, retry_config=S3RetryConfig(max_retries=1, backoff_scale_factor_ms=1))
    req, rec = _get(c, proxy, bucket, "corrupt/always", validate=True)
    exc = req.finished_future.exception(TIMEOUT)
    assert isinstance(exc, AwsCrtError) and exc.name == "AWS_ERROR_S3_RESPONSE_CHECKSUM_MISMATCH"
    assert rec.chunks == []  # no unverified data reached the user


def test_corrupt_part_of_large_object_is_never_silent(moto_server, proxy, bucket, tmp_path):  # noqa: F811
    data = os.urandom(2 * PART + 5)
    c = _client(proxy)
    req, _ = _put(c, proxy, bucket, "corrupt/big", data,
                  S3ChecksumConfig(S3ChecksumAlgorithm.CRC64NVME, S3ChecksumLocation.HEADER))
    assert req.finished_future.exception(TIMEOUT) is None
    proxy.add_rule(_range_from(PART), "corrupt")
    dst = tmp_path / "out"
    req, _rec = _get(c, proxy, bucket, "corrupt/big", validate=True, recv=str(dst))
    exc = req.finished_future.exception(TIMEOUT)
    if exc is None:  # allowed only if the corrupt part was caught and fetched again
        assert dst.read_bytes() == data
    else:
        assert exc.name == "AWS_ERROR_S3_RESPONSE_CHECKSUM_MISMATCH"
        assert not dst.exists()


def test_cancel_mid_upload_aborts(moto_server, proxy, bucket):  # noqa: F811
    data = os.urandom(6 * PART)
    c = _client(proxy, max_active_connections_override=1)
    holder = {}
    first = threading.Event()

    class Canceller(Recorder):
        def on_progress(self, progress, **kwargs):
            super().on_progress(progress)
            first.set()
            holder["req"].cancel()

    rec = Canceller()
    req = c.make_request(type=S3RequestType.PUT_OBJECT,
                         request=http_request("PUT", proxy.port, bucket, "cancel/x",
                                              headers=[("Content-Length", str(len(data)))], body=io.BytesIO(data)),
                         **rec.callbacks())
    holder["req"] = req
    exc = req.finished_future.exception(TIMEOUT)
    assert first.is_set()
    assert isinstance(exc, AwsCrtError) and exc.name == "AWS_ERROR_S3_CANCELED"
    assert rec.progress < len(data)
    assert rec.done_kwargs["error"] is exc
    assert _pending_uploads(moto_server, bucket) == []
    assert any(m == "DELETE" and "uploadId=" in p for m, p in proxy.requests)
    assert req.shutdown_event.wait(10)


def test_complete_error_in_200_is_retried(moto_server, proxy, bucket):  # noqa: F811
    data = os.urandom(PART + 1)
    proxy.add_rule(lambda m, p, h: m == "POST" and "uploadId=" in p, "error200")
    c = _client(proxy)
    req, _ = _put(c, proxy, bucket, "err200/x", data)
    assert req.finished_future.exception(TIMEOUT) is None
    assert proxy.fired and proxy.fired[0][2] == "error200"
    assert moto_server.boto3().get_object(Bucket=bucket, Key="err200/x")["Body"].read() == data


def test_default_request_is_retried(moto_server, proxy, bucket):  # noqa: F811
    moto_server.boto3().put_object(Bucket=bucket, Key="d/x", Body=b"abc")
    proxy.add_rule(lambda m, p, h: m == "HEAD", "503", times=2)
    c = _client(proxy)
    rec = Recorder()
    req = c.make_request(type=S3RequestType.DEFAULT, operation_name="HeadObject",
                         request=http_request("HEAD", proxy.port, bucket, "d/x"), **rec.callbacks())
    assert req.finished_future.exception(TIMEOUT) is None
    assert rec.status == 200 and len(proxy.fired) == 2


def test_cancel_mid_download_removes_the_file(moto_server, proxy, bucket, tmp_path):  # noqa: F811
    data = os.urandom(4 * 1024 * 1024)
    moto_server.boto3().put_object(Bucket=bucket, Key="cancel/get", Body=data)
    c = make_client(proxy.port, part_size=256 * 1024, max_active_connections_override=1)
    holder = {}

    class Canceller(Recorder):
        def on_progress(self, progress, **kwargs):
            super().on_progress(progress)
            holder["req"].cancel()

    rec = Canceller()
    dst = tmp_path / "partial"
    req = c.make_request(type=S3RequestType.GET_OBJECT, request=http_request("GET", proxy.port, bucket, "cancel/get"),
                         recv_filepath=str(dst), **rec.callbacks())
    holder["req"] = req
    exc = req.finished_future.exception(TIMEOUT)
    assert isinstance(exc, AwsCrtError) and exc.name == "AWS_ERROR_S3_CANCELED"
    assert rec.progress < len(data)
    assert not dst.exists()


def test_tls_endpoint_verified(moto_server, pki, bucket):  # noqa: F811
    import ssl

    from crtpy.io import ClientTlsContext, TlsContextOptions
    from crtpy.s3 import S3RequestTlsMode

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
    tls_proxy = FaultProxy(moto_server.port, ssl_context=server_ctx)
    try:
        opts = TlsContextOptions()
        opts.override_default_trust_store(pki.ca_cert.pem)
        conn_opts = ClientTlsContext(opts).new_connection_options()
        c = make_client(tls_proxy.port, part_size=PART, tls_mode=S3RequestTlsMode.ENABLED,
                        tls_connection_options=conn_opts)
        data = os.urandom(PART + 11)
        req, _ = _put(c, tls_proxy, bucket, "tls/x", data)
        assert req.finished_future.exception(TIMEOUT) is None
        req, rec = _get(c, tls_proxy, bucket, "tls/x")
        assert req.finished_future.exception(TIMEOUT) is None
        assert rec.body() == data
        # the default trust store does not know the test CA: the handshake must fail
        untrusted = make_client(tls_proxy.port, tls_mode=S3RequestTlsMode.ENABLED,
                                retry_config=S3RetryConfig(max_retries=1, backoff_scale_factor_ms=1))
        req, _ = _get(untrusted, tls_proxy, bucket, "tls/x")
        exc = req.finished_future.exception(TIMEOUT)
        assert isinstance(exc, AwsCrtError) and "TLS" in exc.name
    finally:
        tls_proxy.close()


def test_fine_progress_counts_every_byte_once_despite_retries(moto_server, proxy, bucket, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CRTPY_S3_PROGRESS_STEP", str(64 * 1024))
    data = os.urandom(2 * PART + 123)
    proxy.add_rule(_part(2), "drop")
    c = _client(proxy)
    calls = []

    class Counting(Recorder):
        def on_progress(self, progress, **kwargs):
            super().on_progress(progress)
            calls.append(progress)

    rec = Counting()
    req, _ = _put(c, proxy, bucket, "fine/x", data, rec=rec)
    assert req.finished_future.exception(TIMEOUT) is None
    assert rec.progress == len(data) and len(calls) > 3 and min(calls) > 0
    calls.clear()
    proxy.add_rule(_range_from(PART), "drop_response")
    rec = Counting()
    req = c.make_request(type=S3RequestType.GET_OBJECT, request=http_request("GET", proxy.port, bucket, "fine/x"),
                         **rec.callbacks())
    assert req.finished_future.exception(TIMEOUT) is None
    assert rec.body() == data
    assert rec.progress == len(data) and len(calls) > 3


# -- GET to a file: parts are written as they arrive, so a failed attempt leaves bytes
# -- behind at the part's offsets that the retry must overwrite
@pytest.mark.parametrize("direct", [False, True])
def test_download_to_file_rewrites_a_part_dropped_midway(moto_server, proxy, bucket, tmp_path, direct):  # noqa: F811
    from crtpy.s3 import S3FileIoOptions

    data = os.urandom(3 * PART + 4096 + 3)
    moto_server.boto3().put_object(Bucket=bucket, Key="down/mid", Body=data)
    proxy.add_rule(_range_from(PART), "drop_response")  # half of part 1, then a reset
    proxy.add_rule(_range_from(3 * PART), "drop_response")  # and of the short last part
    c = _client(proxy, fio_options=S3FileIoOptions(direct_io=direct))
    dst = tmp_path / "out"
    req, rec = _get(c, proxy, bucket, "down/mid", recv=str(dst))
    assert req.finished_future.exception(TIMEOUT) is None
    assert [a for _, _, a in proxy.fired] == ["drop_response", "drop_response"]
    assert dst.read_bytes() == data
    assert rec.progress == len(data)


def test_corrupt_whole_object_to_file_is_retried(moto_server, proxy, bucket, tmp_path):  # noqa: F811
    data = os.urandom(200_000)
    moto_server.boto3().put_object(Bucket=bucket, Key="corrupt/file", Body=data, ChecksumAlgorithm="CRC32C")
    proxy.add_rule(lambda m, p, h: m == "GET", "corrupt")
    c = _client(proxy)
    dst = tmp_path / "out"
    req, rec = _get(c, proxy, bucket, "corrupt/file", validate=True, recv=str(dst))
    assert req.finished_future.exception(TIMEOUT) is None
    assert proxy.fired and proxy.fired[0][2] == "corrupt"
    assert dst.read_bytes() == data
    assert rec.done_kwargs["did_validate_checksum"] is True
    assert rec.done_kwargs["checksum_validation_algorithm"] == S3ChecksumAlgorithm.CRC32C


def test_always_corrupt_to_file_fails_and_leaves_no_file(moto_server, proxy, bucket, tmp_path):  # noqa: F811
    data = os.urandom(200_000)
    moto_server.boto3().put_object(Bucket=bucket, Key="corrupt/file2", Body=data, ChecksumAlgorithm="SHA256")
    proxy.add_rule(lambda m, p, h: m == "GET", "corrupt", times=100)
    c = _client(proxy, retry_config=S3RetryConfig(max_retries=1, backoff_scale_factor_ms=1))
    dst = tmp_path / "out"
    req, _rec = _get(c, proxy, bucket, "corrupt/file2", validate=True, recv=str(dst))
    exc = req.finished_future.exception(TIMEOUT)
    assert isinstance(exc, AwsCrtError) and exc.name == "AWS_ERROR_S3_RESPONSE_CHECKSUM_MISMATCH"
    assert not dst.exists()


def test_corrupt_part_in_a_full_object_checksum_download_to_file(moto_server, proxy, bucket, tmp_path):  # noqa: F811
    """Part CRCs are computed over the streamed pieces (part 0's from the file), combined
    and compared with the full-object checksum; a corrupted part fails the download and
    the file is removed rather than left behind as a success."""
    data = os.urandom(2 * PART + 5)
    c = _client(proxy)
    req, _ = _put(c, proxy, bucket, "corrupt/full", data,
                  S3ChecksumConfig(S3ChecksumAlgorithm.CRC64NVME, S3ChecksumLocation.TRAILER))
    assert req.finished_future.exception(TIMEOUT) is None
    dst = tmp_path / "out"
    req, rec = _get(c, proxy, bucket, "corrupt/full", validate=True, recv=str(dst))
    assert req.finished_future.exception(TIMEOUT) is None
    assert dst.read_bytes() == data
    assert rec.done_kwargs["did_validate_checksum"] is True
    for start in (0, PART):
        proxy.add_rule(_range_from(start), "corrupt", 10)
        req, _rec = _get(c, proxy, bucket, "corrupt/full", validate=True, recv=str(dst))
        exc = req.finished_future.exception(TIMEOUT)
        assert isinstance(exc, AwsCrtError) and exc.name == "AWS_ERROR_S3_RESPONSE_CHECKSUM_MISMATCH"
        assert not dst.exists()
        proxy.clear()
