"""crtpy.http data classes, checked against the reference awscrt.http as an oracle."""
from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crtpy.http as ours

ref = pytest.importorskip("awscrt.http")

names = st.sampled_from(["a", "A", "b", "Content-Type", "content-type", "X-Y"])
# spaces/tabs (stripped around values by the reference), and CR/LF/NBSP/VT (kept)
values = st.text(alphabet="xyz12 \t\r\n\xa0\x0b", max_size=4)
ops = st.lists(st.tuples(st.sampled_from(["add", "add_pairs", "set", "remove", "remove_value", "clear"]),
                         names, values),
               max_size=25)


def apply(h, op, name, value):
    try:
        if op == "add":
            h.add(name, value)
        elif op == "add_pairs":
            h.add_pairs([(name, value), (name, " " + value + "\t")])
        elif op == "set":
            h.set(name, value)
        elif op == "remove":
            h.remove(name)
        elif op == "remove_value":
            h.remove_value(name, value)
        else:
            h.clear()
    except (KeyError, ValueError) as exc:
        return type(exc)
    return None


padded_names = st.sampled_from(["a", " a", "a ", "\tA", "b"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(padded_names, values), max_size=5), ops)
def test_headers_match_reference(initial, sequence):
    a, b = ours.HttpHeaders(initial), ref.HttpHeaders(initial)
    assert list(a) == list(b)
    for op, name, value in sequence:
        assert apply(a, op, name, value) == apply(b, op, name, value)
        assert list(a) == list(b)
        for n in ("a", " a", "content-type", "x-y", "missing"):
            assert a.get(n) == b.get(n)
            assert a.get(n, "d") == b.get(n, "d")
            assert list(a.get_values(n)) == list(b.get_values(n))


def test_header_values_lose_surrounding_spaces_and_tabs_only():
    for cls in (ours.HttpHeaders, ref.HttpHeaders):
        h = cls([(" n ", " \tv 1\t ")])
        h.add("m", "\r\nx\xa0 ")
        h.add_pairs([("p", "  ")])
        h.set("s", "\t\ts s ")
        assert list(h) == [(" n ", "v 1"), ("m", "\r\nx\xa0"), ("p", ""), ("s", "s s")], cls
        assert h.get("n") is None and h.get(" N ") == "v 1"
        with pytest.raises(ValueError):
            h.remove_value("s", " s s")  # the value to remove is compared as given
        h.remove_value("s", "s s")


def test_headers_init_and_str():
    pairs = [("Host", "h"), ("x", "1"), ("X", "2")]
    assert list(ours.HttpHeaders(pairs)) == list(ref.HttpHeaders(pairs))
    assert str(ours.HttpHeaders(pairs)) == str(ref.HttpHeaders(pairs))
    with pytest.raises(TypeError):
        ours.HttpHeaders().add("a", 1)  # type: ignore[arg-type]


def test_request_defaults_and_body():
    r = ours.HttpRequest()
    assert (r.method, r.path, list(r.headers), r.body_stream) == ("GET", "/", [], None)
    r = ours.HttpRequest("PUT", "/p?q=1", ours.HttpHeaders([("a", "b")]), io.BytesIO(b"x"))
    assert r.method == "PUT" and r.path == "/p?q=1" and r.headers.get("A") == "b"
    assert r.body_stream is not None
    r.method, r.path = "POST", "/z"
    assert (r.method, r.path) == ("POST", "/z")
    with pytest.raises(TypeError):
        ours.HttpRequest(body_stream=42)


def test_enums_and_settings_match_reference():
    for name in ("HttpVersion", "Http2SettingID", "HttpProxyConnectionType", "HttpProxyAuthenticationType"):
        assert {e.name: e.value for e in getattr(ours, name)} == {e.name: e.value for e in getattr(ref, name)}
    assert {int(k): v for k, v in ours.Http2Setting.VALID_RANGES.items()} == \
        {int(k): v for k, v in ref.Http2Setting.VALID_RANGES.items()}
    for sid in ours.Http2SettingID:
        low, high = ours.Http2Setting.VALID_RANGES[sid]
        for value in (low - 1, low, high, high + 1):
            ok_ref = ok_ours = True
            try:
                ref.Http2Setting(ref.Http2SettingID(int(sid)), value)
            except ValueError:
                ok_ref = False
            try:
                ours.Http2Setting(sid, value)
            except ValueError:
                ok_ours = False
            assert ok_ref == ok_ours


def test_proxy_options_defaults_and_secret_repr():
    p = ours.HttpProxyOptions("proxy", 3128, auth_type=ours.HttpProxyAuthenticationType.Basic,
                              auth_username="u", auth_password="hunter2")
    assert p.connection_type == ours.HttpProxyConnectionType.Legacy
    assert p.tls_connection_options is None
    assert "hunter2" not in repr(p)
