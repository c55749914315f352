"""The shim process: receivers -> one span model -> sinks, plus sampling and admin."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from aiohttp import web

from .config import ShimConfig
from .http import admin_app, collector_app, sampling_app, zipkin_app
from .metrics import ShimMetrics
from .model import Span
from .sampling import Strategies
from .sinks import Sink, build_sinks
from .store_accel import untrack
from .udp import UdpReceiver, bind_udp

logger = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The shim cannot start (a port in use, a store that cannot open); says which key."""


def expand_hosts(hosts: Tuple[str, ...]) -> List[str]:
    """``localhost`` means both loopbacks: clients resolve it to either (jaeger-client 4.8
    sends to ``::1`` where that comes first)."""
    out: List[str] = []
    for host in hosts:
        for address in (("127.0.0.1", "::1") if host == "localhost" else (host,)):
            if address not in out:
                out.append(address)
    return out


def _ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


class Shim:
    """Starts every configured listener and sink; :meth:`stop` drains within a bound."""

    def __init__(self, config: ShimConfig, reuse_port: bool = False) -> None:
        self.config = config
        self.reuse_port = reuse_port or config["workers"] > 1
        self.metrics = ShimMetrics()
        self.sinks: List[Sink] = build_sinks(config, self.metrics)
        if "aliyun_sls" in config["storage.type"]:
            from .sls_sink import build_sls_sink  # imports the SLS SDK only when used

            self.sinks.append(build_sls_sink(config, self.metrics))
        self.receivers: List[UdpReceiver] = []
        self.strategies = (Strategies.from_file(config["sampling.strategies_file"],
                                                config["sampling.default_probability"])
                           if config["sampling.strategies_file"]
                           else Strategies(config["sampling.default_probability"]))
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[threading.Thread] = None
        self._runners: List[web.AppRunner] = []
        self.started_at = 0.0
        self.http_ports: Dict[str, int] = {}

    # -- delivery ------------------------------------------------------------------------------

    def deliver(self, spans: List[Span], fmt: str) -> None:
        self.metrics.decoded.labels(fmt).inc(len(spans))
        # Queued spans are only strings and numbers in tuples: the garbage collector need not
        # walk them over and over while they wait (it cost a third of the CPU per span).
        untrack(spans)
        for sink in self.sinks:
            sink.submit(spans)

    def health(self) -> Dict[str, Any]:
        dead = [s.name for s in self.sinks if s._thread is not None and not s._thread.is_alive()]
        # Sinks that report their own state (aliyun_sls: halted on refused credentials).
        details = {s.name: s.health() for s in self.sinks if hasattr(s, "health")}
        failing = [name for name, state in details.items() if not state.get("healthy", True)]
        report = {"status": "unhealthy" if dead or failing else "ok", "dead_sinks": dead,
                  "uptime_seconds": round(time.monotonic() - self.started_at, 3),
                  "sinks": [s.name for s in self.sinks]}
        if details:
            report["sink_health"] = details
        return report

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        from .thrift_decode import (
            decode_batch_binary,
            decode_emit_batch_binary,
            decode_emit_batch_compact,
        )

        self.started_at = time.monotonic()
        hosts = expand_hosts(self.config["listen.host"])
        if "::1" in hosts and not _ipv6_available():
            hosts.remove("::1")
        for sink in self.sinks:
            try:
                sink.start()
            except Exception as exc:
                self.stop(timeout=1)
                raise StartupError("sink %s cannot start: %s" % (sink.name, exc)) from exc
        try:
            for key, fmt, decode in (
                    ("listen.compact_port", "jaeger.compact", decode_emit_batch_compact),
                    ("listen.binary_port", "jaeger.binary", decode_emit_batch_binary)):
                port = self.config[key]
                if not port:
                    continue
                for host in hosts:
                    try:
                        sock = bind_udp(host, port, self.reuse_port)
                    except OSError as exc:
                        raise StartupError("config key %r: cannot listen on udp %s:%d: %s"
                                           % (key, host, port, exc.strerror or exc)) from None
                    receiver = UdpReceiver(sock, fmt, decode, self.deliver, self.metrics)
                    self.receivers.append(receiver)
                    receiver.start()
            self._start_http(hosts, decode_batch_binary)
        except BaseException:
            self.stop(timeout=1)
            raise

    def _start_http(self, hosts: List[str], decode_batch_binary: Any) -> None:
        from .zipkin import decode_zipkin_v1_json, decode_zipkin_v2_json

        max_body = self.config["limits.max_body_bytes"]
        apps = []
        if self.config["listen.http_port"]:
            apps.append(("listen.http_port", collector_app(
                lambda body: (decode_batch_binary(body), 0), self.deliver, self.metrics,
                max_body)))
        if self.config["listen.zipkin_port"]:
            apps.append(("listen.zipkin_port", zipkin_app(
                _zipkin(decode_zipkin_v1_json), _zipkin(decode_zipkin_v2_json), self.deliver,
                self.metrics, max_body)))
        if self.config["listen.sampling_port"]:
            apps.append(("listen.sampling_port", sampling_app(self.strategies, self.metrics)))
        if self.config["listen.admin_port"]:
            apps.append(("listen.admin_port", admin_app(self.metrics, self.health)))
        if self.config["listen.query_port"]:
            from .query_server import shim_query_app

            query = shim_query_app(self.config)  # None when no sink can be read back
            if query is not None:
                apps.append(("listen.query_port", query))
        if not apps:
            return
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._loop_thread = threading.Thread(target=loop.run_forever, daemon=True,
                                             name="shim-http")
        self._loop_thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(apps, hosts), loop)
        future.result(timeout=30)

    async def _serve(self, apps: List[Tuple[str, web.Application]], hosts: List[str]) -> None:
        for key, app in apps:
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            self._runners.append(runner)
            port = self.config[key]
            for host in hosts:
                site = web.TCPSite(runner, host, port, reuse_port=self.reuse_port or None,
                                   backlog=1024)
                try:
                    await site.start()
                except OSError as exc:
                    raise StartupError("config key %r: cannot listen on tcp %s:%d: %s"
                                       % (key, host, port, exc.strerror or exc)) from None
            self.http_ports[key] = port

    def stop(self, timeout: float = 10.0) -> bool:
        """Stops receiving, then gives sinks up to ``timeout`` seconds to write what they hold."""
        for receiver in self.receivers:
            receiver.stop()
        self.receivers = []
        if self._loop is not None:
            loop = self._loop
            try:
                asyncio.run_coroutine_threadsafe(self._cleanup(), loop).result(timeout=5)
            except Exception:  # noqa: BLE001 - shutting down regardless
                logger.warning("HTTP listeners did not stop cleanly", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=5)
            loop.close()
            self._loop = None
        deadline = time.monotonic() + timeout
        ok = True
        for sink in self.sinks:
            if sink._thread is None:
                continue
            ok = sink.stop(max(0.1, deadline - time.monotonic())) and ok
        return ok

    async def _cleanup(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners = []


def _zipkin(decode: Any) -> Any:
    """Adapts a Zipkin decoder to ``body -> (spans, bad span count)``."""
    def run(body: bytes) -> Tuple[List[Span], int]:
        result = decode(body)
        if isinstance(result, tuple):
            return result[0], result[1]
        return result, 0
    return run
