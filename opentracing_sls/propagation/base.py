"""The codec interface the tracer calls for ``Tracer.inject`` / ``Tracer.extract``."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from ..span_context import SpanContext
from .carrier import HeaderReader


class Codec:
    """Writes a :class:`SpanContext` into a carrier and reads one back.

    ``extract`` is total: missing or malformed propagation data gives ``None`` (the tracer
    then starts a new root); only a carrier of an unusable type raises
    :class:`opentracing.InvalidCarrierException`.
    """

    __slots__ = ()

    def inject(self, span_context: SpanContext, carrier: Any) -> None:
        """Write ``span_context`` into ``carrier``."""
        raise NotImplementedError

    def extract(self, carrier: Any) -> Optional[SpanContext]:
        """The context propagated in ``carrier``; None when there is none or it is malformed."""
        raise NotImplementedError


class TextCodec(Codec):
    """A codec for header-like carriers (``Format.HTTP_HEADERS`` and ``Format.TEXT_MAP``).

    Subclasses implement :meth:`extract_from`, so a composite can read the carrier once and
    hand the same :class:`HeaderReader` to every codec.
    """

    __slots__ = ()

    #: ``(header names, name prefixes)`` (lowercase) that :meth:`extract_from` reads, when
    #: finding none of them means it returns None. A composite codec then reads only those
    #: and skips the codec when none is present. None: unknown, always asked.
    EXTRACT_READS: Optional[Tuple[Tuple[str, ...], Tuple[str, ...]]] = None

    def extract(self, carrier: Any) -> Optional[SpanContext]:
        return self.extract_from(HeaderReader(carrier))

    def extract_from(self, headers: HeaderReader) -> Optional[SpanContext]:
        """Like :meth:`extract`, from an already normalised carrier."""
        raise NotImplementedError
