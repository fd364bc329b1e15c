"""The ``crtpy`` command line, run in-process through ``crtpy._cli.main`` against real
local servers (http.server, the h2 test server, Mosquitto), plus one subprocess run."""
from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zlib

import pytest
from conftest import free_port
from helpers.certs import pki  # noqa: F401 - fixture
from helpers.cli import one_line_error, run
from helpers.http_servers import H2Server, h1_server  # noqa: F401 - fixture
from helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401 - fixtures

from crtpy._cli import main

# --- general ------------------------------------------------------------------------------------

def test_python_m_crtpy_help_subprocess() -> None:
    proc = subprocess.run([sys.executable, "-m", "crtpy", "--help"], capture_output=True, text=True, timeout=60, check=False,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr
    assert "usage: crtpy" in proc.stdout
    assert "demo" in proc.stdout
    import crtpy.__main__

    if getattr(crtpy.__main__, "main", None) is main:  # once __main__ delegates to crtpy._cli
        for command in ("http", "mqtt", "checksum", "s3"):
            assert command in proc.stdout


def test_python_m_crtpy_cli_subprocess_error() -> None:
    """A failing command in a real process: one line on stderr, exit 1, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "crtpy._cli", "checksum", "/no/such/file", "-a", "crc32"],
                          capture_output=True, text=True, timeout=60, check=False,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 1
    assert proc.stderr == "crtpy checksum: error: /no/such/file: no such file\n"


@pytest.mark.parametrize("argv, expect", [
    (["--help"], "checksum"),
    (["http", "--help"], "--sigv4 SERVICE"),
    (["mqtt", "--help"], "pub"),
    (["mqtt", "pub", "--help"], "--mqtt-version"),
    (["mqtt", "sub", "--help"], "--count"),
    (["checksum", "--help"], "crc64nvme"),
    (["demo", "--help"], "--size-mib"),
    (["s3", "--help"], "cp"),
])
def test_help(capsys: pytest.CaptureFixture[str], argv: list[str], expect: str) -> None:
    rc, out, _ = run(capsys, *argv)
    assert rc == 0
    assert expect in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys)
    assert rc == 2 and "COMMAND" in out


def test_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "checksum", "x", "--algorithm", "crc16")
    assert rc == 2 and "invalid choice" in err and "Traceback" not in err


def test_debug_shows_traceback(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    rc, _, err = run(capsys, "--debug", "http", f"http://127.0.0.1:{free_port()}/")
    assert rc == 1
    assert "Traceback" in err and "crtpy http: error:" in err


# --- checksum -----------------------------------------------------------------------------------

def _expected(algorithm: str, data: bytes) -> bytes:
    import xxhash

    if algorithm == "crc32":
        return zlib.crc32(data).to_bytes(4, "big")
    if algorithm == "crc32c":
        import google_crc32c

        return google_crc32c.value(data).to_bytes(4, "big")
    if algorithm == "crc64nvme":
        import awscrt.checksums

        return awscrt.checksums.crc64nvme(data).to_bytes(8, "big")
    if algorithm in ("sha1", "sha256", "md5"):
        return hashlib.new(algorithm, data).digest()
    return {"xxh64": xxhash.xxh64, "xxh3_64": xxhash.xxh3_64, "xxh3_128": xxhash.xxh3_128}[algorithm](data).digest()


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "crc64nvme", "sha1", "sha256", "md5",
                                       "xxh64", "xxh3_64", "xxh3_128"])
def test_checksum_matches_independent_implementations(capsys: pytest.CaptureFixture[str], tmp_path,
                                                      algorithm: str) -> None:
    data = os.urandom(3 * (1 << 20) + 12345)  # several read chunks plus a tail
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    rc, out, err = run(capsys, "checksum", str(path), "--algorithm", algorithm.upper())
    assert rc == 0, err
    name, b64, hexdigest, shown = out.split()
    digest = _expected(algorithm, data)
    assert (name, b64, hexdigest, shown) == (algorithm, base64.b64encode(digest).decode(), digest.hex(), str(path))
    rc, out, _ = run(capsys, "checksum", str(path), "-a", algorithm, "--format", "base64")
    assert out == base64.b64encode(digest).decode() + "\n"


def test_checksum_empty_file(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    rc, out, _ = run(capsys, "checksum", str(path), "-a", "crc32", "--format", "hex")
    assert (rc, out) == (0, "00000000\n")


def test_checksum_missing_file(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    rc, _, err = run(capsys, "checksum", str(tmp_path / "nope"), "-a", "sha256")
    assert rc == 1
    assert "no such file" in one_line_error(err, "crtpy checksum")


def test_checksum_directory(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    rc, _, err = run(capsys, "checksum", str(tmp_path))
    assert rc == 1 and "is a directory" in one_line_error(err, "crtpy checksum")


# --- s3 cp delegation and demo --------------------------------------------------------------------

def test_s3_cp_is_delegated(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "s3", "cp", "--help")
    assert rc == 0 and "s3://bucket/key" in out


def test_s3_cp_error_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    rc, _, err = run(capsys, "s3", "cp", str(tmp_path / "a"), str(tmp_path / "b"))
    assert rc != 0
    assert "s3://" in one_line_error(err, "crtpy s3 cp")


def test_s3_without_cp(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "s3")
    assert rc == 2 and "crtpy s3 cp" in one_line_error(err, "crtpy s3")


def test_tls_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "demo", "--tls", "--size-mib", "1")
    assert rc == 0, err
    assert "TLS" in out + err


def test_s3_demo_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "demo", "--size-mib", "12")
    assert rc == 0, out + err
    assert "CRC64NVME" in (out + err).upper().replace("-", "")


def test_demo_rejects_bad_size(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "demo", "--size-mib", "0")
    assert rc == 2 and "must be at least 1" in err
