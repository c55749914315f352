"""The Jaeger-compatible query HTTP API (``shared/reference/query-api-and-zipkin.md`` §1-3).

Routes under ``/api``: services, operations (both forms), trace search and multi-get, one
trace, dependencies, and ``/api/stats`` (ours: per-operation figures for the UI's statistics
view). Every answer is the ``{data,total,limit,offset,errors}`` envelope; bad parameters are
400, an unknown trace 404, a storage failure 500, each with ``errors[0].msg`` saying why.

Reading and JSON encoding run in a thread pool: a search over SLS takes seconds and a 2000-span
trace takes milliseconds to encode, and neither may stall the event loop that serves the UI
(or, in the shim process, the span receivers).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence

from aiohttp import web

from .jaeger_json import (
    dependencies_to_json,
    envelope,
    error_item,
    parse_trace_id,
    trace_to_json,
)
from .model import Span
from .query_params import (
    ParamError,
    parse_dependencies,
    parse_span_kind,
    parse_stats,
    parse_trace_search,
)
from .query_reader import Reader
from .store_stats import OperationStats

logger = logging.getLogger(__name__)

#: Threads reading for the API: SQLite reads run in parallel (WAL), SLS calls mostly wait.
READ_THREADS = 8
_JSON_TYPE = "application/json"


class QueryApi:
    """The ``/api`` handlers over one ``Reader``; ``clock`` gives epoch seconds (tests pin it)."""

    def __init__(self, reader: Reader, executor: ThreadPoolExecutor,
                 clock: Callable[[], float] = time.time) -> None:
        self.reader = reader
        self.executor = executor
        self.clock = clock

    def routes(self) -> List[web.RouteDef]:
        return [
            web.get("/api/services", self.services),
            web.get("/api/services/{service}/operations", self.service_operations),
            web.get("/api/operations", self.operations),
            web.get("/api/traces", self.find_traces),
            web.get("/api/traces/{trace_id}", self.get_trace),
            web.get("/api/dependencies", self.dependencies),
            web.get("/api/stats", self.stats),
            web.route("*", "/api/{tail:.*}", self.not_found),
        ]

    # -- handlers -----------------------------------------------------------------------------

    async def services(self, request: web.Request) -> web.Response:
        names = await self._read(request, self.reader.services)
        return _answer(request, envelope(names, total=len(names)))

    async def service_operations(self, request: web.Request) -> web.Response:
        service = request.match_info["service"]
        pairs = await self._read(request, self.reader.operations, service, None)
        names = sorted({name for name, _ in pairs})
        return _answer(request, envelope(names, total=len(names)))

    async def operations(self, request: web.Request) -> web.Response:
        service = request.query.get("service")
        if not service:
            raise _bad_request("parameter 'service' is required")
        kind = _params(parse_span_kind, request.query)
        pairs = await self._read(request, self.reader.operations, service, kind)
        data = [{"name": name, "spanKind": span_kind} for name, span_kind in pairs]
        return _answer(request, envelope(data, total=len(data)))

    async def find_traces(self, request: web.Request) -> web.Response:
        search = _params(parse_trace_search, request.query, self._now_us())
        if search.query is not None:
            query = search.query

            def run() -> str:
                return _encode(request, _traces_envelope(self.reader.find_traces(query)))
        else:
            ids = search.trace_ids

            def run() -> str:
                found = self.reader.get_traces(ids)
                missing = [error_item("trace not found", trace_id=trace_id)
                           for trace_id in ids if not found.get(trace_id)]
                return _encode(request, _traces_envelope(
                    [found[trace_id] for trace_id in ids if found.get(trace_id)],
                    missing or None))
        return _json(await self._read(request, run))

    async def get_trace(self, request: web.Request) -> web.Response:
        try:
            trace_id = parse_trace_id(request.match_info["trace_id"])
        except ValueError as exc:
            raise _bad_request("unable to parse param 'traceID': %s" % exc) from None

        def run() -> Optional[str]:
            spans = self.reader.get_traces([trace_id]).get(trace_id)
            return _encode(request, _traces_envelope([spans])) if spans else None

        body = await self._read(request, run)
        if body is None:
            return _error(request, 404, "trace not found")
        return _json(body)

    async def dependencies(self, request: web.Request) -> web.Response:
        end_us, lookback_us = _params(parse_dependencies, request.query,
                                      int(self.clock() * 1000))
        links = await self._read(request, self.reader.dependencies, end_us, lookback_us)
        return _answer(request, envelope(dependencies_to_json(links)))

    async def stats(self, request: web.Request) -> web.Response:
        query = _params(parse_stats, request.query, self._now_us())
        rows = await self._read(request, self.reader.operation_stats, query.service,
                                query.start_us, query.end_us)
        data = [_stats_json(row) for row in rows]
        return _answer(request, envelope(data, total=len(data)))

    async def not_found(self, request: web.Request) -> web.Response:
        return _error(request, 404, "no API endpoint %s %s" % (request.method, request.path))

    # -- plumbing -----------------------------------------------------------------------------

    def _now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    async def _read(self, request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the read pool; a failure is a 500 with the reason."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, fn, *args)
        except Exception as exc:  # noqa: BLE001 - any storage failure is the client's 500
            logger.warning("query %s failed on the %s reader: %s", request.path_qs,
                           self.reader.name, exc, exc_info=logger.isEnabledFor(logging.DEBUG))
            raise web.HTTPInternalServerError(
                text=json.dumps(envelope(None, errors=[error_item(
                    "%s storage error: %s" % (self.reader.name, exc), 500)])),
                content_type=_JSON_TYPE) from None


def _params(parse: Callable[..., Any], *args: Any) -> Any:
    try:
        return parse(*args)
    except ParamError as exc:
        raise _bad_request(str(exc)) from None


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps(envelope(None, errors=[error_item(message, 400)])),
                              content_type=_JSON_TYPE)


def _error(request: web.Request, status: int, message: str) -> web.Response:
    return web.Response(status=status, content_type=_JSON_TYPE,
                        text=_encode(request, envelope(None, errors=[error_item(message,
                                                                                status)])))


def _traces_envelope(traces: Sequence[List[Span]],
                     errors: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    return envelope([trace_to_json(spans) for spans in traces], errors=errors)


def _stats_json(row: OperationStats) -> Dict[str, Any]:
    return {"service": row.service, "operation": row.operation, "spanKind": row.span_kind,
            "count": row.count, "errors": row.errors,
            "errorRate": row.errors / row.count if row.count else 0.0,
            "p50": row.p50_us, "p99": row.p99_us, "max": row.max_us}


def _encode(request: web.Request, value: Any) -> str:
    """JSON text; ``?prettyPrint=true`` indents, as Jaeger does."""
    if request.query.get("prettyPrint", "").lower() == "true":
        return json.dumps(value, indent=2, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json(body: str) -> web.Response:
    return web.Response(text=body, content_type=_JSON_TYPE)


def _answer(request: web.Request, value: Any) -> web.Response:
    return _json(_encode(request, value))


def query_app(reader: Reader, *, ui: bool = True, owns_reader: bool = False,
              read_threads: int = READ_THREADS,
              clock: Callable[[], float] = time.time) -> web.Application:
    """The query server's application: ``/api`` plus, with ``ui``, the web UI at ``/``.

    The app owns a thread pool, shut down when the app is cleaned up, and with
    ``owns_reader`` closes the reader then too.
    """
    from .query_ui import add_ui_routes

    executor = ThreadPoolExecutor(max_workers=read_threads, thread_name_prefix="query-read")
    api = QueryApi(reader, executor, clock)
    app = web.Application()
    app.add_routes(api.routes())
    if ui:
        add_ui_routes(app)

    async def stop_pool(app: web.Application) -> None:
        # Reads in flight finish on their threads; a reader closed under them fails them.
        await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
        if owns_reader:
            reader.close()

    app.on_cleanup.append(stop_pool)
    return app
