"""crtpy.logging and crtpy.io.init_logging route through Python's logging."""
from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import crtpy.logging as crt_logging
from crtpy import io
from crtpy._runtime import logs


@pytest.fixture
def restore_crtpy_logger():
    logger = logging.getLogger("crtpy")
    level, handlers = logger.level, list(logger.handlers)
    yield
    for h in list(logger.handlers):
        if h not in handlers:
            logger.removeHandler(h)
            h.close()
    logs._handler = None
    logger.setLevel(level)


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_records_reach_application_handlers(restore_crtpy_logger):
    handler = ListHandler()
    logging.getLogger().addHandler(handler)
    try:
        crt_logging.init_logging(logging.INFO)
        crt_logging.init_logging(logging.INFO)  # twice is harmless
        crt_logging.log(logging.INFO, crt_logging.LogSubject.IO_TLS, "tls says hi")
        crt_logging.log(logging.DEBUG, crt_logging.LogSubject.S3_GENERAL, "filtered out")
        crt_logging.log(logging.WARNING, crt_logging.LogSubject.S3_GENERAL, "s3 warning")
        logs.get_logger("mqtt5").info("from a module")
    finally:
        logging.getLogger().removeHandler(handler)
    got = [(r.name, r.getMessage()) for r in handler.records if r.name.startswith("crtpy")]
    assert got == [("crtpy.io.tls", "tls says hi"), ("crtpy.s3", "s3 warning"), ("crtpy.mqtt5", "from a module")]


def test_set_log_level_notset_disables(restore_crtpy_logger):
    handler = ListHandler()
    logging.getLogger("crtpy").addHandler(handler)
    try:
        crt_logging.init_logging(logging.DEBUG)
        crt_logging.set_log_level(logging.NOTSET)
        crt_logging.log(logging.CRITICAL, crt_logging.LogSubject.HTTP_CONNECTION, "silenced")
        crt_logging.set_log_level(logging.DEBUG)
        crt_logging.log(logging.DEBUG, crt_logging.LogSubject.HTTP_CONNECTION, "audible")
    finally:
        logging.getLogger("crtpy").removeHandler(handler)
    assert [r.getMessage() for r in handler.records] == ["audible"]
    assert handler.records[0].name == "crtpy.http.connection"


def test_bad_arguments():
    with pytest.raises(TypeError):
        crt_logging.init_logging("DEBUG")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        crt_logging.log(logging.INFO, 99999, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        io.init_logging(42, "stderr")
    with pytest.raises(TypeError):
        io.init_logging(io.LogLevel.Info, None)  # type: ignore[arg-type]


def test_io_init_logging_to_file(tmp_path, restore_crtpy_logger):
    path = tmp_path / "crt.log"
    io.init_logging(io.LogLevel.Info, str(path))
    logs.get_logger("io").info("to the file")
    logs.get_logger("io").debug("below the level")
    io.init_logging(io.LogLevel.Trace, str(path))  # replaces the output, no duplicates
    logs.get_logger("http").log(logs.TRACE, "trace record")
    io.set_log_level(io.LogLevel.NoLogs)
    logs.get_logger("http").error("after NoLogs")
    logs.output_handler().flush()
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert "[INFO]" in lines[0] and "[crtpy.io]" in lines[0] and lines[0].endswith("to the file")
    assert "[TRACE]" in lines[1] and "trace record" in lines[1]


def test_io_init_logging_bad_path(tmp_path):
    from crtpy.exceptions import AwsCrtError

    with pytest.raises(AwsCrtError) as e:
        io.init_logging(io.LogLevel.Info, str(tmp_path / "missing-dir" / "x.log"))
    assert e.value.name == "AWS_ERROR_FILE_OPEN_FAILURE"


@pytest.mark.parametrize("target", ["stdout", "stderr"])
def test_io_init_logging_console(target):
    code = (
        "from crtpy import io; from crtpy._runtime import logs\n"
        f"io.init_logging(io.LogLevel.Debug, {target!r})\n"
        "logs.get_logger('s3').debug('console record')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout if target == "stdout" else proc.stderr
    other = proc.stderr if target == "stdout" else proc.stdout
    assert "[DEBUG]" in out and "[crtpy.s3] - console record" in out
    assert "console record" not in other


def test_callback_exceptions_are_logged(restore_crtpy_logger):
    from crtpy._runtime.callbacks import CallbackQueue

    handler = ListHandler()
    logging.getLogger("crtpy").addHandler(handler)
    done = __import__("threading").Event()
    try:
        q = CallbackQueue()
        q.post(lambda: 1 / 0)
        q.post(done.set)
        assert done.wait(10)
    finally:
        logging.getLogger("crtpy").removeHandler(handler)
    assert any(r.name == "crtpy.callbacks" and r.exc_info for r in handler.records)
