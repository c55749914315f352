"""Zipkin v1 and v2 JSON bodies (port 9411) to the shim's one span model.

Public API::

    decode_zipkin_v2_json(body) -> ZipkinDecodeResult   # POST /api/v2/spans (Istio's Envoys)
    decode_zipkin_v1_json(body) -> ZipkinDecodeResult   # POST /api/v1/spans (Istio 1.0 Envoys)
    spans, skipped, first_error = result                # a NamedTuple

``body`` is the decompressed request body. A body that is not a JSON array of objects raises
``DecodeError`` (nothing else ever escapes); a malformed span inside a good body is skipped and
counted in ``skipped``, the others are kept (Jaeger rejected the whole body for one bad span).

The mapping follows Jaeger's Zipkin path (``shared/reference/query-api-and-zipkin.md`` section 9).
Where Jaeger <= 1.52 (Zipkin -> zipkincore -> model) and >= 1.53 (OTel zipkinreceiver) differ,
the more precise one is taken; the choices:

Ids
    ``traceId``: 1-32 hex digits, left-padded, 128 bits kept; ``id``/``parentId``: 1-16 hex
    digits (up to 32 when the extra leading digits are zeros; Jaeger's ``cutLongID`` dropped them
    whatever they were).
    Upper case is accepted; a non-hex, empty, over-long or zero id skips the span. A zero, empty
    or self-referencing ``parentId`` means a root; otherwise ``parent_id`` is set and the span
    carries one CHILD_OF reference (Jaeger stores the parent as a reference).
Times
    µs integers (finite floats are truncated). No ``duration``: 0. No ``timestamp``: the earliest
    annotation (v1: the side's begin annotation), else the span is skipped: a time-indexed store
    cannot place it (Jaeger >= 1.53 would put it at 1970).
Flags
    SAMPLED (a span that reached a collector was sampled), DEBUG|SAMPLED with ``debug: true``.
    Jaeger <= 1.52 set only DEBUG, leaving ordinary Zipkin spans looking unsampled.
Process
    ``localEndpoint.serviceName`` (v1: the endpoint of the side's core annotations, else Jaeger's
    order: any core annotation, ``lc``, any annotation, any binary annotation but the
    ``sa/ca/ma`` addresses, which name the other side); none:
    ``unknown-service-name``, Jaeger's name. Process tags: ``ip`` = ipv4 (or ipv6 when it is the
    only address), ``ipv6`` when both are given, ``port`` (int64) when non-zero. Addresses stay
    strings, as jaeger-client reports its own ``ip`` (Jaeger <= 1.52 packed ipv4 into an int64,
    sign-extended). Span tags ``jaegerClient``/``jaeger.version`` -> process ``jaeger.version``,
    ``jaeger.hostname`` -> ``hostname`` (Jaeger). Equal processes are one object per body.
Kind
    v2 ``kind`` -> tag ``span.kind`` = ``client|server|producer|consumer``; v1: ``cs/cr`` client,
    ``sr/ss`` server, ``ms`` producer, ``mr`` consumer (Jaeger <= 1.52 knew no messaging kinds).
    No or an unknown kind: a local span without the tag; a ``span.kind`` tag is kept only then.
Remote endpoint
    ``remoteEndpoint`` (v1: ``sa`` for a client side, ``ca`` server, ``ma`` messaging, the first
    of them for a local span) -> ``peer.service``, ``peer.ipv4``, ``peer.ipv6`` (strings) and
    ``peer.port`` (int64), the OpenTracing conventions; empty fields are left out.
Tags
    v2 tags stay STRING tags (non-string scalars keep their JSON spelling, null drops the tag, an
    object or array skips the span). v1 binary annotations keep their declared ``type`` (BOOL,
    I16/I32/I64 -> int64, DOUBLE, BYTES from base64, STRING) or, untyped, the JSON value's type.
    ``lc`` -> ``component`` (an empty ``lc`` marker is dropped). ``error``: Zipkin marks a failed
    span by the tag's presence, with ``""``/``"true"`` or the message as value -> BOOL
    ``error=true`` (what the Jaeger UI and ``tags={"error":"true"}`` look for), plus STRING
    ``error.message`` when the value is a message; ``error: "false"`` stays a plain tag.
Annotations
    -> logs at their timestamp with field ``event=<value>``; a value that is a JSON object of
    strings becomes those fields (Jaeger <= 1.52: how OpenTracing key/value logs were bridged).
    Empty values are dropped. v2: every annotation is a log (``kind`` says the side, so Envoy's
    ``ss`` is just the event it is); v1: the core annotations that define the side and its timing
    are consumed, the rest are logs.
Shared spans
    A client and a server that share one Zipkin span id (v2 ``shared: true``; v1: one span with
    both ``cs`` and ``sr``, or a server-only span without ``timestamp`` (or with ``ss`` but without
    ``duration``) - Zipkin's v1 convention, which Istio 1.0's Envoys follow) would overwrite each
    other in a store keyed by span id. The client keeps the id; the server half gets
    ``shared_server_span_id(trace_id, id)`` (deterministic, so retries and halves arriving in other
    bodies agree), ``parent_id`` = the shared id (its client), and a BOOL tag ``shared=true``.
    That is what Jaeger's ``zipkin_span_id_uniquify`` adjuster does at query time, but at ingest.
    What only the query time can do: the server's own children still name the shared id as their
    parent; :func:`~opentracing_sls.shim.adjusters.reparent_shared_children` moves them under the
    server half when a trace is read.
v1 span holding both sides
    Split into two spans as Jaeger does; annotations and binary annotations go to the side whose
    service name their endpoint carries (else the client side, as Zipkin's converter does); the
    client side owns ``timestamp``/``duration``, the server side is timed by ``sr``..``ss``.
Robustness
    ``json.loads`` errors (bad UTF-8, > 4300-digit ints, deep nesting) -> ``DecodeError``; every
    field is type-checked; escaped lone surrogates, which no sink could encode, become U+FFFD.
"""

from __future__ import annotations

from .zipkin_body import ZipkinDecodeResult
from .zipkin_common import UNKNOWN_SERVICE_NAME, shared_server_span_id
from .zipkin_v1 import decode_zipkin_v1_json
from .zipkin_v2 import decode_zipkin_v2_json

__all__ = [
    "UNKNOWN_SERVICE_NAME",
    "ZipkinDecodeResult",
    "decode_zipkin_v1_json",
    "decode_zipkin_v2_json",
    "shared_server_span_id",
]
