"""The error table matches the reference's codes and names."""
import pytest

awscrt_exceptions = pytest.importorskip("awscrt.exceptions")
import _awscrt

from crtpy import _errors
from crtpy.exceptions import AwsCrtError, from_code


def test_every_name_has_the_reference_code():
    assert len(_errors.CODE_BY_NAME) > 400
    for name, code in _errors.CODE_BY_NAME.items():
        assert _awscrt.get_error_name(code) == name


@pytest.mark.parametrize("code", [0, 1, 5, 34, 37, 1047, 1059, 2058, 5129, 14343, 99999, -1])
def test_from_code_matches_reference(code):
    ours, theirs = from_code(code), awscrt_exceptions.from_code(code)
    assert type(ours).__name__ == type(theirs).__name__
    if isinstance(theirs, awscrt_exceptions.AwsCrtError):
        assert (ours.code, ours.name) == (theirs.code, theirs.name)
        assert ours.message


def test_error_helper_builds_named_errors():
    e = _errors.error("AWS_IO_DNS_INVALID_NAME", "no such host: x.invalid")
    assert isinstance(e, AwsCrtError)
    assert e.name == "AWS_IO_DNS_INVALID_NAME" and e.code == 1059
    assert str(e) == "AWS_IO_DNS_INVALID_NAME: no such host: x.invalid"
    assert "code=1059" in repr(e)
    assert isinstance(_errors.error("AWS_ERROR_INVALID_ARGUMENT"), ValueError)
    with pytest.raises(KeyError):
        _errors.error("NOT_A_REAL_ERROR_NAME")


def test_derived_messages_are_readable():
    assert _errors.message_for("AWS_ERROR_MQTT_TIMEOUT") == "MQTT timeout."
    assert _errors.message_for("AWS_IO_TLS_ERROR_ALERT_RECEIVED") == "TLS error alert received."


def test_error_pickles():
    import pickle

    e = _errors.error("AWS_IO_SOCKET_TIMEOUT")
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.code, e2.name, e2.message) == (e.code, e.name, e.message)
