"""B3 extraction and injection against the spec table and the Brave/Envoy edge cases."""

from __future__ import annotations

import pytest
from opentracing import InvalidCarrierException
from requests.structures import CaseInsensitiveDict

from opentracing_sls.propagation import B3Codec
from opentracing_sls.span_context import SpanContext

T64 = "463ac35c9f6413ad"
T128 = "463ac35c9f6413ad48485a3953bb6124"
S = "a2fb4a1d1a96d312"
P = "0020000000000001"
ZERO16 = "0" * 16

DEFERRED = "deferred"


def ids(trace=T64, span=S, parent=None, sampled=None, flags=None):
    headers = {"X-B3-TraceId": trace, "X-B3-SpanId": span}
    if parent is not None:
        headers["X-B3-ParentSpanId"] = parent
    if sampled is not None:
        headers["X-B3-Sampled"] = sampled
    if flags is not None:
        headers["X-B3-Flags"] = flags
    return headers


def ctx(trace=T64, span=S, parent=0, flags=DEFERRED):
    """Expected (trace_id, span_id, parent_id, flags, sampling_deferred)."""
    trace_id = int(trace, 16) if isinstance(trace, str) else trace
    span_id = int(span, 16) if isinstance(span, str) else span
    parent_id = int(parent, 16) if isinstance(parent, str) else parent
    if flags == DEFERRED:
        return (trace_id, span_id, parent_id, 0, True)
    return (trace_id, span_id, parent_id, flags, False)


def as_tuple(context):
    if context is None:
        return None
    return (context.trace_id, context.span_id, context.parent_id, context.flags,
            context.sampling_deferred)


