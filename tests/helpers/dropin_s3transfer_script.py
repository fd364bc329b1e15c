"""Drop-in script: s3transfer's CRT transfer manager on crtpy, against moto.
Usage: dropin_s3transfer_script.py crtpy|awscrt PORT WORKDIR (awscrt: the reference, for
comparison).  Prints one JSON line."""
from __future__ import annotations

import base64
import faulthandler
import hashlib
import io
import json
import os
import sys
import threading

from dropin_run import install

if sys.argv[1] == "crtpy":
    awscrt = install()
else:
    import awscrt
    import awscrt.checksums
    import awscrt.s3

import boto3
import botocore.session
from botocore.config import Config
from moto.server import ThreadedMotoServer
from s3transfer.crt import (
    BotocoreCRTCredentialsWrapper,
    BotocoreCRTRequestSerializer,
    CRTTransferManager,
    create_s3_crt_client,
)
from s3transfer.subscribers import BaseSubscriber

faulthandler.dump_traceback_later(float(os.environ.get("DROPIN_DUMP_AFTER", "50")), exit=True)
MiB = 1024 * 1024
port, work = int(sys.argv[2]), sys.argv[3]

# Record what reaches the server: method, query keys and the checksum-related headers.
from moto.moto_server import werkzeug_app

seen: list[dict] = []
_orig_call = werkzeug_app.DomainDispatcherApplication.__call__


def _recording_call(self, environ, start_response):  # type: ignore[no-untyped-def]
    if "/dropin/" in environ.get("PATH_INFO", ""):
        seen.append({"method": environ["REQUEST_METHOD"], "key": environ["PATH_INFO"].split("/dropin/", 1)[1],
                     "query": sorted(q.split("=")[0] for q in environ.get("QUERY_STRING", "").split("&") if q),
                     "range": environ.get("HTTP_RANGE"),
                     "headers": sorted((k[5:].lower().replace("_", "-"), v) for k, v in environ.items()
                                       if k.startswith(("HTTP_X_AMZ_CHECKSUM", "HTTP_X_AMZ_TRAILER",
                                                        "HTTP_X_AMZ_SDK_CHECKSUM", "HTTP_CONTENT_ENCODING")))})
    return _orig_call(self, environ, start_response)


werkzeug_app.DomainDispatcherApplication.__call__ = _recording_call
endpoint = f"http://127.0.0.1:{port}"
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()


class Progress(BaseSubscriber):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queued = 0
        self.total = 0
        self.calls = 0
        self.done = 0
        self.size: int | None = None

    def on_queued(self, future, **kwargs):  # type: ignore[no-untyped-def]
        with self.lock:
            self.queued += 1

    def on_progress(self, future, bytes_transferred, **kwargs):  # type: ignore[no-untyped-def]
        with self.lock:
            self.total += bytes_transferred
            self.calls += 1

    def on_done(self, future, **kwargs):  # type: ignore[no-untyped-def]
        with self.lock:
            self.done += 1
            self.size = getattr(future.meta, "size", None)

    def report(self) -> dict:
        return {"queued": self.queued, "total": self.total, "calls": self.calls, "done": self.done}


def payload(size: int, seed: bytes) -> bytes:
    block = hashlib.sha512(seed).digest() * (65536 // 64)
    reps = size // len(block) + 1
    data = bytearray(block * reps)[:size]
    data[::4099] = bytes(range(256)) * (len(data[::4099]) // 256) + bytes(range(len(data[::4099]) % 256))
    return bytes(data)


result: dict = {"awscrt_module": awscrt.s3.S3Client.__module__}
try:
    session = botocore.session.Session()
    client_kwargs = {"region_name": "us-east-1", "endpoint_url": endpoint,
                     "config": Config(s3={"addressing_style": "path"})}
    serializer = BotocoreCRTRequestSerializer(session, client_kwargs=dict(client_kwargs))
    provider = BotocoreCRTCredentialsWrapper(session.get_credentials()).to_crt_credentials_provider()
    crt_client = create_s3_crt_client("us-east-1", crt_credentials_provider=provider, num_threads=2,
                                      part_size=5 * MiB, use_ssl=False)
    result["crt_client_module"] = type(crt_client).__module__
    plain = boto3.client("s3", **client_kwargs)
    plain.create_bucket(Bucket="dropin")

    big = payload(20 * MiB, b"big")
    mid = payload(12 * MiB + 12345, b"mid")
    src = os.path.join(work, "big.bin")
    with open(src, "wb") as f:
        f.write(big)
    crc64 = base64.b64encode(awscrt.checksums.crc64nvme(mid).to_bytes(8, "big")).decode()
    subs = {name: Progress() for name in ("up_file", "up_obj", "down_file", "down_obj")}
    with CRTTransferManager(crt_client, serializer) as tm:
        up1 = tm.upload(src, "dropin", "big.bin", extra_args={"ChecksumAlgorithm": "CRC32"},
                        subscribers=[subs["up_file"]])
        up2 = tm.upload(io.BytesIO(mid), "dropin", "mid.bin", extra_args={"ChecksumCRC64NVME": crc64},
                        subscribers=[subs["up_obj"]])
        up1.result(60)
        up2.result(60)
        dst = os.path.join(work, "big.down")
        sink = io.BytesIO()
        d1 = tm.download("dropin", "big.bin", dst, subscribers=[subs["down_file"]])
        d2 = tm.download("dropin", "mid.bin", sink, subscribers=[subs["down_obj"]])
        d1.result(60)
        d2.result(60)
        # a download of a missing key fails through s3transfer's own error translation
        try:
            tm.download("dropin", "missing", io.BytesIO()).result(30)
            result["missing"] = "no error"
        except Exception as exc:  # noqa: BLE001
            result["missing"] = {"types": [c.__name__ for c in type(exc).__mro__],
                                 "code": getattr(exc, "response", {}).get("Error", {}).get("Code")}
    with open(dst, "rb") as f:
        result["down_file_ok"] = f.read() == big
    result["down_obj_ok"] = sink.getvalue() == mid
    result["progress"] = {k: v.report() for k, v in subs.items()}
    result["sizes"] = {"big": len(big), "mid": len(mid)}
    got_big = plain.get_object(Bucket="dropin", Key="big.bin")["Body"].read()
    got_mid = plain.get_object(Bucket="dropin", Key="mid.bin")["Body"].read()
    result["boto3_big_ok"] = got_big == big
    result["boto3_mid_ok"] = got_mid == mid
    h1 = plain.head_object(Bucket="dropin", Key="big.bin", ChecksumMode="ENABLED")
    h2 = plain.head_object(Bucket="dropin", Key="mid.bin", ChecksumMode="ENABLED")
    result["head_big"] = {k: v for k, v in h1.items() if k.startswith(("Checksum", "ETag", "ContentLength"))}
    result["head_mid"] = {k: v for k, v in h2.items() if k.startswith(("Checksum", "ETag", "ContentLength"))}
    result["crc64_expected"] = crc64
    part_crcs = [base64.b64encode(awscrt.checksums.crc32(big[i:i + 5 * MiB]).to_bytes(4, "big"))
                 for i in range(0, len(big), 5 * MiB)]
    comp = b"".join(base64.b64decode(c) for c in part_crcs)
    result["requests"] = seen
    result["crc32_composite_expected"] = (
        base64.b64encode(awscrt.checksums.crc32(comp).to_bytes(4, "big")).decode() + f"-{len(part_crcs)}")
finally:
    server.stop()
print(json.dumps(result, default=str))
