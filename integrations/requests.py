"""requests: a client span around ``Session.send``, trace headers injected, headers forwarded.

``Session.send`` is what every ``requests.get``/``Session.request`` call goes through. A
redirect is followed by a nested ``send`` while the first one's span is active, so each hop
gets its own span, a child of the first; the first span lasts until the last hop is done and
carries its own exchange's status (the 3xx).

Calls made while :func:`~opentracing_sls.integrations.suppression.suppress_instrumentation`
is active, from our own tracer/shim threads, or to an excluded URL are passed straight
through: no span, no header added.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Pattern, Tuple
from urllib.parse import urlsplit, urlunsplit

import opentracing
from opentracing import Format

from opentracing_sls import _accel
from opentracing_sls.constants import SAMPLED_FLAG
from opentracing_sls.propagation import CompositeCodec
from opentracing_sls.span_context import SpanContext
from opentracing_sls.tracer import Tracer

from . import diagnostics, forwarding, settings, suppression, tagging
from .patching import Instrumentor
from .suppression import is_suppressed
from .unsampled import active_child_unsampled

COMPONENT = "requests"

_ERRORS = "integrations.requests.errors"
_HOOK_ERRORS = "integrations.requests.hook_errors"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HTTP_HEADERS = Format.HTTP_HEADERS
# opentracing.global_tracer() returns this module attribute; reading it saves the call.
_opentracing = opentracing
_apply = forwarding.apply
_forwarded = forwarding.current

RequestHook = Callable[[opentracing.Span, Any], Any]
ResponseHook = Callable[[opentracing.Span, Any, Any], Any]

_cglue = _accel.load("integrations._cglue")
_csend = None if _cglue is None else _accel.load("integrations._csend")


class RequestsInstrumentor(Instrumentor):
    """Patches ``requests.Session.send``; use the module functions :func:`instrument` and
    :func:`uninstrument` rather than this class."""

    library = "requests"

    def __init__(self) -> None:
        super().__init__()
        self.tracer: Optional[opentracing.Tracer] = None
        self.excluded: Tuple[Pattern[str], ...] = ()
        self.request_hook: Optional[RequestHook] = None
        self.response_hook: Optional[ResponseHook] = None
        # The handler in C when built: it does what _send does for a configuration without
        # hooks and exclusions (about 20 k instructions less per call) and hands everything
        # else to _send.
        self._handler: Any = None if _csend is None else _csend.SendHandler(self._send)

    def configure(self, tracer: Optional[opentracing.Tracer] = None,
                  excluded_urls: Optional[List[Any]] = None,
                  request_hook: Optional[RequestHook] = None,
                  response_hook: Optional[ResponseHook] = None,
                  environ: Optional[Dict[str, str]] = None) -> None:
        excluded = settings.patterns("excluded_urls", excluded_urls,
                                     settings.REQUESTS_EXCLUDED_URLS, environ)
        request_hook = settings.hook("request_hook", request_hook)
        response_hook = settings.hook("response_hook", response_hook)
        if tracer is not None and not isinstance(tracer, opentracing.Tracer):
            raise ValueError("tracer: must be an opentracing.Tracer (got %r)" % (tracer,))
        self.tracer = tracer
        self.excluded = excluded
        self.request_hook = request_hook
        self.response_hook = response_hook
        self._state_changed()

    def patches(self) -> List[Tuple[str, str, Any]]:
        return [("requests.sessions", "Session.send",
                 self._send if self._handler is None else self._handler)]

    def _state_changed(self) -> None:
        handler = self._handler
        if handler is None:
            return
        structures = sys.modules.get("requests.structures")
        if (not self.active or structures is None or self.excluded
                or self.request_hook is not None or self.response_hook is not None):
            handler.disable()
            return
        handler.enable(**self._c_config(structures))

    def _c_config(self, structures: Any) -> Dict[str, Any]:
        """What the C handler works with (see ``integrations/_csend.c``)."""
        return dict(
            tracer=self.tracer, opentracing=opentracing,
            suppressed=suppression._suppressed, own_thread=suppression.own_thread,
            forwarded=forwarding.FORWARDED.get, request_source=forwarding.REQUEST_SOURCE,
            tracer_type=Tracer, noop_type=opentracing.Tracer,
            context_type=SpanContext, composite_type=CompositeCodec, sampled_flag=SAMPLED_FLAG,
            client_tags={tagging.SPAN_KIND: tagging.CLIENT, tagging.COMPONENT: COMPONENT},
            method_tag=tagging.HTTP_METHOD, status_tag=tagging.HTTP_STATUS_CODE,
            url_tags=_url_tags, url_cache=_url_tags_cache, http_headers=_HTTP_HEADERS,
            odict_type=OrderedDict,
            headers_type=structures.CaseInsensitiveDict, apply_store=_cglue.apply_store,
            trace_names=forwarding._TRACE_CONTEXT_NAMES,
            rewrite_stale=forwarding._rewrite_stale, apply=_apply, after=self._after,
            log_server_error=tagging.log_server_error, report=_report)

    def _send(self, call: Any, session: Any, request: Any, **kwargs: Any) -> Any:
        if not self.active or is_suppressed():
            return call(session, request, **kwargs)
        scope = self._before(request)
        if scope is None:
            return call(session, request, **kwargs)
        try:
            response = call(session, request, **kwargs)
        except BaseException as exc:
            self._after(scope, request, None, exc)
            raise
        self._after(scope, request, response, None)
        return response

    def _before(self, request: Any) -> Optional[opentracing.Scope]:
        try:
            if self.excluded:
                url = request.url
                for pattern in self.excluded:
                    if pattern.search(url):
                        return None
            tracer = self.tracer or _opentracing.tracer
            method = request.method or "GET"
            if active_child_unsampled(tracer):
                scope = tracer.start_active_span(method)
            else:
                span_tags = {tagging.SPAN_KIND: tagging.CLIENT, tagging.COMPONENT: COMPONENT,
                             tagging.HTTP_METHOD: method}
                span_tags.update(_url_tags(request.url))
                scope = tracer.start_active_span(method, tags=span_tags)
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "starting a requests client span")
            return None
        try:
            injected: Dict[str, str] = {}
            try:
                tracer.inject(scope.span.context, _HTTP_HEADERS, injected)
            except Exception:  # noqa: BLE001
                diagnostics.internal_error(_ERRORS, "injecting trace headers")
            _apply(request.headers, injected, _forwarded())
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "adding headers to a requests call")
        if self.request_hook is not None:
            try:
                self.request_hook(scope.span, request)
            except Exception:  # noqa: BLE001
                diagnostics.internal_error(_HOOK_ERRORS, "the requests request_hook")
        return scope

    def _after(self, scope: opentracing.Scope, request: Any, response: Any,
               exc: Optional[BaseException]) -> None:
        try:
            span = scope.span
            if exc is not None:
                tagging.log_exception(span, exc)
            if response is not None:
                # After redirects ``send`` returns the last hop's response; this span's own
                # exchange is the first one (each later hop has its own child span).
                history = response.history
                code = (history[0] if history else response).status_code
                span.set_tag(tagging.HTTP_STATUS_CODE, code)
                if isinstance(code, int) and code >= 500:
                    tagging.log_server_error(span, code)
            if self.response_hook is not None:
                try:
                    self.response_hook(span, request, response)
                except Exception:  # noqa: BLE001
                    diagnostics.internal_error(_HOOK_ERRORS, "the requests response_hook")
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "tagging a requests client span")
        finally:
            try:
                scope.close()
            except Exception:  # noqa: BLE001
                diagnostics.internal_error(_ERRORS, "finishing a requests client span")


def _report(what: str, exc: BaseException) -> None:
    """An error the C handler caught in our code: counted and logged, never raised."""
    diagnostics.internal_error(_ERRORS, what, exc_info=exc)  # type: ignore[arg-type]


# url -> its http.url and peer tags: a service calls a handful of URLs, or many with ids in
# them, so the cache starts over when full rather than keeping the first ones forever.
_url_tags_cache: Dict[str, Dict[str, Any]] = {}
_URL_CACHE_MAX = 1024


def _url_tags(url: str) -> Dict[str, Any]:
    """The tags :func:`_add_url_tags` adds for ``url``, cached (read-only: callers merge)."""
    tags = _url_tags_cache.get(url) if type(url) is str else None
    if tags is None:
        tags = {}
        _add_url_tags(tags, url)
        if type(url) is str:
            if len(_url_tags_cache) >= _URL_CACHE_MAX:
                _url_tags_cache.clear()
            _url_tags_cache[url] = tags
    return tags


# scheme://netloc -> the peer tags; services call a handful of hosts, so this stays small.
_peer_cache: Dict[Tuple[str, str], Dict[str, Any]] = {}
_PEER_CACHE_MAX = 1024


def _add_url_tags(span_tags: Dict[str, Any], url: str) -> None:
    """``http.url`` without user name and password, and the peer tags of its host."""
    parts = urlsplit(url)
    key = (parts.scheme, parts.netloc)
    peer = _peer_cache.get(key)
    if peer is None:
        peer = {}
        try:
            port = parts.port
        except ValueError:
            port = None
        tagging.add_peer(peer, parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme))
        if len(_peer_cache) < _PEER_CACHE_MAX:
            _peer_cache[key] = peer
    span_tags.update(peer)
    if "@" in parts.netloc:
        url = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[1], parts.path,
                          parts.query, parts.fragment))
    span_tags[tagging.HTTP_URL] = url


_instrumentor = RequestsInstrumentor()


def instrument(tracer: Optional[opentracing.Tracer] = None,
               excluded_urls: Optional[List[Any]] = None,
               request_hook: Optional[RequestHook] = None,
               response_hook: Optional[ResponseHook] = None) -> bool:
    """Traces every ``requests`` call in the process. Idempotent; a second call updates the
    options.

    - ``tracer``: default ``opentracing.global_tracer()``, looked up at each call.
    - ``excluded_urls``: regular expressions (``re.search`` on the full URL); a matching call
      gets no span and no added headers. Default ``OPENTRACING_SLS_REQUESTS_EXCLUDED_URLS``.
    - ``request_hook(span, prepared_request)`` after the headers are set;
      ``response_hook(span, prepared_request, response_or_None)`` before the span finishes.
      Their exceptions are counted and logged, never raised.

    Returns False (with a debug log) when requests is not installed.
    """
    return _instrumentor.instrument(tracer=tracer, excluded_urls=excluded_urls,
                                    request_hook=request_hook, response_hook=response_hook)


def uninstrument() -> bool:
    """Removes the requests instrumentation (only our own proxy). Idempotent."""
    return _instrumentor.uninstrument()


def is_instrumented() -> bool:
    return _instrumentor.is_instrumented()
