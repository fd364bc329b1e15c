"""Exceptions raised by crtpy, with the error names and codes of the AWS Common Runtime."""
from __future__ import annotations

from . import _errors

__all__ = ["AwsCrtError", "from_code"]


def from_code(code: int) -> BaseException:
    """Return the exception for an AWS Common Runtime error code.

    Some codes map to a built-in exception (``AWS_ERROR_OOM`` gives :class:`MemoryError`,
    ``AWS_ERROR_INVALID_ARGUMENT`` gives :class:`ValueError`, ...); every other code
    gives an :class:`AwsCrtError`.  An unrecognised code gives an :class:`AwsCrtError`
    named ``"Unknown Error Code"``.

    Args:
        code (int): the error code.

    Returns:
        BaseException:
    """
    name = _errors.NAME_BY_CODE.get(code)
    if name is None:
        return AwsCrtError(code=code, name="Unknown Error Code", message="Unknown Error Code")
    builtin = _errors.BUILTIN_BY_NAME.get(name)
    if builtin is not None:
        return builtin()
    return AwsCrtError(code=code, name=name, message=_errors.message_for(name))


class AwsCrtError(RuntimeError):
    """An error reported by the runtime.

    It is a :class:`RuntimeError`, because the reference raises ``RuntimeError`` for
    many synchronous failures: code that catches either keeps working.

    Args:
        code (int): numeric error code, the same as the AWS Common Runtime's.
        name (str): symbolic error name, e.g. ``"AWS_IO_DNS_INVALID_NAME"``.
        message (str): human-readable description.

    Attributes:
        code (int): numeric error code.
        name (str): symbolic error name.
        message (str): human-readable description.
    """

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(code, name, message)
        self.code = code
        self.name = name
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, message={self.message!r}, code={self.code})"

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"
