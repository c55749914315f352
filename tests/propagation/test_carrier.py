"""HeaderReader: one case-insensitive view over every carrier shape apps hand us."""

from __future__ import annotations

import pytest
from opentracing import InvalidCarrierException
from requests.structures import CaseInsensitiveDict
from werkzeug.datastructures import EnvironHeaders, Headers

from opentracing_sls.propagation import B3Codec, build_text_codec
from opentracing_sls.propagation.carrier import HeaderReader, discard, require_writable
from opentracing_sls.span_context import SpanContext

TRACE = "463ac35c9f6413ad48485a3953bb6124"
SPAN = "a2fb4a1d1a96d312"


def test_plain_dict_any_case():
    reader = HeaderReader({"X-B3-TraceId": TRACE, "x-b3-spanid": SPAN, "B3": "0"})
    assert reader.get("x-b3-traceid") == TRACE
    assert reader.get("x-b3-spanid") == SPAN
    assert reader.get("b3") == "0"
    assert reader.get("x-b3-sampled") is None


def test_first_spelling_wins_when_a_dict_has_two():
    reader = HeaderReader({"X-B3-Sampled": "1", "x-b3-sampled": "0"})
    assert reader.get("x-b3-sampled") == "1"


@pytest.mark.parametrize("real_environ", [True, False], ids=["environ", "dict-with-wsgi-keys"])
def test_raw_wsgi_environ(real_environ):
    environ = {
        "REQUEST_METHOD": "GET",
        "wsgi.input": object(),
        "CONTENT_TYPE": "text/plain",
        "HTTP_X_B3_TRACEID": TRACE,
        "HTTP_UBER_TRACE_ID": "1:2:0:1",
        "HTTP_UBERCTX_USER_ID": "42",
        "HTTP_TRACEPARENT": ["a", "b"],
    }
    if real_environ:
        environ["wsgi.version"] = (1, 0)  # read in place, by environ key
    reader = HeaderReader(environ)
    assert reader.get("x-b3-traceid") == TRACE
    assert reader.get("X-B3-TraceId".lower()) == TRACE
    assert reader.get("uber-trace-id") == "1:2:0:1"
    assert reader.get_all("traceparent") == ["a", "b"]
    assert reader.get("x-b3-spanid") is None
    assert list(reader.with_prefix("uberctx-")) == [("user-id", "42")]
    if real_environ:
        assert len(reader) == 4  # only HTTP_* keys are headers
        assert reader.get("request_method") is None


def test_underscores_kept_outside_wsgi_keys():
    reader = HeaderReader({"uberctx-user_id": "42"})
    assert list(reader.with_prefix("uberctx-")) == [("user_id", "42")]


def test_werkzeug_environ_headers():
    headers = EnvironHeaders({"HTTP_X_B3_TRACEID": TRACE, "HTTP_X_B3_SPANID": SPAN,
                              "HTTP_X_B3_SAMPLED": "1"})
    reader = HeaderReader(headers)
    assert reader.get("x-b3-traceid") == TRACE
    context = B3Codec().extract(headers)
    assert (context.trace_id, context.span_id, context.flags) == (int(TRACE, 16),
                                                                  int(SPAN, 16), 1)


def test_werkzeug_headers_first_value_wins():
    headers = Headers([("X-B3-Sampled", "0"), ("x-b3-sampled", "1"), ("B3", "1")])
    reader = HeaderReader(headers)
    assert reader.get("x-b3-sampled") == "0"
    assert reader.get("b3") == "1"


def test_flask_request_headers():
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    with app.test_request_context(headers={"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN,
                                           "uberctx-Tenant": "acme"}):
        codec = build_text_codec(["b3", "jaeger"], url_encoding=True)
        context = codec.extract(flask.request.headers)
    assert context.trace_id == int(TRACE, 16)
    assert context.sampling_deferred
    assert context.baggage == {"tenant": "acme"}


def test_requests_case_insensitive_dict():
    headers = CaseInsensitiveDict({"X-B3-TraceId": TRACE})
    assert HeaderReader(headers).get("x-b3-traceid") == TRACE


def test_list_tuple_and_bytes_values():
    reader = HeaderReader({
        "a": ["first", "second"],
        "b": ("only",),
        "c": b"bytes\xe9",
        "d": [b"first-bytes", "x"],
        "e": [],
        "f": None,
        "g": 42,
        "h": [None, "x"],
    })
    assert reader.get("a") == "first"
    assert reader.get("b") == "only"
    assert reader.get("c") == "bytes\xe9"  # latin-1
    assert reader.get("d") == "first-bytes"
    for absent in "efgh":
        assert reader.get(absent) is None


def test_pair_list_carrier_asgi_style():
    reader = HeaderReader([(b"x-b3-traceid", b"abc"), [b"B3", b"0"], ("bad",), 7,
                           (None, "x")])
    assert reader.get("x-b3-traceid") == "abc"
    assert reader.get("b3") == "0"
    assert len(reader) == 2


def test_non_string_keys_skipped():
    reader = HeaderReader({1: "x", None: "y", b"X-B3-Flags": "1", ("a",): "z"})
    assert reader.get("x-b3-flags") == "1"
    assert len(reader) == 1


def test_get_single_strips_and_takes_first_token():
    reader = HeaderReader({"x-b3-sampled": " 1 , 0", "tracestate": "a=1,b=2"})
    assert reader.get_single("x-b3-sampled") == "1"
    assert reader.get("tracestate") == "a=1,b=2"


@pytest.mark.parametrize("carrier", [None, 1, 1.5, "x-b3-sampled: 1", b"bytes", object()])
def test_unusable_carrier(carrier):
    with pytest.raises(InvalidCarrierException):
        HeaderReader(carrier)


def test_carrier_whose_iteration_fails():
    class Broken:
        def items(self):
            raise RuntimeError("boom")

    with pytest.raises(InvalidCarrierException):
        HeaderReader(Broken())


def test_require_writable():
    for carrier in ({}, CaseInsensitiveDict(), Headers()):
        require_writable(carrier)
    for carrier in (None, [], (), "", 1, frozenset()):
        with pytest.raises(InvalidCarrierException):
            require_writable(carrier)


def test_discard_is_case_insensitive_where_the_carrier_is():
    carrier = CaseInsensitiveDict({"X-B3-Sampled": "1"})
    discard(carrier, "x-b3-sampled")
    assert "X-B3-Sampled" not in carrier
    headers = Headers([("X-B3-Flags", "1")])
    discard(headers, "x-b3-flags")
    assert "x-b3-flags" not in headers
    plain = {"x-b3-flags": "1"}
    discard(plain, "x-b3-flags")
    discard(plain, "absent")
    assert plain == {}


def test_inject_into_werkzeug_headers():
    headers = Headers([("X-B3-Sampled", "1")])
    codec = build_text_codec(["b3"], url_encoding=True)
    codec.inject(SpanContext(int(TRACE, 16), int(SPAN, 16), 0, 0), headers)
    assert headers.get("x-b3-sampled") == "0"
    assert len(headers.getlist("X-B3-Sampled")) == 1
    assert headers.get("X-B3-TraceId") == TRACE


def test_get_all():
    reader = HeaderReader({"a": ["1", None, b"2"], "b": "x", "c": None, "d": 5})
    assert reader.get_all("a") == ["1", "2"]
    assert reader.get_all("b") == ["x"]
    assert reader.get_all("c") == [] == reader.get_all("d") == reader.get_all("missing")
