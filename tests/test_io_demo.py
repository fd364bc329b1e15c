"""The crtpy command: --help and the loopback TLS demo."""
from __future__ import annotations

import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "crtpy", *args], capture_output=True, text=True, timeout=120)


def test_help():
    proc = run("--help")
    assert proc.returncode == 0
    assert "demo" in proc.stdout and "usage: crtpy" in proc.stdout


def test_demo_does_a_real_verified_tls_session():
    proc = run("demo", "--size-mib", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "TLS version:    TLSv1." in out
    assert "ALPN:           h2" in out
    assert "echoed:         2 MiB" in out
    assert "Traceback" not in proc.stderr


def test_main_without_command_prints_help(capsys):
    from crtpy.__main__ import main

    assert main([]) == 2
    assert "usage: crtpy" in capsys.readouterr().out
