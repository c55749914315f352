"""Flask: one server span per request, for apps created before or after instrumenting.

Two methods are wrapped on the ``Flask`` class (never the class swapped):

- ``wsgi_app`` owns the request's lifetime: it notes the start time, captures the headers
  to forward, records the status given to ``start_response`` and finishes the span when the
  response is done; a streamed body is wrapped so the span stays active while it is produced
  and finishes when the server closes it.
- ``full_dispatch_request`` starts the span, inside the request context, once Flask has
  matched the URL: so the operation name the sampler sees is already the route template
  (``/api/v1/products/<id>``), which per-operation (remote) sampling needs. It also sees the
  application's unhandled exception before Flask turns it into a 500.

The request's state lives in ``environ`` under :data:`STATE_KEY` (no private Flask API).
When a middleware holds an unpatched bound ``wsgi_app`` (``app.wsgi_app = M(app.wsgi_app)``
run before instrumenting), ``full_dispatch_request`` handles the request on its own; only
the time spent streaming a body is then not covered.
"""

from __future__ import annotations

import contextvars
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Pattern, Tuple

import opentracing
from opentracing import (
    Format,
    InvalidCarrierException,
    SpanContextCorruptedException,
    UnsupportedFormatException,
)

from opentracing_sls import _accel
from opentracing_sls.constants import SAMPLED_FLAG
from opentracing_sls.propagation import CompositeCodec, composite
from opentracing_sls.span_context import SpanContext
from opentracing_sls.tracer import Tracer

from . import diagnostics, forwarding, settings, suppression, tagging
from .patching import Instrumentor
from .suppression import suppress_instrumentation, suppressed_in_context
from .unsampled import child_unsampled, environ_carrier
from .wsgi import is_file_wrapper, request_url

#: The environ key holding the request's tracing state.
STATE_KEY = "opentracing_sls.flask"
COMPONENT = "flask"

_ERRORS = "integrations.flask.errors"
_HOOK_ERRORS = "integrations.flask.hook_errors"
_QUIET_EXTRACT_ERRORS = (SpanContextCorruptedException, InvalidCarrierException,
                         UnsupportedFormatException)
_EXCLUDED = object()  # environ marker: this request is not traced
_UNKNOWN = object()
# Status line -> code: an app answers with a handful of distinct lines ("200 OK").
_STATUS_CODES: Dict[str, Optional[int]] = {}
_now = time.time
_HTTP_HEADERS = Format.HTTP_HEADERS
# opentracing.global_tracer() returns this module attribute; reading it saves the call.
_opentracing = opentracing
_get_forwarded = forwarding.FORWARDED.get
_set_forwarded = forwarding.FORWARDED.set
_reset_forwarded = forwarding.FORWARDED.reset

RequestHook = Callable[[opentracing.Span, Dict[str, Any]], Any]
ResponseHook = Callable[[opentracing.Span, Optional[int], List[Tuple[str, str]]], Any]


class _RequestState:
    """One request's tracing state; also the ``start_response`` handed to the application
    (it notes the status and headers), which saves making a closure per request."""

    __slots__ = ("tracer", "start", "span", "scope", "status", "headers", "streamed",
                 "error_logged", "forwarded", "finished", "start_response")

    def __init__(self, tracer: opentracing.Tracer, start: float,
                 forwarded: Optional[Dict[str, str]],
                 start_response: Optional[Callable[..., Any]]) -> None:
        self.tracer = tracer
        self.start = start
        self.span: Optional[opentracing.Span] = None
        self.scope: Optional[opentracing.Scope] = None
        self.status: Optional[str] = None
        self.headers: List[Tuple[str, str]] = []
        self.streamed = False
        self.error_logged = False
        self.forwarded = forwarded
        self.finished = False
        self.start_response = start_response

    def __call__(self, status: str, headers: List[Tuple[str, str]], *exc_info: Any) -> Any:
        self.status = status
        self.headers = headers
        return self.start_response(status, headers, *exc_info)  # type: ignore[misc]



def _status_code(status: Optional[str]) -> Optional[int]:
    """The code of a status line ("200 OK" -> 200), None when absent or unreadable."""
    if not status:
        return None
    code = _STATUS_CODES.get(status, _UNKNOWN)
    if code is _UNKNOWN:
        try:
            code = int(status.split(None, 1)[0])
        except ValueError:
            code = None
        if len(_STATUS_CODES) < 512 and type(status) is str:
            _STATUS_CODES[status] = code
    return code  # type: ignore[return-value]


