"""Drop-in script: botocore's CRT signers (on crtpy) against a moto server that verifies
SigV4 signatures.  Usage: dropin_botocore_script.py PORT.  Prints one JSON line."""
from __future__ import annotations

import datetime
import json
import os
import sys
import urllib.error
import urllib.request

os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"  # read when moto is imported: auth after 3 calls

from dropin_run import install

awscrt = install()

import boto3
import botocore.auth
import botocore.crt.auth as crt_auth
import moto.settings
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from moto.server import ThreadedMotoServer

port = int(sys.argv[1])
endpoint = f"http://127.0.0.1:{port}"
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
result: dict = {"awscrt_module": awscrt.s3.S3Client.__module__,
                "auth_map_s3v4": botocore.auth.AUTH_TYPE_MAPS["s3v4"].__module__,
                "auth_map_v4": botocore.auth.AUTH_TYPE_MAPS["v4"].__module__}


def client(service: str, creds: tuple[str, str], **kw):  # type: ignore[no-untyped-def]
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=creds[0], aws_secret_access_key=creds[1], **kw)


try:
    # The three free actions: a user with an access key allowed everything.
    iam = client("iam", ("AKIAFREE", "free"))
    iam.create_user(UserName="dropin")
    key = iam.create_access_key(UserName="dropin")["AccessKey"]
    iam.put_user_policy(UserName="dropin", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    good = (key["AccessKeyId"], key["SecretAccessKey"])
    creds = Credentials(*good)

    # -- 1. boto3 clients as users run them: signing goes through botocore.crt.auth ----
    s3 = client("s3", good, config=Config(s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket="dropin")
    s3.put_object(Bucket="dropin", Key="dir/hello world.txt", Body=b"hello from crtpy")
    result["boto3_get"] = s3.get_object(Bucket="dropin", Key="dir/hello world.txt")["Body"].read().decode()
    result["boto3_sts_arn"] = client("sts", good).get_caller_identity()["Arn"]
    result["boto3_iam_users"] = [u["UserName"] for u in client("iam", good).list_users()["Users"]]
    # botocore's flexible checksums come from awscrt.checksums (crtpy here) when the CRT is present
    body = bytes(range(256)) * 4099
    result["flexible"] = {}
    for algo in ("CRC32C", "CRC64NVME"):
        s3.put_object(Bucket="dropin", Key=f"ck-{algo}", Body=body, ChecksumAlgorithm=algo)
        head = s3.head_object(Bucket="dropin", Key=f"ck-{algo}", ChecksumMode="ENABLED")
        got = s3.get_object(Bucket="dropin", Key=f"ck-{algo}", ChecksumMode="ENABLED")
        result["flexible"][algo] = {"stored": head.get(f"Checksum{algo}"),
                                    "get_ok": got["Body"].read() == body,
                                    "get_header": got.get(f"Checksum{algo}")}
    # a wrong secret is refused, so the server really checks what crtpy signed
    try:
        client("sts", (good[0], "not-the-secret")).get_caller_identity()
        result["bad_secret"] = "accepted"
    except Exception as exc:  # noqa: BLE001
        result["bad_secret"] = getattr(exc, "response", {}).get("Error", {}).get("Code", repr(exc))

    # -- 2. CRT signer vs botocore's own signer at one frozen instant, sent to moto -----
    frozen = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

    def now(remove_tzinfo: bool = True) -> datetime.datetime:
        return frozen.replace(tzinfo=None) if remove_tzinfo else frozen

    crt_auth.get_current_datetime = now
    botocore.auth.get_current_datetime = now

    def make(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> AWSRequest:
        req = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        req.context = {"payload_signing_enabled": True}
        return req

    def send(req: AWSRequest) -> tuple[int, bytes]:
        p = req.prepare()
        r = urllib.request.Request(p.url, data=p.body if p.body else None, method=p.method,
                                   headers={k: (v.decode() if isinstance(v, bytes) else v) for k, v in p.headers.items()})
        try:
            with urllib.request.urlopen(r, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    cases = [
        # name, crt signer, botocore signer, service, method, url, body, headers
        ("s3-put-header", crt_auth.CrtS3SigV4Auth, botocore.auth.S3SigV4Auth, "s3", "PUT",
         f"{endpoint}/dropin/signed/a%20b.txt", b"signed by crtpy", {"Content-Type": "text/plain"}),
        ("s3-get-header", crt_auth.CrtS3SigV4Auth, botocore.auth.S3SigV4Auth, "s3", "GET",
         f"{endpoint}/dropin/signed/a%20b.txt", None, {}),
        ("s3-list-header", crt_auth.CrtS3SigV4Auth, botocore.auth.S3SigV4Auth, "s3", "GET",
         f"{endpoint}/dropin?list-type=2&prefix=signed%2F", None, {}),
        ("sts-post-header", crt_auth.CrtSigV4Auth, botocore.auth.SigV4Auth, "sts", "POST",
         f"{endpoint}/", b"Action=GetCallerIdentity&Version=2011-06-15", form),
        ("iam-post-header", crt_auth.CrtSigV4Auth, botocore.auth.SigV4Auth, "iam", "POST",
         f"{endpoint}/", b"Action=ListUsers&Version=2010-05-08", form),
        ("s3-get-presign", crt_auth.CrtS3SigV4QueryAuth, botocore.auth.S3SigV4QueryAuth, "s3", "GET",
         f"{endpoint}/dropin/signed/a%20b.txt", None, {}),
        ("sts-get-presign", crt_auth.CrtSigV4QueryAuth, botocore.auth.SigV4QueryAuth, "sts", "GET",
         f"{endpoint}/?Action=GetCallerIdentity&Version=2011-06-15", None, {}),
    ]
    out = []
    for name, crt_cls, py_cls, service, method, url, body, headers in cases:
        query = "presign" in name
        kw = {"expires": 300} if query else {}
        a, b = make(method, url, body, headers), make(method, url, body, headers)
        crt_cls(creds, service, "us-east-1", **kw).add_auth(a)
        py_cls(creds, service, "us-east-1", **kw).add_auth(b)
        ha = {k.lower(): str(v) for k, v in a.headers.items()}
        hb = {k.lower(): str(v) for k, v in b.headers.items()}
        # moto verifies header signatures only (a presigned URL crashes its checker), so
        # presigned requests go in with verification off; identity with botocore's own
        # presigner is their proof.
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf") if query else 0
        status, payload = send(a)
        moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        # the same request with one signature digit changed must be refused
        tampered = make(method, url, body, headers)
        crt_cls(creds, service, "us-east-1", **kw).add_auth(tampered)
        if not query:
            auth = tampered.headers["Authorization"]
            del tampered.headers["Authorization"]
            tampered.headers["Authorization"] = auth[:-1] + ("0" if auth[-1] != "0" else "1")
        t_status = None if query else send(tampered)[0]
        out.append({"name": name, "query": query, "crt_url": a.url, "py_url": b.url,
                    "crt_auth": ha.get("authorization"), "py_auth": hb.get("authorization"),
                    "crt_headers": sorted(ha.items()), "py_headers": sorted(hb.items()),
                    "status": status, "body": payload.decode(errors="replace")[:300],
                    "tampered_status": t_status})
    result["cases"] = out
    moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
    url = client("s3", good, config=Config(signature_version="s3v4", s3={"addressing_style": "path"})
                 ).generate_presigned_url("get_object", Params={"Bucket": "dropin", "Key": "dir/hello world.txt"},
                                          ExpiresIn=300)
    result["boto3_presigned_has_sig"] = "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        result["boto3_presigned_get"] = resp.read().decode()
    moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    result["signed_object"] = s3.get_object(Bucket="dropin", Key="signed/a b.txt")["Body"].read().decode()
finally:
    server.stop()
print(json.dumps(result))