EXTRACT_CASES = [
    # ids
    ("64-bit trace id", ids(sampled="1"), ctx(flags=1)),
    ("128-bit trace id", ids(trace=T128, sampled="1"), ctx(trace=T128, flags=1)),
    ("child with parent", ids(parent=P, sampled="1"), ctx(parent=P, flags=1)),
    ("64-bit left-padded to 128", ids(trace=ZERO16 + T64, sampled="1"), ctx(flags=1)),
    ("trace id 15 hex", ids(trace=T64[1:]), None),
    ("trace id 17 hex", ids(trace=T64 + "a"), None),
    ("trace id 31 hex", ids(trace=T128[1:]), None),
    ("trace id 33 hex", ids(trace=T128 + "a"), None),
    ("span id 15 hex", ids(span=S[1:]), None),
    ("span id 32 hex", ids(span=S + S), None),
    ("parent id 15 hex", ids(parent=P[1:]), None),
    ("non-hex trace id", ids(trace="463ac35c9f6413az"), None),
    ("0x prefix", ids(trace="0x63ac35c9f6413ad"), None),
    ("sign", ids(span="+2fb4a1d1a96d312"), None),
    ("underscore", ids(span="a2fb4a1d_a96d312"), None),
    ("nonsense parent", ids(parent="-"), None),
    ("empty parent", ids(parent=""), None),
    ("all-zero trace id", ids(trace=ZERO16), None),
    ("all-zero 128-bit trace id", ids(trace="0" * 32), None),
    ("all-zero span id", ids(span=ZERO16), None),
    ("all-zero parent id reads as root", ids(parent=ZERO16, sampled="1"), ctx(flags=1)),
    ("uppercase hex accepted", ids(trace=T128.upper(), span=S.upper(), parent=P.upper()),
     ctx(trace=T128, parent=P)),
    ("mixed-case hex accepted", ids(trace="463AC35c9f6413ad"), ctx()),
    ("trace without span", {"X-B3-TraceId": T64, "X-B3-Sampled": "1"}, None),
    ("span without trace: decision only", {"X-B3-SpanId": S, "X-B3-Sampled": "1"},
     ctx(trace=0, span=0, flags=1)),
    ("whitespace around values", ids(trace=f" {T64} ", sampled=" 1 "), ctx(flags=1)),
    ("repeated values joined by a proxy", ids(trace=T64 + "," + T128, sampled="1,0"),
     ctx(flags=1)),
    ("repeated values as a list: first wins", ids(trace=[T64, T128], sampled=["0", "1"]),
     ctx(flags=0)),
    # X-B3-Sampled
    ("sampled 1", ids(sampled="1"), ctx(flags=1)),
    ("sampled 0", ids(sampled="0"), ctx(flags=0)),
    ("sampled true", ids(sampled="true"), ctx(flags=1)),
    ("sampled false", ids(sampled="false"), ctx(flags=0)),
    ("sampled TRUE (case-insensitive)", ids(sampled="TRUE"), ctx(flags=1)),
    ("sampled False (case-insensitive)", ids(sampled="False"), ctx(flags=0)),
    ("sampled absent: defer", ids(), ctx()),
    ("sampled empty: malformed", ids(sampled=""), None),
    ("sampled garbage: malformed", ids(sampled="yes"), None),
    ("sampled 2: malformed", ids(sampled="2"), None),
    ("sampled d is single-header only", ids(sampled="d"), None),
    # X-B3-Flags
    ("flags 1: debug and sampled", ids(flags="1"), ctx(flags=3)),
    ("flags 1 beats sampled 0", ids(sampled="0", flags="1"), ctx(flags=3)),
    ("flags 0 ignored", ids(flags="0", sampled="1"), ctx(flags=1)),
    ("flags garbage ignored", ids(flags="x"), ctx()),
    ("flags garbage with sampled 0", ids(flags="true", sampled="0"), ctx(flags=0)),
    # no ids: decision only
    ("only sampled 0: deny-only", {"X-B3-Sampled": "0"}, ctx(trace=0, span=0, flags=0)),
    ("only sampled 1", {"X-B3-Sampled": "1"}, ctx(trace=0, span=0, flags=1)),
    ("only flags 1", {"X-B3-Flags": "1"}, ctx(trace=0, span=0, flags=3)),
    ("only garbage sampled", {"X-B3-Sampled": "maybe"}, None),
    ("nothing", {}, None),
    ("unrelated headers", {"Content-Type": "text/plain"}, None),
    # single header
    ("single 64-bit, deferred", {"b3": f"{T64}-{S}"}, ctx()),
    ("single 128-bit sampled", {"b3": f"{T128}-{S}-1"}, ctx(trace=T128, flags=1)),
    ("single denied", {"b3": f"{T64}-{S}-0"}, ctx(flags=0)),
    ("single debug", {"b3": f"{T64}-{S}-d"}, ctx(flags=3)),
    ("single 4 fields", {"b3": f"{T128}-{S}-1-{P}"}, ctx(trace=T128, parent=P, flags=1)),
    ("single spec example",
     {"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"},
     ctx(trace="80f198ee56343ba864fe8b2a57d3eff7", span="e457b5a2e4d86bd1",
         parent="05e3ac9a4f6e3b90", flags=1)),
    ("single uppercase", {"b3": f"{T128.upper()}-{S.upper()}-D-{P.upper()}"},
     ctx(trace=T128, parent=P, flags=3)),
    ("single b3: 0 deny-only", {"b3": "0"}, ctx(trace=0, span=0, flags=0)),
    ("single b3: 1", {"b3": "1"}, ctx(trace=0, span=0, flags=1)),
    ("single b3: d", {"b3": "d"}, ctx(trace=0, span=0, flags=3)),
    ("single 5 fields invalid", {"b3": f"{T64}-{S}-1-{P}-x"}, None),
    ("single 3rd field is a state, not a parent", {"b3": f"{T64}-{S}-{P}"}, None),
    ("single bad state", {"b3": f"{T64}-{S}-x"}, None),
    ("single state true not allowed", {"b3": f"{T64}-{S}-true"}, None),
    ("single state 2", {"b3": "2"}, None),
    ("single empty", {"b3": ""}, None),
    ("single short trace", {"b3": f"{T64[1:]}-{S}-1"}, None),
    ("single zero trace", {"b3": f"{ZERO16}-{S}-1"}, None),
    ("single zero span", {"b3": f"{T64}-{ZERO16}-1"}, None),
    ("single trailing dash", {"b3": f"{T64}-{S}-"}, None),
    ("single only trace", {"b3": T64}, None),
    # precedence
    ("single wins over multi", {"b3": f"{T128}-{S}-0", **ids(parent=P, sampled="1")},
     ctx(trace=T128, flags=0)),
    ("deny-only single wins over multi ids", {"b3": "0", **ids(sampled="1")},
     ctx(trace=0, span=0, flags=0)),
    ("malformed single falls back to multi", {"b3": "garbage", **ids(sampled="1")},
     ctx(flags=1)),
    ("malformed single and malformed multi", {"b3": "garbage", **ids(sampled="")}, None),
]


@pytest.mark.parametrize("headers, expected", [c[1:] for c in EXTRACT_CASES],
                         ids=[c[0] for c in EXTRACT_CASES])
@pytest.mark.parametrize("codec", [B3Codec(), B3Codec(multi_header=False, single_header=True)],
                         ids=["b3", "b3single"])
def test_extract_table(codec, headers, expected):
    assert as_tuple(codec.extract(headers)) == expected


@pytest.mark.parametrize("headers, expected", [c[1:] for c in EXTRACT_CASES],
                         ids=[c[0] for c in EXTRACT_CASES])
