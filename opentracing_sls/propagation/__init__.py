"""Propagation codecs: how a span context travels in headers, text maps and bytes.

The tracer maps OpenTracing formats to codecs: ``Format.HTTP_HEADERS`` and ``Format.TEXT_MAP``
to :func:`build_text_codec` (``url_encoding`` True for HTTP headers), ``Format.BINARY`` to
:class:`BinaryCodec`. Every codec's ``extract`` is total: malformed or missing data gives None,
only a carrier of an unusable type raises ``opentracing.InvalidCarrierException``.

Text propagation names: ``"b3"`` (B3 multi-headers), ``"b3single"`` (single ``b3`` header),
``"w3c"`` (``traceparent``/``tracestate``), ``"jaeger"`` (``uber-trace-id``, ``uberctx-*``).
"""

from __future__ import annotations

from .b3 import B3Codec
from .base import Codec, TextCodec
from .binary import BinaryCodec
from .carrier import HeaderReader
from .composite import DEFAULT_PROPAGATION, PROPAGATION_NAMES, CompositeCodec, build_text_codec
from .jaeger import JaegerCodec
from .w3c import W3CCodec

__all__ = [
    "B3Codec",
    "BinaryCodec",
    "Codec",
    "CompositeCodec",
    "DEFAULT_PROPAGATION",
    "HeaderReader",
    "JaegerCodec",
    "PROPAGATION_NAMES",
    "TextCodec",
    "W3CCodec",
    "build_text_codec",
]
