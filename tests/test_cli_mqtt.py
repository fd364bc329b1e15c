"""``crtpy mqtt pub|sub`` against a local Mosquitto: MQTT 5 and 3.1.1, plain TCP, TLS with
a custom CA, mutual TLS and WebSocket.  Subscribers get retained messages, so a
subscription made after the publish still sees them (no timing assumptions)."""
from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import free_port, leak_check  # noqa: F401 - fixture
from helpers.certs import pki  # noqa: F401 - fixture
from helpers.cli import one_line_error, run
from helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401 - fixtures

from crtpy._cli import main

# every client a command made is stopped and released when it returns
pytestmark = pytest.mark.usefixtures("leak_check")


def topic() -> str:
    return f"crtpy/cli/{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("version", ["5", "3"])
def test_pub_then_sub_retained(capsys: pytest.CaptureFixture[str], mosquitto: Any, version: str) -> None:  # noqa: F811
    t1, t2 = topic(), topic()
    base = ["--host", "127.0.0.1", "--port", str(mosquitto.port), "--mqtt-version", version, "--timeout", "10"]
    for t, msg in ((t1, "first"), (t2, "second")):
        rc, out, err = run(capsys, "mqtt", "pub", *base, "-t", t, "-m", msg, "--qos", "1", "--retain")
        assert rc == 0, err
        assert out == ""
    rc, out, err = run(capsys, "mqtt", "sub", *base, "-t", t1, "-t", t2, "--count", "2", "-v")
    assert rc == 0, err
    assert sorted(out.splitlines()) == sorted([f"{t1} first", f"{t2} second"])


def test_pub_file_payload(capsys: pytest.CaptureFixture[str], tmp_path, mosquitto: Any) -> None:  # noqa: F811
    payload = bytes(range(32, 127)) * 50
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    t = topic()
    base = ["--host", "127.0.0.1", "--port", str(mosquitto.port)]
    rc, _, err = run(capsys, "mqtt", "pub", *base, "-t", t, "--file", str(src), "--retain", "-q", "1")
    assert rc == 0, err
    rc = main(["mqtt", "sub", *base, "-t", t, "--count", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out == payload.decode() + "\n"


@pytest.mark.parametrize("version", ["5", "3"])
def test_mutual_tls(capsys: pytest.CaptureFixture[str], mosquitto_factory: Any, pki: Any,  # noqa: F811
                    version: str) -> None:
    broker = mosquitto_factory(tls=True, pki=pki, require_client_cert=True)
    t = topic()
    base = ["--host", "localhost", "--port", str(broker.tls_port), "--mqtt-version", version, "--timeout", "10",
            "--cafile", pki.ca_cert]
    rc, _, err = run(capsys, "mqtt", "pub", *base, "--cert", pki.client_cert, "--key", pki.client_key,
                     "-t", t, "-m", "over mtls", "--retain", "-q", "1")
    assert rc == 0, err
    rc, out, err = run(capsys, "mqtt", "sub", *base, "--cert", pki.client_cert, "--key", pki.client_key,
                       "-t", t, "--count", "1")
    assert rc == 0, err
    assert out == "over mtls\n"
    # without a client certificate the broker refuses the handshake: one line, exit 1
    rc, _, err = run(capsys, "mqtt", "pub", *base, "--timeout", "5", "-t", t, "-m", "x")
    assert rc == 1
    assert "cannot connect" in one_line_error(err, "crtpy mqtt pub")


def test_tls_untrusted_broker(capsys: pytest.CaptureFixture[str], mosquitto_factory: Any, pki: Any) -> None:  # noqa: F811
    broker = mosquitto_factory(tls=True, pki=pki)
    rc, _, err = run(capsys, "mqtt", "pub", "--host", "localhost", "--port", str(broker.tls_port), "--tls",
                     "--cafile", pki.other_ca_cert, "--timeout", "5", "-t", topic(), "-m", "x")
    assert rc == 1
    assert "AWS_IO_TLS" in one_line_error(err, "crtpy mqtt pub")


@pytest.mark.parametrize("version", ["5", "3"])
def test_websocket(capsys: pytest.CaptureFixture[str], mosquitto_factory: Any, version: str) -> None:  # noqa: F811
    ws_port = free_port()
    broker = mosquitto_factory(extra={"listener": f"{ws_port} 127.0.0.1\nprotocol websockets\nallow_anonymous true"})
    t = topic()
    base = ["--host", "127.0.0.1", "--port", str(ws_port), "--websocket", "--mqtt-version", version,
            "--timeout", "10"]
    rc, _, err = run(capsys, "mqtt", "pub", *base, "-t", t, "-m", "over websocket", "--retain", "-q", "1")
    assert rc == 0, err + broker.log()
    rc, out, err = run(capsys, "mqtt", "sub", *base, "-t", t, "--count", "1")
    assert rc == 0, err
    assert out == "over websocket\n"


@pytest.mark.parametrize("version", ["5", "3"])
def test_connection_refused(capsys: pytest.CaptureFixture[str], version: str) -> None:
    rc, _, err = run(capsys, "mqtt", "pub", "--host", "127.0.0.1", "--port", str(free_port()), "-V", version,
                     "--timeout", "5", "-t", "a", "-m", "b")
    assert rc == 1
    assert "cannot connect to 127.0.0.1" in one_line_error(err, "crtpy mqtt pub")


@pytest.mark.parametrize("argv, needle", [
    (["pub", "-t", "a"], "nothing to publish"),
    (["pub", "-t", "a", "-m", "x", "--cert", "/no/such/cert"], "no such file"),
    (["pub", "-t", "a", "-m", "x", "--cafile", __file__, "--cert", __file__], "--cert and --key"),
])
def test_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    rc, _, err = run(capsys, "mqtt", *argv)
    assert rc == 2
    assert needle in one_line_error(err, "crtpy mqtt pub")


def test_mqtt_without_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "mqtt")
    assert rc == 2 and "'pub' or 'sub'" in one_line_error(err, "crtpy mqtt")


@pytest.mark.parametrize("version", ["5", "3"])
def test_sub_ctrl_c_exits_cleanly(capsys: pytest.CaptureFixture[str], mosquitto: Any, version: str) -> None:  # noqa: F811
    """``crtpy mqtt sub`` in a real process: SIGINT while it waits for messages ends it with
    status 0, no traceback, and a clean DISCONNECT seen by the broker."""
    import os
    import signal
    import subprocess
    import sys
    import time

    t = topic()
    client_id = f"cli-ctrlc-{uuid.uuid4().hex[:8]}"
    base = ["--host", "127.0.0.1", "--port", str(mosquitto.port), "-V", version]
    assert main(["mqtt", "pub", *base, "-t", t, "-m", "ready", "--retain", "-q", "1"]) == 0
    capsys.readouterr()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "crtpy._cli", "mqtt", "sub", *base, "-t", t, "-i", client_id],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"  # subscribed and waiting
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    deadline = time.monotonic() + 10
    while f"Client {client_id} disconnected" not in mosquitto.log():
        assert time.monotonic() < deadline, mosquitto.log()
        time.sleep(0.05)

