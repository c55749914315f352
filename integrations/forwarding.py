"""Istio header forwarding: the incoming request's tracing headers go out with every call.

In a mesh a trace only stitches together if each service copies the tracing headers of the
request it is handling onto the requests it makes (b3-istio-bookinfo.md section 5). The
Flask integration captures the listed headers when a request arrives (:class:`ForwardList`)
and keeps them in the request's state; :func:`current` finds them there through Flask's
request context (or in :data:`FORWARDED`, which :func:`carry` sets for other frameworks and
threads), and the requests integration adds them to every outgoing call (:func:`apply`).

Trace-context headers (B3 and W3C) are special: the tracer writes its own, with the client
span's ids, so the sidecar's span and the application's agree. A copy of such a header the
tracer did not write (say an incoming ``b3`` when only the multi-headers are configured)
would name a stale parent, and extractors prefer ``b3``; so it is rewritten from the ids the
tracer injected, or dropped when it cannot be.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import OrderedDict
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from opentracing_sls import _accel

#: The built-in list, lower case: BookInfo's ``getForwardHeaders`` plus the Istio FAQ list.
ISTIO_HEADERS: Tuple[str, ...] = (
    "x-request-id",
    "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3",
    "x-ot-span-context",
    "traceparent", "tracestate",
    "grpc-trace-bin",
    "x-cloud-trace-context",
    "sw8", "sw8-correlation", "sw8-x",
    "x-datadog-trace-id", "x-datadog-parent-id", "x-datadog-sampling-priority",
    "x-datadog-origin", "x-datadog-tags",
    "end-user",
)

# Headers whose values the tracer owns when it injects B3 or W3C.
_B3_MULTI = ("x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags")
TRACE_CONTEXT_HEADERS = frozenset(_B3_MULTI + ("b3", "traceparent"))
_TRACE_CONTEXT_NAMES = _B3_MULTI + ("b3", "traceparent")

_cglue = _accel.load("integrations._cglue")
_capture = None if _cglue is None else _cglue.capture
_apply_store = None if _cglue is None else _cglue.apply_store

#: Headers made current explicitly (name -> value; empty: none), or None: then the request
#: being handled has them (:data:`REQUEST_SOURCE`).
FORWARDED: contextvars.ContextVar[Optional[Dict[str, str]]] = contextvars.ContextVar(
    "opentracing_sls_forwarded_headers", default=None)

#: ``[request context variable, environ key]``: where the Flask integration keeps the state
#: of the request being handled, whose ``forwarded`` attribute has its captured headers
#: (``[None, None]`` until Flask is patched). Reading them there instead of setting
#: FORWARDED for every request saves a context variable's set and reset (2.4 k instructions).
REQUEST_SOURCE: List[Any] = [None, None]


def _environ_key(name: str) -> str:
    return "HTTP_" + name.upper().replace("-", "_")


class ForwardList:
    """Which incoming headers to forward; reads them from a WSGI environ."""

    __slots__ = ("names", "_keys", "_key_names", "_key_pairs", "_prefixes")

    def __init__(self, extra: Iterable[str] = ()) -> None:
        names: List[str] = []
        prefixes: List[Tuple[str, str]] = []
        for name in tuple(ISTIO_HEADERS) + tuple(extra):
            name = name.strip().lower()
            if name.endswith("*"):
                prefix = name[:-1]
                if prefix and (prefix, _environ_key(prefix)) not in prefixes:
                    prefixes.append((prefix, _environ_key(prefix)))
            elif name and name not in names:
                names.append(name)
        self.names: Tuple[str, ...] = tuple(names + [p + "*" for p, _ in prefixes])
        self._keys = tuple((name, _environ_key(name)) for name in names)
        self._key_names = {key: name for name, key in self._keys}
        self._key_pairs = tuple(item for name, key in self._keys for item in (key, name))
        self._prefixes = tuple(prefixes)

    def has_prefixes(self) -> bool:
        """Whether ``name*`` rules are configured (only the Python capture reads those)."""
        return bool(self._prefixes)

    def key_pairs(self) -> Tuple[str, ...]:
        """Environ key, header name, key, name ... of the listed (non-prefix) headers: what
        the C capture reads."""
        return self._key_pairs

    def capture(self, environ: Mapping[str, Any]) -> Optional[Dict[str, str]]:
        """The listed headers present in ``environ``, by lower-case name; None if none are."""
        if _capture is not None and not self._prefixes and type(environ) is dict:
            return _capture(self._key_pairs, environ)  # type: ignore[no-any-return]
        found: Optional[Dict[str, str]] = None
        # A set intersection in C instead of a lookup per listed header.
        present = self._key_names.keys() & environ.keys()
        if present:
            names = self._key_names
            found = {}
            for key in present:  # a loop, not a comprehension: no extra frame per request
                found[names[key]] = environ[key]
        if self._prefixes:
            for key, value in environ.items():
                if not isinstance(key, str) or not key.startswith("HTTP_"):
                    continue
                for _prefix, environ_prefix in self._prefixes:
                    if key.startswith(environ_prefix):
                        if found is None:
                            found = {}
                        found.setdefault(key[5:].replace("_", "-").lower(), value)
                        break
        return found


def current() -> Optional[Dict[str, str]]:
    """The headers to forward from here: :func:`carry`'s, else the Flask request's, if any."""
    headers = FORWARDED.get()
    if headers is None:
        variable, key = REQUEST_SOURCE
        if variable is not None:
            context = variable.get(None)
            if context is not None:
                try:
                    state = context.request.environ.get(key)
                except Exception:  # noqa: BLE001 - not Flask's request context after all
                    return None
                headers = getattr(state, "forwarded", None)
    return headers


@contextlib.contextmanager
def carry(headers: Optional[Mapping[str, str]]) -> Iterator[None]:
    """Makes ``headers`` (name -> value) the ones forwarded by outgoing ``requests`` calls in
    this block: for frameworks other than Flask, or work handed to another thread."""
    # Empty, not None: None would let the request's own headers through.
    token = FORWARDED.set({k.lower(): v for k, v in headers.items()} if headers else {})
    try:
        yield
    finally:
        FORWARDED.reset(token)


def apply(outgoing: Any, injected: Mapping[str, str],
          forwarded: Optional[Mapping[str, str]]) -> None:
    """Sets the forwarded and the injected headers on ``outgoing`` (a case-insensitive
    mapping such as requests' ``CaseInsensitiveDict``).

    A header the application set itself wins over a forwarded copy; the tracer's injected
    headers win over both. Then trace-context headers the tracer did not write are made
    to agree with the ones it did.
    """
    store = getattr(outgoing, "_store", None)
    if type(store) is not OrderedDict or outgoing.__class__.__name__ != "CaseInsensitiveDict":
        _apply_generic(outgoing, injected, forwarded)
        return
    # requests' CaseInsensitiveDict keeps ``lower-case name -> (name, value)`` in ``_store``;
    # writing there directly saves a Python-level __setitem__ per header and the KeyError
    # that its membership test raises for every absent name (several us per request).
    if _apply_store is not None and type(injected) is dict and (
            forwarded is None or type(forwarded) is dict):
        if _apply_store(store, injected, forwarded, _TRACE_CONTEXT_NAMES):
            _rewrite_stale(store, injected)
        return
    if forwarded:
        for name, value in forwarded.items():
            if name not in injected and name not in store:
                store[name] = (name, value)
    if not injected:
        return
    # A stale trace-context header is the application's or a forwarded one, so it is there
    # before the injected ones are: one check now saves looking for each one afterwards
    # (the common request has none).
    maybe_stale = not TRACE_CONTEXT_HEADERS.isdisjoint(store)
    for name, value in injected.items():
        store[name] = (name, value)
    if not maybe_stale or TRACE_CONTEXT_HEADERS.isdisjoint(injected):
        return  # nothing stale, or the tracer speaks neither B3 nor W3C: copies stay verbatim
    _rewrite_stale(store, injected)


def _rewrite_stale(store: Any, injected: Mapping[str, str]) -> None:
    """Makes the trace-context headers in ``store`` that the tracer did not write agree
    with the ones it did (or removes them)."""
    derived = None
    for name in _TRACE_CONTEXT_NAMES:
        if name in store and name not in injected:
            if derived is None:
                derived = _derive(injected)
            value = derived.get(name)
            if value is None:
                del store[name]
            else:
                store[name] = (name, value)


def _apply_generic(outgoing: Any, injected: Mapping[str, str],
                   forwarded: Optional[Mapping[str, str]]) -> None:
    # lower-case name -> the key as the mapping has it (it may be case-sensitive).
    present: Dict[str, Any] = {}
    for key in outgoing:
        present.setdefault(key.lower(), key)
    if forwarded:
        for name, value in forwarded.items():
            if name not in injected and name not in present:
                outgoing[name] = value
                present[name] = name
    if not injected:
        return
    for name, value in injected.items():
        outgoing[name] = value
    stale = [(name, key) for name, key in present.items()
             if name in TRACE_CONTEXT_HEADERS and name not in injected]
    if not stale or TRACE_CONTEXT_HEADERS.isdisjoint(injected):
        # Nothing stale, or the tracer speaks neither B3 nor W3C: copies stay verbatim.
        return
    derived = _derive(injected)
    for name, key in stale:
        value = derived.get(name)
        del outgoing[key]
        if value is not None:
            outgoing[name] = value


def _derive(injected: Mapping[str, str]) -> Dict[str, str]:
    """Every B3/W3C header for the ids the tracer injected in one of those forms."""
    ids = _ids(injected)
    if ids is None:
        return {}
    trace_id, span_id, parent_id, sampled, debug = ids
    out = {"x-b3-traceid": trace_id, "x-b3-spanid": span_id,
           "traceparent": "00-%s-%s-%s" % (trace_id.rjust(32, "0"), span_id,
                                           "01" if sampled or debug else "00")}
    if parent_id:
        out["x-b3-parentspanid"] = parent_id
    if debug:
        out["x-b3-flags"] = "1"
        state: Optional[str] = "d"
    elif sampled is None:
        state = None
    else:
        out["x-b3-sampled"] = "1" if sampled else "0"
        state = out["x-b3-sampled"]
    single = "%s-%s" % (trace_id, span_id)
    if state is not None:
        single += "-" + state
        if parent_id:
            single += "-" + parent_id
    out["b3"] = single
    return out


def _ids(injected: Mapping[str, str]) -> Optional[Tuple[str, str, str, Optional[bool], bool]]:
    """(trace id, span id, parent id, sampled or None for "defer", debug) in lower hex."""
    trace_id = injected.get("x-b3-traceid")
    span_id = injected.get("x-b3-spanid")
    if trace_id and span_id:
        flag = injected.get("x-b3-sampled")
        sampled = None if flag is None else flag in ("1", "true")
        return (trace_id.lower(), span_id.lower(), (injected.get("x-b3-parentspanid") or "")
                .lower(), sampled, injected.get("x-b3-flags") == "1")
    single = injected.get("b3")
    if single:
        parts = single.lower().split("-")
        if len(parts) >= 2:
            state = parts[2] if len(parts) > 2 else None
            return (parts[0], parts[1], parts[3] if len(parts) > 3 else "",
                    None if state in (None, "d") else state == "1", state == "d")
    parent = injected.get("traceparent")
    if parent:
        parts = parent.lower().split("-")
        if len(parts) >= 4:
            try:
                sampled = int(parts[3][:2], 16) & 1 == 1
            except ValueError:
                return None
            return parts[1], parts[2], "", sampled, False
    return None