# The C twin (a request per object) when built: no Python frame for its construction and
# for each start_response call.
_cglue = _accel.load("integrations._cglue")
_make_state = _RequestState if _cglue is None else _cglue.new_state
# The handlers in C (they need _cglue's request state): what _wsgi_app and
# _full_dispatch_request do for a matched route without hooks, exclusions or prefix
# forwarding rules, about 25 k instructions less per request; the rest goes to the methods.
_cflask = None if _cglue is None else _accel.load("integrations._cflask")


def _report(what: str, exc: BaseException) -> None:
    """An error the C handlers caught in our code: counted and logged, never raised."""
    diagnostics.internal_error(_ERRORS, what, exc_info=exc)


class FlaskInstrumentor(Instrumentor):
    """Patches ``flask.Flask``; use the module functions :func:`instrument` and
    :func:`uninstrument` rather than this class."""

    library = "flask"

    def __init__(self) -> None:
        super().__init__()
        self.tracer: Optional[opentracing.Tracer] = None
        self.excluded: Tuple[Pattern[str], ...] = ()
        self.request_hook: Optional[RequestHook] = None
        self.response_hook: Optional[ResponseHook] = None
        self.forward_list: Optional[forwarding.ForwardList] = forwarding.ForwardList()
        self._request: Any = None
        self._request_context: Optional[contextvars.ContextVar[Any]] = None
        self._is_streamed: Any = None
        self._handlers: Any = None if _cflask is None else (
            _cflask.FlaskHandler(0, self._wsgi_app),
            _cflask.FlaskHandler(1, self._full_dispatch_request))

    def configure(self, tracer: Optional[opentracing.Tracer] = None,
                  excluded_paths: Optional[List[Any]] = None,
                  request_hook: Optional[RequestHook] = None,
                  response_hook: Optional[ResponseHook] = None,
                  forward_headers: Optional[List[str]] = None,
                  forwarding_enabled: Optional[bool] = None,
                  environ: Optional[Dict[str, str]] = None) -> None:
        excluded = settings.patterns("excluded_paths", excluded_paths,
                                     settings.FLASK_EXCLUDED_PATHS, environ)
        request_hook = settings.hook("request_hook", request_hook)
        response_hook = settings.hook("response_hook", response_hook)
        extra = settings.names("forward_headers", forward_headers, settings.FORWARD_HEADERS,
                               environ)
        enabled = settings.boolean("forwarding_enabled", forwarding_enabled,
                                   settings.FORWARDING, environ)
        if tracer is not None and not isinstance(tracer, opentracing.Tracer):
            raise ValueError("tracer: must be an opentracing.Tracer (got %r)" % (tracer,))
        self.tracer = tracer
        self.excluded = excluded
        self.request_hook = request_hook
        self.response_hook = response_hook
        self.forward_list = forwarding.ForwardList(extra) if enabled else None
        self._state_changed()

    def patches(self) -> List[Tuple[str, str, Any]]:
        flask = sys.modules["flask"]
        self._request = flask.request
        # Flask (2.2 and later) keeps the request context in this variable, behind the
        # ``request`` proxy: reading it directly costs 1.7 k instructions less per request.
        # Anything else there (another Flask) leaves the public proxy in use.
        context = getattr(getattr(flask, "globals", None), "_cv_request", None)
        self._request_context = context if type(context) is contextvars.ContextVar else None
        if self._request_context is not None:
            # Outgoing calls find the request's forwarded headers through its context from now
            # on (also after uninstrument: requests then simply have no state of ours).
            forwarding.REQUEST_SOURCE[:] = [self._request_context, STATE_KEY]
        self._is_streamed = getattr(getattr(flask, "Response", None), "is_streamed", None)
        wsgi_app, dispatch = self._handlers or (self._wsgi_app, self._full_dispatch_request)
        return [("flask", "Flask.wsgi_app", wsgi_app),
                ("flask", "Flask.full_dispatch_request", dispatch)]

    def _state_changed(self) -> None:
        if self._handlers is None:
            return
        forward_list = self.forward_list
        if (not self.active or self.excluded or self.request_hook is not None
                or self.response_hook is not None or self._request_context is None
                or (forward_list is not None and forward_list.has_prefixes())):
            for handler in self._handlers:
                handler.disable()
            return
        config = self._c_config(forward_list)
        for handler in self._handlers:
            handler.enable(**config)

    def _c_config(self, forward_list: Optional[forwarding.ForwardList]) -> Dict[str, Any]:
        """What the C handlers work with (see ``integrations/_cflask.c``)."""
        return dict(
            tracer=self.tracer, opentracing=opentracing,
            suppressed=suppression._suppressed, forwarded_var=forwarding.FORWARDED,
            key_pairs=None if forward_list is None else forward_list.key_pairs(),
            capture=_cglue.capture, new_state=_cglue.new_state,
            state_type=_cglue.RequestState, state_key=STATE_KEY, excluded=_EXCLUDED,
            now=_now, request_context=self._request_context, tracer_type=Tracer,
            noop_type=opentracing.Tracer, context_type=SpanContext,
            composite_type=CompositeCodec, http_headers=_HTTP_HEADERS,
            quiet_errors=_QUIET_EXTRACT_ERRORS, server_tags=_server_tags,
            is_streamed=self._is_streamed, status_codes=_STATUS_CODES,
            status_code=_status_code, status_tag=tagging.HTTP_STATUS_CODE,
            not_handled=composite._NOT_HANDLED, log_server_error=tagging.log_server_error,
            report=_report, owner=self, sampled_flag=SAMPLED_FLAG,
            server_tag_base={tagging.SPAN_KIND: tagging.SERVER,
                             tagging.COMPONENT: COMPONENT},
            server_tag_names=(tagging.HTTP_METHOD, tagging.HTTP_URL,
                              tagging.PEER_HOSTNAME, tagging.PEER_PORT),
            ip_kinds=tagging._ip_kind_cache)

    # -- handlers (patching.Handler): the original is called exactly once, outside any try
    # -- that could swallow its exceptions; everything of ours around it is guarded.

    def _wsgi_app(self, call: Any, app: Any, environ: Dict[str, Any],
                  start_response: Callable[..., Any]) -> Any:
        if not self.active:
            return call(app, environ, start_response)
        try:
            # An outer call (a middleware calling a second patched app) already handles it.
            state = None if STATE_KEY in environ else self._new_state(environ, start_response)
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "Flask request set-up")
            state = None
        if state is None:
            return call(app, environ, start_response)
        if state is _EXCLUDED:
            with suppress_instrumentation():
                return call(app, environ, start_response)
        # Outgoing calls find the forwarded headers in the state through Flask's request
        # context (forwarding.current); the variable is set only where they could not: an
        # older Flask, or headers carry()'d around this request that would hide them.
        forwarded = state.forwarded
        token = _set_forwarded(forwarded) if _get_forwarded() is not None or (
            forwarded is not None and self._request_context is None) else None
        try:
            result = call(app, environ, state)
        except BaseException as exc:
            self._end_failed(state, exc, environ)
            raise
        finally:
            if token is not None:
                _reset_forwarded(token)
        return self._end(state, result, environ)

    def _full_dispatch_request(self, call: Any, app: Any) -> Any:
        if not self.active:
            return call(app)
        try:
            context = self._request_context
            context = None if context is None else context.get(None)
            request = self._request._get_current_object() if context is None else \
                context.request
            environ = request.environ
            state = environ.get(STATE_KEY)
            standalone = state is None
            if standalone:
                state = self._new_state(environ, None)
            if state is _EXCLUDED or state.span is not None:
                state = None
            else:
                self._start_span(state, environ, request)
                if state.span is None:
                    state = None
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "Flask span start")
            state = None
        if state is None:
            return call(app)
        if not standalone:
            try:
                response = call(app)
            except BaseException as exc:
                self._record_exception(state, exc)
                raise
            try:
                # werkzeug's is_streamed, without its property call, for a body that is a
                # list (what a view's return value becomes).
                state.streamed = (type(response.response) is not list or type(
                    response).is_streamed is not self._is_streamed) and response.is_streamed
            except Exception:  # noqa: BLE001 - not a werkzeug Response: it may stream
                state.streamed = True
            return response
        token = _set_forwarded(state.forwarded)
        try:
            response = call(app)
        except BaseException as exc:
            self._end_failed(state, exc, None)
            raise
        finally:
            _reset_forwarded(token)
        self._end_standalone(state, response)
        return response

    # -- request lifecycle (all guarded) ---------------------------------------------------

    def _new_state(self, environ: Dict[str, Any],
                   start_response: Optional[Callable[..., Any]]) -> Any:
        """The state of a request just arriving (stored in ``environ``), or ``_EXCLUDED``."""
        if self.excluded:
            path = environ.get("PATH_INFO", "")
            for pattern in self.excluded:
                if pattern.search(path):
                    environ[STATE_KEY] = _EXCLUDED
                    return _EXCLUDED
        if suppressed_in_context():
            environ[STATE_KEY] = _EXCLUDED
            return _EXCLUDED
        forward_list = self.forward_list
        state = _make_state(self.tracer or _opentracing.tracer, _now(),
                            None if forward_list is None else forward_list.capture(environ),
                            start_response)
        environ[STATE_KEY] = state
        return state

    def _start_span(self, state: _RequestState, environ: Dict[str, Any],
                    request: Any = None) -> None:
        tracer = state.tracer
        method = environ.get("REQUEST_METHOD", "GET")
        if request is None:
            name = "%s %s" % (method, _status_code(state.status) or 500)
        else:
            rule = request.url_rule
            if rule is not None:
                name = rule.rule
            else:
                code = getattr(request.routing_exception, "code", None)
                name = "%s %s" % (method, code if isinstance(code, int) else 404)
        try:
            parent = tracer.extract(_HTTP_HEADERS, environ_carrier(tracer, environ))
        except _QUIET_EXTRACT_ERRORS:
            parent = None
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "extracting the incoming span context")
            parent = None
        span_tags = None if child_unsampled(tracer, parent) else _server_tags(environ, method)
        # start_active_span: one call less than start_span then scope_manager.activate.
        if parent is not None:
            # A span with a parent ignores the calling thread's active span anyway (OpenTracing
            # API); not saying so saves the tracer some argument handling.
            scope = tracer.start_active_span(name, child_of=parent, tags=span_tags,
                                             start_time=state.start, finish_on_close=False)
        else:
            scope = tracer.start_active_span(name, tags=span_tags, start_time=state.start,
                                             ignore_active_span=True, finish_on_close=False)
        state.scope = scope
        state.span = span = scope.span
        if self.request_hook is not None:
            try:
                self.request_hook(span, environ)
            except Exception:  # noqa: BLE001
                diagnostics.internal_error(_HOOK_ERRORS, "the Flask request_hook")

    def _record_exception(self, state: _RequestState, exc: BaseException) -> None:
        try:
            if not state.error_logged and state.span is not None:
                state.error_logged = True
                tagging.log_exception(state.span, exc)
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "tagging a Flask exception")

    def _end(self, state: _RequestState, result: Any, environ: Dict[str, Any]) -> Any:
        try:
            scope, state.scope = state.scope, None
            if scope is not None:
                scope.close()
            if state.span is None:
                self._start_span(state, environ)
                self._deactivate(state)
            if state.streamed and not is_file_wrapper(result, environ):
                return _TracedBody(result, state, self)
            self._finish(state)
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "Flask request end")
            self._finish_quietly(state)
        return result

    def _end_failed(self, state: _RequestState, exc: BaseException,
                    environ: Optional[Dict[str, Any]]) -> None:
        try:
            self._deactivate(state)
            if state.span is None and environ is not None:
                self._start_span(state, environ)
                self._deactivate(state)
            self._record_exception(state, exc)
            self._finish(state)
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "Flask request end")
            self._finish_quietly(state)

    def _end_standalone(self, state: _RequestState, response: Any) -> None:
        try:
            self._deactivate(state)
            state.status = str(response.status_code)
            state.headers = list(response.headers.items())
            self._finish(state)
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "Flask request end")
            self._finish_quietly(state)

    @staticmethod
    def _deactivate(state: _RequestState) -> None:
        scope, state.scope = state.scope, None
        if scope is not None:
            scope.close()

    def _finish(self, state: _RequestState) -> None:
        if state.finished or state.span is None:
            return
        state.finished = True
        span = state.span
        code = _STATUS_CODES.get(state.status, _UNKNOWN)  # type: ignore[arg-type]
        if code is _UNKNOWN:
            code = _status_code(state.status)
        try:
            if code is not None:
                span.set_tag(tagging.HTTP_STATUS_CODE, code)
                if code >= 500 and not state.error_logged:
                    tagging.log_server_error(span, code)
            if self.response_hook is not None:
                try:
                    self.response_hook(span, code, state.headers)
                except Exception:  # noqa: BLE001
                    diagnostics.internal_error(_HOOK_ERRORS, "the Flask response_hook")
        finally:
            span.finish()

    @staticmethod
    def _finish_quietly(state: _RequestState) -> None:
        if state.finished or state.span is None:
            return
        state.finished = True
        try:
            state.span.finish()
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "finishing a Flask span")

    # -- streamed bodies -------------------------------------------------------------------

    def _reenter(self, state: _RequestState) -> Tuple[Any, Any]:
        try:
            scope = state.tracer.scope_manager.activate(state.span, False)
            return scope, _set_forwarded(state.forwarded)
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "re-activating a streaming Flask span")
            return None, None

    @staticmethod
    def _leave(scope: Any, token: Any) -> None:
        try:
            if token is not None:
                _reset_forwarded(token)
            if scope is not None:
                scope.close()
        except Exception:  # noqa: BLE001
            diagnostics.internal_error(_ERRORS, "leaving a streaming Flask span")


