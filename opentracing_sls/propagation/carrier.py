"""Reading and writing text carriers (HTTP headers, text maps) the same way in every codec.

Extraction runs on every request, and the same carrier may be read by several codecs, so
:class:`HeaderReader` looks at the carrier once: a WSGI environ is read in place by its own key
spelling; any other carrier is copied into a dict keyed by lowercase header name. Values are
only decoded when a codec asks for them.

Given a :class:`HeaderPlan` (the names and name prefixes its codecs read), a reader keeps only
those headers and notes which are present, so a composite codec asks only the codecs that have
something to read: the common request carries one format, or none.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Dict, FrozenSet, Iterable, Iterator, List, Optional, Tuple

from opentracing import InvalidCarrierException

_WSGI_PREFIX = "HTTP_"

# Header name -> WSGI environ key ("x-b3-traceid" -> "HTTP_X_B3_TRACEID"). Codecs ask for a
# handful of constant names; the bound only guards against callers passing arbitrary ones.
_ENVIRON_KEYS: Dict[str, str] = {}
_ENVIRON_KEYS_MAX = 256


def header_token(value: Any) -> Optional[str]:
    """A raw header value as :meth:`HeaderReader.get_single` returns it: text, first of a
    comma-joined list, stripped; None when it cannot be text."""
    if type(value) is not str:
        value = _to_text(value)
        if value is None:
            return None
    if "," in value:
        value = value.split(",", 1)[0]
    return value.strip()


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

    __slots__ = ("_headers", "_environ", "_prefix_source")

    def __init__(self, carrier: Any, plan: Optional[HeaderPlan] = None) -> None:
        environ = _environ_of(carrier)
        # ``_environ``: looked up in place (no plan). ``_headers``: lowercase name -> raw
        # value, only the planned names with a plan. ``_prefix_source``: what with_prefix()
        # scans, the environ or ``_headers``; with a plan, None when no header has a planned
        # prefix.
        if plan is None:
            self._environ = environ
            self._headers = None if environ is not None else _collect(carrier)[0]
            self._prefix_source = environ if environ is not None else self._headers
        else:
            self._environ = None
            self._headers, self._prefix_source = read_planned(carrier, plan)

    @classmethod
    def planned(cls, headers: Dict[str, Any], prefix_source: Any) -> HeaderReader:
        """The reader :func:`read_planned` describes (what ``HeaderReader(carrier, plan)``
        would be)."""
        reader = _new_reader(cls)
        reader._environ = None
        reader._headers = headers
        reader._prefix_source = prefix_source
        return reader

    def _raw(self, name: str) -> Any:
        if self._environ is not None:
            return self._environ.get(_environ_key(name))
        return self._headers.get(name)  # type: ignore[union-attr]

    def get(self, name: str) -> Optional[str]:
        """The value of the lowercase header ``name``, or None when absent or unusable."""
        value = self._raw(name)
        if value is None or type(value) is str:
            return value
        return _to_text(value)

    def get_single(self, name: str) -> Optional[str]:
        """Like :meth:`get` for single-token headers (ids, flags), whitespace stripped.

        A server may join a repeated header with commas (``x-b3-sampled: 1,0``); no id or
        flag value contains a comma, so the first element is the first value.
        """
        # get() and _raw() inlined: codecs call this for every id and flag of every request.
        if self._environ is not None:
            value = self._environ.get(_environ_key(name))
        else:
            value = self._headers.get(name)  # type: ignore[union-attr]
        if value is None:
            return None
        if type(value) is str and "," not in value:
            return value.strip()
        return header_token(value)

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
        source = self._prefix_source
        if source is None:
            return
        if source is not self._headers:  # a WSGI environ, by its own key spelling
            environ_prefix = _environ_key(prefix)
            cut = len(environ_prefix)
            for key, raw in source.items():
                if isinstance(key, str) and key.startswith(environ_prefix):
                    value = _to_text(raw)
                    if value is not None:
                        yield key[cut:].replace("_", "-").lower(), value
            return
        cut = len(prefix)
        for key, raw in source.items():
            if key.startswith(prefix):
                value = _to_text(raw)
                if value is not None:
                    yield key[cut:], value

    def has_any(self, names: FrozenSet[str], prefixed: bool) -> bool:
        """Whether one of ``names`` is present, or (``prefixed``) a name with one of the
        plan's prefixes. Meant for a reader built with a plan that covers ``names``."""
        if prefixed and self._prefix_source is not None:
            return True
        if self._environ is not None:
            return any(self._environ.get(_environ_key(name)) is not None for name in names)
        return not names.isdisjoint(self._headers)  # type: ignore[arg-type]

    def __len__(self) -> int:
        """How many headers the carrier holds (for a WSGI environ: its ``HTTP_*`` keys; with
        a plan: the planned names found)."""
        if self._environ is not None:
            return sum(1 for key in self._environ
                       if isinstance(key, str) and key.startswith(_WSGI_PREFIX))
        return len(self._headers)  # type: ignore[arg-type]


