"""Knowing before a span starts that our tracer will not sample it.

Our tracer drops the tags of an unsampled span (only ``sampling.priority`` counts), so
building them is wasted work on every unsampled request: the server span's URL and peer
tags, the client span's URL parse. The tracer samples parent-based: a child of a context
with ids and a decision inherits that decision (``Tracer`` in ``tracer.py``). So when the
parent is such a context of ours saying "not sampled", and the tracer is exactly ours, the
span will be unsampled whatever its tags are, and they can be left out.

OpenTracing's own no-op tracer (exactly ``opentracing.Tracer``, what ``JAEGER_DISABLED=true``
gives) keeps no span at all, so its spans get no tags either.

Anything else (another tracer, a subclass of ours or of the no-op tracer, a root span the
sampler decides, a deferred or sampled parent) gets its tags as usual: the shortcut only ever
skips work whose result would have been thrown away.

One more shortcut for exactly our tracer, unrelated to sampling: it reads a WSGI environ in
place (``HeaderReader``), so it gets the environ rather than a :class:`WSGIHeaders` view.
"""

from __future__ import annotations

from typing import Any, Dict

import opentracing
from opentracing import Format

from opentracing_sls.constants import SAMPLED_FLAG
from opentracing_sls.propagation import CompositeCodec
from opentracing_sls.span_context import SpanContext
from opentracing_sls.tracer import Tracer

from .wsgi import WSGIHeaders

_HTTP_HEADERS = Format.HTTP_HEADERS
_NoopTracer = opentracing.Tracer


def child_unsampled(tracer: Any, parent: Any) -> bool:
    """True when a span that ``tracer`` starts as a child of ``parent`` (a span context)
    is certainly not sampled (or OpenTracing's no-op tracer, which keeps nothing)."""
    if type(tracer) is not Tracer:
        return type(tracer) is _NoopTracer
    return (type(parent) is SpanContext and not parent.flags & SAMPLED_FLAG
            and not parent.sampling_deferred and parent.trace_id != 0 and parent.span_id != 0)


def active_child_unsampled(tracer: Any) -> bool:
    """Like :func:`child_unsampled` for the child of ``tracer``'s active span."""
    if type(tracer) is not Tracer:
        return type(tracer) is _NoopTracer
    # The scope manager attribute opentracing.Tracer keeps, not its property: one call less
    # per outgoing request.
    scope = tracer._scope_manager.active
    if scope is None:
        return False
    parent = scope.span.context
    return (type(parent) is SpanContext and not parent.flags & SAMPLED_FLAG
            and not parent.sampling_deferred and parent.trace_id != 0 and parent.span_id != 0)


def environ_carrier(tracer: Any, environ: Dict[str, Any]) -> Any:
    """The carrier to extract a request's context from: the environ itself for our tracer
    with its own HTTP codec (which reads an environ and the view of one alike; 1.6 k
    instructions less), else a :class:`WSGIHeaders` view, which any tracer can read."""
    if (type(tracer) is Tracer and "wsgi.version" in environ
            and type(tracer.codecs.get(_HTTP_HEADERS)) is CompositeCodec):
        return environ
    return WSGIHeaders(environ)
