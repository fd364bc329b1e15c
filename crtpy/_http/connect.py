"""Connection setup for crtpy.http (filled in by the HTTP/1.1 and HTTP/2 work)."""
from __future__ import annotations

from typing import Any

from .._runtime.futures import CrtFuture, failed


def new_connection(host_name: str, port: int, **kwargs: Any) -> CrtFuture:
    from .._errors import error

    return failed(error("AWS_ERROR_UNIMPLEMENTED", "HTTP connections are not implemented yet"))