def _server_tags(environ: Dict[str, Any], method: str) -> Dict[str, Any]:
    span_tags = {tagging.SPAN_KIND: tagging.SERVER, tagging.COMPONENT: COMPONENT,
                 tagging.HTTP_METHOD: method, tagging.HTTP_URL: request_url(environ)}
    address = environ.get("REMOTE_ADDR")
    if address:
        span_tags[tagging.peer_address_tag(address) or tagging.PEER_HOSTNAME] = address
        port = environ.get("REMOTE_PORT")
        if port:
            try:
                span_tags[tagging.PEER_PORT] = int(port)
            except ValueError:
                pass
    return span_tags


class _TracedBody:
    """A streamed response body: the span is active while each chunk is produced and
    finishes when the server closes the body (PEP 3333 requires servers to call close)."""

    __slots__ = ("_inner", "_iterator", "_state", "_owner")

    def __init__(self, inner: Any, state: _RequestState, owner: FlaskInstrumentor) -> None:
        self._inner = inner
        self._iterator: Optional[Iterator[bytes]] = None
        self._state = state
        self._owner = owner

    def __iter__(self) -> _TracedBody:
        return self

    def __next__(self) -> bytes:
        scope, token = self._owner._reenter(self._state)
        try:
            if self._iterator is None:
                self._iterator = iter(self._inner)
            return next(self._iterator)
        except StopIteration:
            raise
        except BaseException as exc:
            self._owner._record_exception(self._state, exc)
            raise
        finally:
            self._owner._leave(scope, token)

    def close(self) -> None:
        owner, state = self._owner, self._state
        scope, token = owner._reenter(state)
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            owner._record_exception(state, exc)
            raise
        finally:
            owner._leave(scope, token)
            try:
                owner._finish(state)
            except Exception:  # noqa: BLE001
                diagnostics.internal_error(_ERRORS, "Flask request end")
                owner._finish_quietly(state)


