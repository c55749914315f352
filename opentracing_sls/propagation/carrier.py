"""Reading and writing text carriers (HTTP headers, text maps) the same way in every codec.

Extraction runs on every request, and the same carrier may be read by several codecs, so
:class:`HeaderReader` looks at the carrier once: a WSGI environ is read in place by its own key
spelling; any other carrier is copied into a dict keyed by lowercase header name. Values are
only decoded when a codec asks for them.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Dict, Iterator, List, Optional, Tuple

from opentracing import InvalidCarrierException

_WSGI_PREFIX = "HTTP_"

# Header name -> WSGI environ key ("x-b3-traceid" -> "HTTP_X_B3_TRACEID"). Codecs ask for a
# handful of constant names; the bound only guards against callers passing arbitrary ones.
_ENVIRON_KEYS: Dict[str, str] = {}
_ENVIRON_KEYS_MAX = 256


def _environ_key(name: str) -> str:
    key = _ENVIRON_KEYS.get(name)
    if key is None:
        key = _WSGI_PREFIX + name.upper().replace("-", "_")
        if len(_ENVIRON_KEYS) < _ENVIRON_KEYS_MAX:
            _ENVIRON_KEYS[name] = key
    return key


def _to_text(value: Any) -> Optional[str]:
    """The first value as ``str``, or None when there is nothing usable."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        # Repeated headers: the first value wins (B3 spec, and what proxies forward first).
        if not value:
            return None
        value = value[0]
        if isinstance(value, str):
            return value
    if isinstance(value, (bytes, bytearray)):
        # Header bytes are latin-1 on the wire (WSGI/PEP 3333 does the same); it never fails.
        return value.decode("latin-1")
    return None


class HeaderReader:
    """A case-insensitive, read-only view of a text carrier.

    Accepts plain dicts, any object with ``items()`` (requests ``CaseInsensitiveDict``,
    werkzeug ``Headers``), werkzeug/Flask ``EnvironHeaders`` and a raw WSGI environ (both read
    in place: ``x-b3-traceid`` is looked up as ``HTTP_X_B3_TRACEID``), and a list of
    ``(name, value)`` pairs (ASGI-style, bytes allowed). In a dict, keys spelled the WSGI way
    (``HTTP_X_B3_TRACEID``) are understood too; only those get underscores turned into
    hyphens, so a text-map key like ``uberctx-user_id`` keeps its underscore. Values may be
    ``str``, ``bytes`` (decoded latin-1) or a list/tuple of those (the first wins); ``None``
    and other types read as absent. When a name occurs twice (``X-B3-Sampled`` and
    ``x-b3-sampled``) the first in iteration order wins.

    Raises :class:`opentracing.InvalidCarrierException` only for a carrier that cannot be
    iterated (``None``, an int, or an object whose ``items()`` fails).
    """

    __slots__ = ("_headers", "_environ")

    def __init__(self, carrier: Any) -> None:
        environ = _environ_of(carrier)
        self._environ = environ
        self._headers = None if environ is not None else _collect(carrier)

    def _raw(self, name: str) -> Any:
        if self._environ is not None:
            return self._environ.get(_environ_key(name))
        return self._headers.get(name)  # type: ignore[union-attr]

    def get(self, name: str) -> Optional[str]:
        """The value of the lowercase header ``name``, or None when absent or unusable."""
        value = self._raw(name)
        if value is None:
            return None
        return _to_text(value)

    def get_single(self, name: str) -> Optional[str]:
        """Like :meth:`get` for single-token headers (ids, flags), whitespace stripped.

        A server may join a repeated header with commas (``x-b3-sampled: 1,0``); no id or
        flag value contains a comma, so the first element is the first value.
        """
        value = self.get(name)
        if value is None:
            return None
        if "," in value:
            value = value.split(",", 1)[0]
        return value.strip()

    def get_all(self, name: str) -> List[str]:
        """Every value of header ``name``: a list/tuple value gives all its usable elements.

        For protocols where a repeated header means something other than "first wins"
        (W3C: two ``traceparent`` are invalid, several ``tracestate`` are one list).
        """
        value = self._raw(name)
        if value is None:
            return []
        if isinstance(value, (list, tuple)):
            texts = [_to_text(item) for item in value]
            return [text for text in texts if text is not None]
        text = _to_text(value)
        return [] if text is None else [text]

    def with_prefix(self, prefix: str) -> Iterator[Tuple[str, str]]:
        """``(rest of the lowercase name, value)`` for every header starting with ``prefix``."""
        if self._environ is not None:
            environ_prefix = _environ_key(prefix)
            cut = len(environ_prefix)
            for key, raw in self._environ.items():
                if isinstance(key, str) and key.startswith(environ_prefix):
                    value = _to_text(raw)
                    if value is not None:
                        yield key[cut:].replace("_", "-").lower(), value
            return
        cut = len(prefix)
        for key, raw in self._headers.items():  # type: ignore[union-attr]
            if key.startswith(prefix):
                value = _to_text(raw)
                if value is not None:
                    yield key[cut:], value

    def __len__(self) -> int:
        """How many headers the carrier holds (for a WSGI environ: its ``HTTP_*`` keys)."""
        if self._environ is not None:
            return sum(1 for key in self._environ
                       if isinstance(key, str) and key.startswith(_WSGI_PREFIX))
        return len(self._headers)  # type: ignore[arg-type]