_new_reader = object.__new__

# Carrier types whose instances may be views of an environ (an ``items`` method on the class).
_VIEW_TYPES: Dict[type, bool] = {}


def read_planned(carrier: Any, plan: HeaderPlan) -> Tuple[Dict[str, Any], Any]:
    """``(headers, prefix_source)`` of ``HeaderReader(carrier, plan)``, without the reader.

    ``headers``: the planned names present (lowercase name -> raw value). ``prefix_source``:
    what :meth:`HeaderReader.with_prefix` scans (the environ or ``headers``), or None when no
    header has a planned prefix. This runs for every request a server traces, so the common
    carriers (a WSGI environ, a view of one) are recognised here without a call.
    """
    cls = type(carrier)
    if cls is dict:
        # PEP 3333 requires "wsgi.version" in every environ; no header dict has that key.
        environ = carrier if "wsgi.version" in carrier else None
    elif _VIEW_TYPES.get(cls):
        environ = getattr(carrier, "environ", None)
        if not isinstance(environ, dict):
            environ = None
    else:
        environ = _environ_of(carrier)
    if environ is None:
        headers, prefixed = _collect(carrier, plan)
        return headers, headers if prefixed else None
    # One set intersection in C, then a plain loop over the few names found (cheaper than
    # building the dict in C from map/zip iterators, measured in instructions).
    headers = {}
    present = plan._environ_keys & environ.keys()
    if present:
        names = plan._environ_names
        for key in present:
            headers[names[key]] = environ[key]
    mark = plan._environ_mark
    if mark is None:
        return headers, environ if plan.environ_has_prefix(environ) else None
    # environ_has_prefix() for the one-prefix plan, without the call.
    try:
        joined = "\0".join(environ)
    except TypeError:  # a key that is not a str (PEP 3333 says they all are)
        return headers, environ if plan.environ_has_prefix(environ) else None
    if mark in joined or joined.startswith(plan.environ_prefixes):
        return headers, environ
    return headers, None


def _environ_of(carrier: Any) -> Optional[Dict[str, Any]]:
    """The WSGI environ behind ``carrier``, if it is one (or werkzeug's view of one)."""
    cls = type(carrier)
    view = _VIEW_TYPES.get(cls)
    if view is None:
        if isinstance(carrier, dict):
            # PEP 3333 requires "wsgi.version" in every environ; no header dict has that key.
            return carrier if "wsgi.version" in carrier else None
        if isinstance(carrier, (list, tuple)):
            return None
        view = callable(getattr(cls, "items", None))
        if view and len(_VIEW_TYPES) < 256:
            _VIEW_TYPES[cls] = True
    if view:
        # werkzeug EnvironHeaders: its items() re-spells every environ key in Python; looking
        # up the few keys we need in its environ is much cheaper and gives the same answers.
        environ = getattr(carrier, "environ", None)
        if isinstance(environ, dict):
            return environ
        return None
    # An object whose own attribute (not its class) provides items().
    environ = getattr(carrier, "environ", None)
    if isinstance(environ, dict) and hasattr(carrier, "items"):
        return environ
    return None


def _collect(carrier: Any, plan: Optional[HeaderPlan] = None) -> Tuple[Dict[str, Any], bool]:
    """``(lowercase name -> raw value, whether a name has one of the plan's prefixes)``;
    with a plan only its names and prefixes are kept."""
    if isinstance(carrier, (list, tuple)):
        return _collect_pairs(carrier, plan)
    items = carrier.items if isinstance(carrier, dict) else getattr(carrier, "items", None)
    if not callable(items):
        raise InvalidCarrierException(
            f"carrier must be a mapping of header names to values, got {type(carrier).__name__}")
    headers: Dict[str, Any] = {}
    try:
        if plan is None:
            for key, value in items():
                name = _header_name(key)
                if name is not None and name not in headers:
                    headers[name] = value
            return headers, True
        prefixed = False
        relevant = plan.relevant
        prefixes = plan.prefixes
        for key, value in items():
            # One dict lookup per header for the names seen before (hashing a str is cached).
            name = relevant.get(key, _UNSEEN) if type(key) is str else _UNSEEN
            if name is _UNSEEN:
                name = plan.classify(key)
            if name is not None and name not in headers:
                headers[name] = value
                if prefixes and not prefixed and name.startswith(prefixes):
                    prefixed = True
    except Exception as exc:  # the carrier's own iteration failed: it is unusable
        raise InvalidCarrierException(f"cannot read carrier: {exc!r}") from exc
    return headers, prefixed