def test_extract_lowercase_names_and_wsgi_environ_agree(headers, expected):
    codec = B3Codec()
    lowered = {k.lower(): v for k, v in headers.items()}
    environ = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    assert as_tuple(codec.extract(lowered)) == expected
    assert as_tuple(codec.extract(environ)) == expected
    environ["wsgi.version"] = (1, 0)  # a real environ is read in place
    assert as_tuple(codec.extract(environ)) == expected


def test_extract_has_no_baggage_or_state():
    context = B3Codec().extract(ids(sampled="1"))
    assert context.baggage == {}
    assert context.debug_id is None
    assert context.trace_state is None


@pytest.mark.parametrize("carrier", [None, 42, "b3: 0", object()])
def test_extract_rejects_unusable_carrier(carrier):
    with pytest.raises(InvalidCarrierException):
        B3Codec().extract(carrier)


# -- inject -------------------------------------------------------------------------------------

TRACE_ID = int(T64, 16)
SPAN_ID = int(S, 16)
PARENT_ID = int(P, 16)

INJECT_CASES = [
    ("root sampled", SpanContext(TRACE_ID, SPAN_ID, 0, 1),
     {"x-b3-traceid": T64, "x-b3-spanid": S, "x-b3-sampled": "1"}, f"{T64}-{S}-1"),
    ("child sampled", SpanContext(TRACE_ID, SPAN_ID, PARENT_ID, 1),
     {"x-b3-traceid": T64, "x-b3-spanid": S, "x-b3-parentspanid": P, "x-b3-sampled": "1"},
     f"{T64}-{S}-1-{P}"),
    ("denied", SpanContext(TRACE_ID, SPAN_ID, PARENT_ID, 0),
     {"x-b3-traceid": T64, "x-b3-spanid": S, "x-b3-parentspanid": P, "x-b3-sampled": "0"},
     f"{T64}-{S}-0-{P}"),
    ("debug", SpanContext(TRACE_ID, SPAN_ID, 0, 3),
     {"x-b3-traceid": T64, "x-b3-spanid": S, "x-b3-flags": "1"}, f"{T64}-{S}-d"),
    ("debug flag alone still debug", SpanContext(TRACE_ID, SPAN_ID, 0, 2),
     {"x-b3-traceid": T64, "x-b3-spanid": S, "x-b3-flags": "1"}, f"{T64}-{S}-d"),
    ("deferred", SpanContext(TRACE_ID, SPAN_ID, 0, 0, sampling_deferred=True),
     {"x-b3-traceid": T64, "x-b3-spanid": S}, f"{T64}-{S}"),
    ("deferred child: single form cannot carry the parent",
     SpanContext(TRACE_ID, SPAN_ID, PARENT_ID, 0, sampling_deferred=True),
     {"x-b3-traceid": T64, "x-b3-spanid": S, "x-b3-parentspanid": P}, f"{T64}-{S}"),
    ("128-bit", SpanContext(int(T128, 16), SPAN_ID, 0, 1),
     {"x-b3-traceid": T128, "x-b3-spanid": S, "x-b3-sampled": "1"}, f"{T128}-{S}-1"),
    ("128-bit with leading zeros kept",
     SpanContext(int("0000000000000001" + T64, 16), SPAN_ID, 0, 1),
     {"x-b3-traceid": "0000000000000001" + T64, "x-b3-spanid": S, "x-b3-sampled": "1"},
     f"0000000000000001{T64}-{S}-1"),
    ("short ids zero-padded", SpanContext(1, 2, 3, 1),
     {"x-b3-traceid": "0000000000000001", "x-b3-spanid": "0000000000000002",
      "x-b3-parentspanid": "0000000000000003", "x-b3-sampled": "1"},
     "0000000000000001-0000000000000002-1-0000000000000003"),
    ("deny-only", SpanContext(0, 0, flags=0), {"x-b3-sampled": "0"}, "0"),
    ("accept-only", SpanContext(0, 0, flags=1), {"x-b3-sampled": "1"}, "1"),
    ("debug-only", SpanContext(0, 0, flags=3), {"x-b3-flags": "1"}, "d"),
    ("nothing to say", SpanContext(0, 0, sampling_deferred=True), {}, None),
]


@pytest.mark.parametrize("context, multi, single", [c[1:] for c in INJECT_CASES],
                         ids=[c[0] for c in INJECT_CASES])
def test_inject_multi(context, multi, single):
    carrier = {}
    B3Codec().inject(context, carrier)
    assert carrier == multi


@pytest.mark.parametrize("context, multi, single", [c[1:] for c in INJECT_CASES],
                         ids=[c[0] for c in INJECT_CASES])
def test_inject_single(context, multi, single):
    carrier = {}
    B3Codec(multi_header=False, single_header=True).inject(context, carrier)
    assert carrier == ({} if single is None else {"b3": single})


@pytest.mark.parametrize("context, multi, single", [c[1:] for c in INJECT_CASES],
                         ids=[c[0] for c in INJECT_CASES])
