"""The shim's HTTP endpoints on aiohttp (a production asyncio server): collector, Zipkin,
sampling and admin, each on its own port, all on one event loop."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Dict, List, Tuple

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import ShimMetrics
from .model import DecodeError, Span
from .sampling import Strategies, answer

logger = logging.getLogger(__name__)

Deliver = Callable[[List[Span], str], None]
Decoder = Callable[[bytes], Tuple[List[Span], int]]


def _ingest_handler(fmt: str, decode: Decoder, deliver: Deliver, metrics: ShimMetrics,
                    status: int) -> Callable[[web.Request], Any]:
    requests = metrics.requests.labels(fmt)
    malformed = metrics.malformed.labels(fmt)
    too_large = metrics.input_dropped.labels(fmt, "too_large")

    async def handle(request: web.Request) -> web.Response:
        requests.inc()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            too_large.inc()
            raise
        try:
            spans, bad = decode(body)
        except DecodeError as exc:
            malformed.inc()
            return web.Response(status=400, text="malformed %s body: %s\n" % (fmt, exc))
        if bad:
            malformed.inc(bad)
        if spans:
            deliver(spans, fmt)
        return web.Response(status=status)

    return handle


def collector_app(decode: Decoder, deliver: Deliver, metrics: ShimMetrics,
                  max_body: int) -> web.Application:
    """Port 14268: ``POST /api/traces`` with a binary Thrift Batch (Jaeger's collector API)."""
    app = web.Application(client_max_size=max_body)
    app.router.add_post("/api/traces", _ingest_handler("jaeger.http", decode, deliver,
                                                       metrics, 202))
    return app


def zipkin_app(decode_v1: Decoder, decode_v2: Decoder, deliver: Deliver, metrics: ShimMetrics,
               max_body: int) -> web.Application:
    """Port 9411: Zipkin v1/v2 JSON. Envoy counts only 202 as sent."""
    app = web.Application(client_max_size=max_body)
    app.router.add_post("/api/v1/spans", _ingest_handler("zipkin.v1", decode_v1, deliver,
                                                         metrics, 202))
    app.router.add_post("/api/v2/spans", _ingest_handler("zipkin.v2", decode_v2, deliver,
                                                         metrics, 202))
    return app


def sampling_app(strategies: Strategies, metrics: ShimMetrics) -> web.Application:
    """Port 5778: ``/sampling?service=`` (string enums) and legacy ``/?service=`` (integers)."""
    requests = metrics.requests.labels("sampling")

    def handler(legacy: bool) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            requests.inc()
            status, body = answer(strategies, request.query.getall("service", []), legacy)
            if status != 200:
                return web.Response(status=status, text=body + "\n")
            return web.Response(status=200, text=body, content_type="application/json")
        return handle

    async def baggage(request: web.Request) -> web.Response:
        return web.Response(text="[]", content_type="application/json")

    app = web.Application()
    app.router.add_get("/sampling", handler(False))
    app.router.add_get("/", handler(True))
    app.router.add_get("/baggageRestrictions", baggage)
    return app


def admin_app(metrics: ShimMetrics, health: Callable[[], Dict[str, Any]]) -> web.Application:
    """Port 14271: Prometheus ``/metrics`` and ``/healthz`` (503 when unhealthy)."""

    async def prometheus(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def healthz(request: web.Request) -> web.Response:
        report = health()
        return web.Response(status=200 if report.get("status") == "ok" else 503,
                            text=json.dumps(report), content_type="application/json")

    app = web.Application()
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/healthz", healthz)
    return app