_instrumentor = FlaskInstrumentor()


def instrument(tracer: Optional[opentracing.Tracer] = None,
               excluded_paths: Optional[List[Any]] = None,
               request_hook: Optional[RequestHook] = None,
               response_hook: Optional[ResponseHook] = None,
               forward_headers: Optional[List[str]] = None,
               forwarding_enabled: Optional[bool] = None) -> bool:
    """Traces every Flask app in the process. Idempotent; a second call updates the options.

    - ``tracer``: the OpenTracing tracer; default ``opentracing.global_tracer()``, looked up
      at each request.
    - ``excluded_paths``: regular expressions (``re.search`` on the path); a matching request
      gets no span and its outgoing calls none either. Default
      ``OPENTRACING_SLS_FLASK_EXCLUDED_PATHS``.
    - ``request_hook(span, environ)``: called once the span has started, in the request
      context; ``response_hook(span, status_code, response_headers)`` before it finishes.
      Their exceptions are counted and logged, never raised.
    - ``forward_headers``: extra header names (``name*`` for a prefix) to forward besides the
      Istio list; ``forwarding_enabled=False`` forwards nothing.

    Returns False (with a debug log) when Flask is not installed.
    """
    return _instrumentor.instrument(tracer=tracer, excluded_paths=excluded_paths,
                                    request_hook=request_hook, response_hook=response_hook,
                                    forward_headers=forward_headers,
                                    forwarding_enabled=forwarding_enabled)


def uninstrument() -> bool:
    """Removes the Flask instrumentation (only our own proxies). Idempotent."""
    return _instrumentor.uninstrument()


def is_instrumented() -> bool:
    return _instrumentor.is_instrumented()