def _header_name(key: Any) -> Optional[str]:
    """The lowercase header name of a carrier key (``HTTP_X_B3_TRACEID`` -> ``x-b3-traceid``;
    bytes keys as latin-1, as ASGI has them), or None for a key that is no header name."""
    if not isinstance(key, str):
        if not isinstance(key, (bytes, bytearray)):
            return None
        key = key.decode("latin-1")
    if key.startswith(_WSGI_PREFIX):
        return key[5:].replace("_", "-").lower()
    return key.lower()


def _collect_pairs(pairs: Any, plan: Optional[HeaderPlan]) -> Tuple[Dict[str, Any], bool]:
    """A list of ``(name, value)`` pairs (ASGI scopes use 2-item lists of bytes)."""
    headers: Dict[str, Any] = {}
    prefixed = plan is None
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            continue
        key, value = pair
        if plan is not None:
            name = plan.classify(key)
            if name is not None and name not in headers:
                headers[name] = value
                if plan.prefixes and name.startswith(plan.prefixes):
                    prefixed = True
            continue
        name = _header_name(key)
        if name is not None and name not in headers:
            headers[name] = value
    return headers, prefixed


_UNSEEN = object()


class HeaderPlan:
    """The lowercase header names and name prefixes a set of codecs reads.

    A :class:`HeaderReader` built with a plan keeps only those headers: from a WSGI environ
    it takes the planned keys with one set intersection and checks for a planned prefix
    without a loop in Python; from other carriers it classifies each key with one dict
    lookup (a bounded cache of the key spellings seen).
    """

    __slots__ = ("names", "prefixes", "relevant", "environ_prefixes", "_environ_names",
                 "_environ_keys", "_environ_marks", "_environ_mark")

    #: Bound of :attr:`relevant`: key spellings come from the network.
    CACHE_MAX = 2048

    def __init__(self, names: Iterable[str], prefixes: Iterable[str] = ()) -> None:
        self.names: FrozenSet[str] = frozenset(name.lower() for name in names)
        self.prefixes: Tuple[str, ...] = tuple(sorted({p.lower() for p in prefixes}))
        #: key as spelled in a carrier -> lowercase name when planned, None when not.
        self.relevant: Dict[str, Optional[str]] = {}
        self._environ_names = {_WSGI_PREFIX + name.upper().replace("-", "_"): name
                               for name in self.names}
        self._environ_keys = frozenset(self._environ_names)
        self.environ_prefixes = tuple(_WSGI_PREFIX + p.upper().replace("-", "_")
                                      for p in self.prefixes)
        # "\0" + key for every key of a joined environ: a prefix search in one C call.
        self._environ_marks = tuple("\0" + p for p in self.environ_prefixes)
        # The usual plan has one prefix (Jaeger's uberctx-): read_planned() tests it inline.
        self._environ_mark = self._environ_marks[0] if len(self._environ_marks) == 1 else None

    def classify(self, key: Any) -> Optional[str]:
        """The lowercase name of carrier key ``key`` if the plan reads it, else None."""
        name = _header_name(key)
        if name is None:
            return None
        if name not in self.names and not (self.prefixes and name.startswith(self.prefixes)):
            name = None
        if type(key) is str and len(self.relevant) < self.CACHE_MAX:
            self.relevant[key] = name
        return name

    def environ_has_prefix(self, environ: Dict[str, Any]) -> bool:
        """Whether an ``HTTP_*`` key of ``environ`` starts with a planned prefix."""
        marks = self._environ_marks
        if not marks:
            return False
        try:
            # Keys joined by NUL, searched for NUL + prefix: one scan in C instead of a
            # startswith() per key in Python (the first key has no NUL before it).
            joined = "\0".join(environ)
        except TypeError:  # a key that is not a str (PEP 3333 says they all are)
            return any(isinstance(key, str) and key.startswith(self.environ_prefixes)
                       for key in environ)
        if len(marks) == 1:
            return marks[0] in joined or joined.startswith(self.environ_prefixes)
        return any(mark in joined for mark in marks) or joined.startswith(
            self.environ_prefixes)


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