def _environ_of(carrier: Any) -> Optional[Dict[str, Any]]:
    """The WSGI environ behind ``carrier``, if it is one (or werkzeug's view of one)."""
    if isinstance(carrier, dict):
        # PEP 3333 requires "wsgi.version" in every environ; no header dict has that key.
        return carrier if "wsgi.version" in carrier else None
    if isinstance(carrier, (list, tuple)):
        return None
    # werkzeug EnvironHeaders: its items() re-spells every environ key in Python; looking up
    # the few keys we need in its environ is much cheaper and gives the same answers.
    environ = getattr(carrier, "environ", None)
    if isinstance(environ, dict) and hasattr(carrier, "items"):
        return environ
    return None


def _collect(carrier: Any) -> Dict[str, Any]:
    if isinstance(carrier, (list, tuple)):
        return _collect_pairs(carrier)
    items = carrier.items if isinstance(carrier, dict) else getattr(carrier, "items", None)
    if not callable(items):
        raise InvalidCarrierException(
            f"carrier must be a mapping of header names to values, got {type(carrier).__name__}")
    headers: Dict[str, Any] = {}
    try:
        for key, value in items():
            if not isinstance(key, str):
                if not isinstance(key, (bytes, bytearray)):
                    continue
                key = key.decode("latin-1")
            # Inlined rather than a helper call: this loop runs for every header of every
            # request.
            if key.startswith(_WSGI_PREFIX):
                key = key[5:].replace("_", "-").lower()
            else:
                key = key.lower()
            if key not in headers:
                headers[key] = value
    except Exception as exc:  # the carrier's own iteration failed: it is unusable
        raise InvalidCarrierException(f"cannot read carrier: {exc!r}") from exc
    return headers


def _collect_pairs(pairs: Any) -> Dict[str, Any]:
    """A list of ``(name, value)`` pairs (ASGI scopes use 2-item lists of bytes)."""
    headers: Dict[str, Any] = {}
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            continue
        key, value = pair
        if not isinstance(key, str):
            if not isinstance(key, (bytes, bytearray)):
                continue
            key = key.decode("latin-1")
        if key.startswith(_WSGI_PREFIX):
            key = key[5:].replace("_", "-").lower()
        else:
            key = key.lower()
        if key not in headers:
            headers[key] = value
    return headers


def require_writable(carrier: Any) -> None:
    """Raise :class:`opentracing.InvalidCarrierException` unless headers can be set on it.

    Accepts any ``MutableMapping`` and werkzeug-style ``Headers`` (``__setitem__`` plus
    ``items``, not registered as a ``MutableMapping``).
    """
    if type(carrier) is dict or isinstance(carrier, MutableMapping):
        return
    if hasattr(type(carrier), "__setitem__") and hasattr(carrier, "items"):
        return
    raise InvalidCarrierException(
        f"carrier must be a mutable mapping of header names, got {type(carrier).__name__}")


def discard(carrier: Any, name: str) -> None:
    """Remove header ``name`` if present (case-insensitively when the carrier is)."""
    if name in carrier:
        del carrier[name]
