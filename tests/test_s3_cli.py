"""``crtpy s3 cp`` (crtpy._s3.cli.s3_cp) and the S3 demo (crtpy._s3.demo.run_demo)."""
from __future__ import annotations

import io
import os
import uuid

import pytest
from helpers.s3_servers import ACCESS_KEY, SECRET_KEY, moto_server  # noqa: F401

from crtpy._s3.cli import parse_size, s3_cp


@pytest.fixture()
def env(monkeypatch, moto_server):  # noqa: F811
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = "cli-" + uuid.uuid4().hex[:10]
    moto_server.boto3().create_bucket(Bucket=bucket)
    return moto_server, bucket


def _cp(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = s3_cp(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_parse_size():
    assert parse_size("8MiB") == 8 << 20
    assert parse_size("5242880") == 5242880
    assert parse_size("1.5GiB") == 3 << 29
    assert parse_size("16M") == 16_000_000


def test_upload_and_download_round_trip(env, tmp_path):
    srv, bucket = env
    data = os.urandom(11 * 1024 * 1024 + 3)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    code, out, err = _cp(str(src), f"s3://{bucket}/dir/", "--endpoint-url", srv.endpoint, "--part-size", "5MiB",
                         "--checksum", "crc64nvme")
    assert code == 0, err
    assert f"upload: {src} to s3://{bucket}/dir/in.bin" in out
    assert "100%" in err  # plain progress lines (stderr is not a terminal)
    stored = srv.boto3().get_object(Bucket=bucket, Key="dir/in.bin", ChecksumMode="ENABLED")
    assert stored["Body"].read() == data
    assert stored["ChecksumType"] == "FULL_OBJECT"
    dst = tmp_path / "out.bin"
    code, out, err = _cp(f"s3://{bucket}/dir/in.bin", str(dst), "--endpoint-url", srv.endpoint,
                         "--checksum", "CRC64NVME", "--no-progress")
    assert code == 0, err
    assert err == ""
    assert "CRC64NVME checksum verified" in out
    assert dst.read_bytes() == data


def test_errors_are_one_line(env, tmp_path):
    srv, bucket = env
    code, _, err = _cp(f"s3://{bucket}/missing", str(tmp_path / "x"), "--endpoint-url", srv.endpoint)
    assert code == 1
    assert err.count("\n") == 1 and "NoSuchKey" in err and "404" in err
    assert not (tmp_path / "x").exists()
    code, _, err = _cp(str(tmp_path / "nope"), f"s3://{bucket}/k", "--endpoint-url", srv.endpoint)
    assert code != 0 and "no such file" in err
    code, _, err = _cp("a", "b")
    assert code == 2 and "s3://" in err
    code, _out, err = _cp("a", "s3://b/k", "--checksum", "MD5")
    assert code == 2 and "CRC32" in err


def test_demo_round_trip_small():
    from crtpy._s3.demo import run_demo

    out = io.StringIO()
    assert run_demo(size_mib=12, part_size_mib=5, out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "verified" in text and "multipart, 3 parts" in text and "stopped the server" in text
    assert "CRC64NVME full-object checksum verified" in text
