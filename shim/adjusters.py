"""Query-time corrections of a trace, as Jaeger's query service applies them before answering.

``reparent_shared_children``: Jaeger's ``SpanIDDeduper`` (``zipkin_span_id_uniquify``) for the
Zipkin shared-span model. At ingest the server half of a span that a client and a server share
already got its own id under the client half (``zipkin_common.make_span``, tag ``shared=true``);
what only query time can do is move the server's own children - which name the shared id as
their parent, because that is the id the server's process saw - under the server half, where
they were made. Without it, a call's server-side work hangs under the client span beside the
server span instead of inside it.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

from .model import CHILD_OF, Reference, Span
from .zipkin_common import SHARED_TAG


def reparent_shared_children(spans: Sequence[Span]) -> List[Span]:
    """The spans, with every child of a shared id (other than the server half) under the
    server half. Spans that need no change are returned as they are."""
    servers: Dict[int, int] = {span.parent_id: span.span_id for span in spans
                               if span.parent_id and SHARED_TAG in span.tags}
    if not servers:
        return list(spans)
    adjusted = []
    for span in spans:
        server = servers.get(span.parent_id)
        if server is None or server == span.span_id:
            adjusted.append(span)
            continue
        shared = span.parent_id
        refs = tuple(Reference(CHILD_OF, ref.trace_id, server)
                     if ref.ref_type == CHILD_OF and ref.span_id == shared else ref
                     for ref in span.references)
        adjusted.append(span._replace(parent_id=server, references=refs))
    return adjusted
