"""The crtpy command: --help and the loopback TLS demo (``crtpy demo --tls``)."""
from __future__ import annotations

import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "crtpy", *args], capture_output=True, text=True, timeout=120, check=False)


def test_help():
    proc = run("--help")
    assert proc.returncode == 0
    assert "demo" in proc.stdout and "usage: crtpy" in proc.stdout


def test_demo_does_a_real_verified_tls_session():
    proc = run("demo", "--tls", "--size-mib", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "TLS version:    TLSv1." in out
    assert "ALPN:           h2" in out
    assert "echoed:         2 MiB" in out
    assert "Traceback" not in proc.stderr


def test_tls_demo_function_reports_negotiation():
    import io

    from crtpy._demo import run_demo

    out = io.StringIO()
    assert run_demo(1, out=out) == 0
    text = out.getvalue()
    assert "cipher:" in text and "ALPN:           h2" in text and "SNI 'localhost'" in text
