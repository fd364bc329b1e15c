# ruff: noqa: F811  (pytest fixtures imported from helpers)
"""crtpy.aio.s3 against moto's S3 server on loopback."""
from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid

import pytest
from helpers.aio import Ticker, on_each_event_loop, timeout
from helpers.s3_servers import http_request, make_client, moto_server  # noqa: F401 - fixture

from crtpy.aio.s3 import AioS3Request, download, make_request, upload
from crtpy.exceptions import AwsCrtError
from crtpy.s3 import S3ChecksumAlgorithm, S3ChecksumConfig, S3ChecksumLocation, S3RequestType, S3ResponseError

pytestmark = pytest.mark.usefixtures("leak_check")

MIB = 1024 * 1024
PART = 5 * MIB
T = 60.0
SIZE = 12 * MIB  # three parts


@pytest.fixture(scope="module")
def bucket(moto_server):
    name = "crtpy-aio-" + uuid.uuid4().hex[:10]
    moto_server.boto3().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture(scope="module")
def stored(moto_server, bucket, data):
    """A multi-part object uploaded with crtpy.aio (with a checksum) for the download tests."""
    key = "obj-" + uuid.uuid4().hex

    async def main() -> None:
        client = make_client(moto_server.port, part_size=PART)
        req = upload(client, http_request("PUT", moto_server.port, bucket, key,
                                          headers=[("Content-Length", str(SIZE))], body=io.BytesIO(data)),
                     checksum_config=S3ChecksumConfig(algorithm=S3ChecksumAlgorithm.CRC32,
                                                      location=S3ChecksumLocation.TRAILER))
        assert await asyncio.wait_for(req.wait(), T) == b""
        assert req.bytes_transferred == SIZE and req.status_code == 200

    asyncio.run(main())
    head = moto_server.boto3().head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == SIZE
    return key


def test_download_whole_and_chunked_in_order(moto_server, bucket, stored, data):
    async def main() -> None:
        client = make_client(moto_server.port, part_size=PART)
        whole = await asyncio.wait_for(download(client, http_request("GET", moto_server.port, bucket, stored)), T)
        assert hashlib.sha256(whole).digest() == hashlib.sha256(data).digest()
        # chunk by chunk with a small buffer: order kept, never more than the bound unread
        limit = 256 * 1024
        got = bytearray()
        biggest = 0
        async with timeout(T), download(client, http_request("GET", moto_server.port, bucket, stored),
                            max_buffered_bytes=limit) as body:
            async for chunk in body:
                biggest = max(biggest, len(chunk))
                assert body._body.buffered <= limit + biggest
                got += chunk
        assert bytes(got) == data
        assert body.status_code == 206 or body.status_code == 200

    asyncio.run(main())


def test_errors(moto_server, bucket):
    async def main() -> None:
        client = make_client(moto_server.port, part_size=PART)
        with pytest.raises(S3ResponseError) as e:
            await asyncio.wait_for(download(client, http_request("GET", moto_server.port, bucket, "missing")), T)
        assert e.value.status_code == 404
        req = download(client, http_request("GET", moto_server.port, bucket, "missing"))
        with pytest.raises(S3ResponseError):
            async with timeout(T):
                async for _ in req:
                    pass
        with pytest.raises(ValueError):
            download(client, http_request("GET", moto_server.port, bucket, "x"), max_buffered_bytes=0)
        with pytest.raises(TypeError):
            make_request("not a client", type=S3RequestType.GET_OBJECT,  # type: ignore[arg-type]
                         request=http_request("GET", moto_server.port, bucket, "x"))

    asyncio.run(main())


def test_cancellation(moto_server, bucket, stored):
    async def main() -> None:
        client = make_client(moto_server.port, part_size=PART)
        # a reader cancelled mid-body cancels the S3 request
        req = download(client, http_request("GET", moto_server.port, bucket, stored), max_buffered_bytes=64 * 1024)
        first = asyncio.Event()

        async def reader(r: AioS3Request) -> None:
            async for _ in r:
                first.set()

        task = asyncio.create_task(reader(req))
        await asyncio.wait_for(first.wait(), T)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(AwsCrtError) as e:
            await asyncio.wait_for(asyncio.wrap_future(req.request.finished_future), T)
        exc = e.value
        assert isinstance(exc, AwsCrtError) and exc.name == "AWS_ERROR_S3_CANCELED"
        # a cancelled await of an upload aborts it
        key = "cancelled-" + uuid.uuid4().hex
        big = os.urandom(11 * MIB)
        up = upload(client, http_request("PUT", moto_server.port, bucket, key,
                                         headers=[("Content-Length", str(len(big)))], body=io.BytesIO(big)))
        waiter = asyncio.create_task(up.wait())
        await asyncio.sleep(0)  # let the waiter start; the upload may be at any stage when cancelled
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        with pytest.raises(AwsCrtError) as e:
            await asyncio.wait_for(asyncio.wrap_future(up.request.finished_future), T)
        exc = e.value
        assert isinstance(exc, AwsCrtError) and exc.name == "AWS_ERROR_S3_CANCELED"
        # leaving `async with` early cancels too
        async with download(client, http_request("GET", moto_server.port, bucket, stored),
                            max_buffered_bytes=64 * 1024) as body, timeout(T):
            await body.__anext__()
        with pytest.raises(AwsCrtError) as e:
            await asyncio.wait_for(asyncio.wrap_future(body.request.finished_future), T)
        assert e.value.name == "AWS_ERROR_S3_CANCELED"

    asyncio.run(main())
    keys = [o["Key"] for o in moto_server.boto3().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert not any(k.startswith("cancelled-") for k in keys)


async def _ticking(port: int, bucket: str, key: str) -> int:
    client = make_client(port, part_size=PART)
    seen = []
    total = 0
    async with Ticker() as ticker, timeout(T):
        async for chunk in download(client, http_request("GET", port, bucket, key), max_buffered_bytes=MIB):
            total += len(chunk)
            seen.append(ticker.ticks)
    assert total == SIZE and seen[-1] > seen[0]
    return ticker.ticks


def test_running_loop_keeps_ticking_and_uvloop(moto_server, bucket, stored):
    assert all(ticks > 1 for ticks in on_each_event_loop(lambda: _ticking(moto_server.port, bucket, stored)))