def test_inject_both_forms_write_identical_values(context, multi, single):
    carrier = {}
    B3Codec(multi_header=True, single_header=True).inject(context, carrier)
    expected = dict(multi)
    if single is not None:
        expected["b3"] = single
    assert carrier == expected
    # Each form alone reads back as the same context.
    codec = B3Codec()
    from_single = codec.extract({"b3": single}) if single is not None else None
    from_multi = codec.extract(multi)
    if single is not None and context.parent_id and context.sampling_deferred:
        # The single form has no field for a parent without a state.
        assert from_single.parent_id == 0
        assert (from_single.trace_id, from_single.span_id) == (from_multi.trace_id,
                                                               from_multi.span_id)
    else:
        assert as_tuple(from_single) == as_tuple(from_multi)


@pytest.mark.parametrize("context, multi, single", [c[1:] for c in INJECT_CASES],
                         ids=[c[0] for c in INJECT_CASES])
def test_inject_then_extract_round_trip(context, multi, single):
    carrier = {}
    B3Codec(multi_header=True, single_header=True).inject(context, carrier)
    extracted = B3Codec().extract(carrier)
    if not multi:
        assert extracted is None
        return
    flags = context.flags
    if flags & 2:
        flags = 3  # debug implies sampled on the wire
    # b3 wins on extract, and it cannot carry the parent of a deferred context.
    parent_id = 0 if context.sampling_deferred else context.parent_id
    assert as_tuple(extracted) == (context.trace_id, context.span_id, parent_id,
                                   0 if context.sampling_deferred else flags,
                                   context.sampling_deferred)


def test_inject_removes_stale_headers_of_the_same_protocol():
    carrier = {"x-b3-parentspanid": P, "x-b3-sampled": "1", "x-b3-flags": "1", "b3": "stale",
               "other": "kept"}
    B3Codec().inject(SpanContext(TRACE_ID, SPAN_ID, 0, 0, sampling_deferred=True), carrier)
    assert carrier == {"x-b3-traceid": T64, "x-b3-spanid": S, "other": "kept"}

    carrier = {"x-b3-traceid": "stale", "x-b3-spanid": "stale", "x-b3-sampled": "1"}
    B3Codec(multi_header=False, single_header=True).inject(SpanContext(0, 0, flags=0), carrier)
    assert carrier == {"b3": "0"}


def test_inject_into_case_insensitive_carrier_replaces_any_spelling():
    carrier = CaseInsensitiveDict({"X-B3-Sampled": "1", "X-B3-ParentSpanId": P})
    B3Codec().inject(SpanContext(TRACE_ID, SPAN_ID, 0, 0), carrier)
    assert dict(carrier.lower_items()) == {"x-b3-traceid": T64, "x-b3-spanid": S,
                                           "x-b3-sampled": "0"}


@pytest.mark.parametrize("carrier", [None, [], "", 42, ()])
def test_inject_rejects_wrong_carrier(carrier):
    with pytest.raises(InvalidCarrierException):
        B3Codec().inject(SpanContext(TRACE_ID, SPAN_ID), carrier)


def test_codec_needs_a_form():
    with pytest.raises(ValueError):
        B3Codec(multi_header=False, single_header=False)


ODD_IDS = ["463ac35c9f6413ad", "463AC35C9F6413AD", "0000000000000000", "463ac35c9f6413a",
           "463ac35c9f6413ad0", "0x63ac35c9f6413a", "+463ac35c9f6413a", "463ac35c_f6413ad",
           "463ac35c 9f6413a", "463ac35c9f 413ad", " 463ac35c9f6413ad ", "463ac35c9f6413ag",
           "٤63ac35c9f6413ad", "463ac35c9f6413ad463ac35c9f6413ad",
           "46 3ac35c9f6413ad463ac35c9f6413a", "463ac35c9f6413ad,1", "", "\t463ac35c9f6413ad"]


@pytest.mark.parametrize("trace", ODD_IDS + ["0" * 16 + "463ac35c9f6413ad"])
def test_ids_read_from_a_dict_as_the_environ_parser_reads_them(trace):
    # A dict is read by extract_dict (bytes.fromhex); an environ without a plan by
    # _parse_multi (the regular expressions and int(text, 16)): they must agree.
    for span in ODD_IDS:
        for parent in (None, span):
            headers = {"x-b3-traceid": trace, "x-b3-spanid": span, "x-b3-sampled": "1"}
            if parent is not None:
                headers["x-b3-parentspanid"] = parent
            environ = {"wsgi.version": (1, 0)}
            environ.update(("HTTP_" + k.upper().replace("-", "_"), v) for k, v in headers.items())
            assert B3Codec().extract(headers) == B3Codec().extract(environ), (trace, span, parent)
