"""Run a drop-in script in a fresh interpreter where ``awscrt`` is crtpy.

Each ``dropin_*_script.py`` next to this file starts with ``crtpy.install_as_awscrt()``
(through :func:`install`), imports a real awscrt dependent (botocore, s3transfer,
awsiotsdk), drives it against local servers and prints one JSON line with its findings.
:func:`run_script` runs such a script as ``sys.executable <script> <args...>`` and returns
that JSON document, failing with the script's stderr when it did not succeed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

__all__ = ["install", "reference", "run_script"]

HERE = os.path.dirname(os.path.abspath(__file__))


def install() -> Any:
    """Make ``import awscrt`` give crtpy, and prove that it does."""
    import crtpy

    crtpy.install_as_awscrt()
    import awscrt
    import awscrt.auth
    import awscrt.mqtt5
    import awscrt.s3

    assert awscrt.s3.S3Client.__module__.startswith("crtpy"), awscrt.s3.S3Client.__module__
    assert awscrt.auth.AwsSigningConfig.__module__.startswith("crtpy")
    assert awscrt.mqtt5.Client.__module__.startswith("crtpy")
    assert sys.modules["awscrt.s3"] is sys.modules["crtpy.s3"]
    return awscrt


def reference(module: str) -> Any:
    """The reference awscrt's ``module`` (e.g. ``"awscrt.auth"``) as an oracle; skips when
    awscrt is missing or when this process has aliased it to crtpy."""
    import importlib

    import pytest

    mod = pytest.importorskip(module)
    file = getattr(mod, "__file__", "") or ""
    if not mod.__name__.startswith("awscrt") or "crtpy" in file:
        pytest.skip(f"{module} is crtpy in this process, not the reference")
    return importlib.import_module(module)


def run_script(name: str, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> dict:
    """Run ``tests/helpers/<name>`` with ``args``; return the JSON its last stdout line holds."""
    full_env = dict(os.environ)
    full_env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(HERE), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        full_env.pop(k, None)
    full_env["AWS_CONFIG_FILE"] = os.devnull
    full_env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    full_env["AWS_EC2_METADATA_DISABLED"] = "true"
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, os.path.join(HERE, name), *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"{name} printed no result:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])
