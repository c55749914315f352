"""Span sinks that run in a separate process, so their CPU is never charged to the tracer.

- ``Sink("udp")``: a loopback UDP socket with a 64 MiB receive buffer that decodes every
  Jaeger Thrift compact ``emitBatch`` datagram (C-accelerated jaeger-client ttypes, else
  thriftpy2 with our IDL), and the JSON lines of the fallback OpenTelemetry exporter;
- ``Sink("otlp-http")``: an HTTP/1.1 server decoding OTLP/HTTP protobuf export requests.

Both count spans per (service name, operation) and how many have the benchmark's shape, and
answer the parent's queries over a pipe. Never a fixed port: both bind port 0.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from _common import TAG_BOOL, TAG_INT, TAG_STR, otlp_http_available

# Jaeger Thrift TagType values a well-encoded span must carry for the three tags.
_JAEGER_TAG_TYPES = {TAG_STR: 0, TAG_INT: 3, TAG_BOOL: 2}
_OTLP_VALUE_KINDS = {TAG_STR: "string_value", TAG_INT: "int_value", TAG_BOOL: "bool_value"}

# 64 MiB of socket buffer holds several seconds of 20 000 spans/s, so the sink never
# loses a datagram while it decodes the previous one.
SINK_RCVBUF = 64 * 1024 * 1024
# SO_RCVBUFFORCE (Linux, needs CAP_NET_ADMIN) ignores net.core.rmem_max; Python does not
# export the constant.
_SO_RCVBUFFORCE = 33
# Longer than jaeger-client's 1 s flush interval, so a last partial batch is not missed.
DEFAULT_QUIET = 1.5


class _Tally:
    """Per (service, operation): spans received and spans with the expected shape."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: Dict[Tuple[str, str], List[int]] = {}
        self.payloads: Dict[str, int] = {}
        self.payload_bytes: Dict[str, int] = {}
        self.errors = 0
        self.decoder = ""

    def add(self, service: str, size: int, spans: List[Tuple[str, bool]]) -> None:
        with self.lock:
            self.payloads[service] = self.payloads.get(service, 0) + 1
            self.payload_bytes[service] = self.payload_bytes.get(service, 0) + size
            for op, shaped in spans:
                entry = self.spans.setdefault((service, op), [0, 0])
                entry[0] += 1
                entry[1] += shaped

    def snapshot(self) -> Dict[str, Any]:
        with self.lock:
            return {"spans": {k: list(v) for k, v in self.spans.items()},
                    "payloads": dict(self.payloads), "bytes": dict(self.payload_bytes),
                    "errors": self.errors, "decoder": self.decoder}


def _jaeger_span_shaped(span: Any) -> bool:
    tags = {t.key: t.vType for t in span.tags or ()}
    logs = span.logs or ()
    return (all(tags.get(k) == v for k, v in _JAEGER_TAG_TYPES.items())
            and len(logs) == 1 and len(logs[0].fields or ()) == 2)


def _accelerated_spec(spec: Any) -> Any:
    """jaeger-client's generated ``thrift_spec`` in the layout of Apache Thrift's C decoder.

    The generated code (Thrift 0.9 era) nests structs as ``(cls, spec)`` tuples and lists as
    ``(etype, eargs)``; thrift>=0.10's ``fastbinary.decode_compact`` wants ``[cls, spec]``
    and ``(etype, eargs, is_binary)``. Converted, it decodes ~10x faster than pure Python,
    which lets the sink decode 20 000 spans/s without falling behind.
    """
    from thrift.Thrift import TType

    def args(ttype: int, targs: Any) -> Any:
        if ttype == TType.STRUCT:
            return [targs[0], _accelerated_spec(targs[1])]
        if ttype in (TType.LIST, TType.SET):
            return (targs[0], args(targs[0], targs[1]), False)
        if ttype == TType.MAP:
            return (targs[0], args(targs[0], targs[1]), targs[2], args(targs[2], targs[3]),
                    False)
        return targs

    return tuple(None if f is None else (f[0], f[1], f[2], args(f[1], f[3]), f[4])
                 for f in spec)


class _JaegerDecoder:
    """Decodes whole ``emitBatch`` datagrams: C-accelerated jaeger-client ttypes when possible,
    else thriftpy2 with our IDL (which also knows the seqNo/stats fields)."""

    def __init__(self) -> None:
        self.name = "none"
        self._fast: Any = None
        try:
            from jaeger_client.thrift_gen.agent import Agent
            from thrift.protocol import fastbinary
            from thrift.protocol.TCompactProtocol import TCompactProtocolAccelerated
            from thrift.transport.TTransport import TMemoryBuffer

            spec = [Agent.emitBatch_args, _accelerated_spec(Agent.emitBatch_args.thrift_spec)]

            def fast(data: bytes) -> Any:
                proto = TCompactProtocolAccelerated(TMemoryBuffer(data))
                name, _, _ = proto.readMessageBegin()
                if name != "emitBatch":
                    raise ValueError("not an emitBatch message: %r" % name)
                args = Agent.emitBatch_args()
                fastbinary.decode_compact(args, proto, spec)
                return args.batch

            self._fast = fast
            self.name = "jaeger-client ttypes + thrift C decoder"
        except ImportError:
            self.name = "thriftpy2 + opentracing_sls.reporting.idl"

    def _slow(self, data: bytes) -> Any:
        from thriftpy2.protocol import TCompactProtocol
        from thriftpy2.transport import TMemoryBuffer

        from opentracing_sls.reporting.idl import agent

        proto = TCompactProtocol(TMemoryBuffer(data))
        name, _, _ = proto.read_message_begin()
        if name != "emitBatch":
            raise ValueError("not an emitBatch message: %r" % name)
        args = agent.Agent.emitBatch_args()
        args.read(proto)
        return args.batch

    def __call__(self, data: bytes) -> Tuple[str, List[Tuple[str, bool]]]:
        if self._fast is not None:
            try:
                batch = self._fast(data)
            except Exception:  # noqa: BLE001 - an incompatible C decoder: fall back for good
                batch = self._slow(data)
                self._fast = None
                self.name = "thriftpy2 + opentracing_sls.reporting.idl"
        else:
            batch = self._slow(data)
        spans = [(s.operationName, _jaeger_span_shaped(s)) for s in batch.spans or ()]
        return batch.process.serviceName, spans


def _json_lines_decode(data: bytes) -> Tuple[str, List[Tuple[str, bool]]]:
    service = ""
    spans = []
    for line in data.splitlines():
        record = json.loads(line)
        service = record["service"]
        attributes = record.get("attributes") or {}
        events = record.get("events") or []
        shaped = (isinstance(attributes.get(TAG_STR), str)
                  and type(attributes.get(TAG_INT)) is int
                  and type(attributes.get(TAG_BOOL)) is bool
                  and len(events) == 1 and len(events[0].get("attributes") or {}) == 2)
        spans.append((record["name"], shaped))
    return service, spans


def _udp_socket_drops(port: int) -> Optional[int]:
    """Datagrams the kernel dropped on the sink's socket (last column of /proc/net/udp)."""
    try:
        with open("/proc/net/udp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1].endswith(":%04X" % port):
                    return int(fields[-1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _serve_udp(tally: _Tally, stop: threading.Event, ready: Callable[..., None]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, SINK_RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SINK_RCVBUF)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    port = sock.getsockname()[1]
    decode = _JaegerDecoder()
    tally.decoder = decode.name
    ready(port, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
          lambda: _udp_socket_drops(port))
    try:
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            try:
                service, spans = (_json_lines_decode(data) if data[:1] == b"{"
                                  else decode(data))
            except Exception:  # noqa: BLE001 - count malformed payloads, keep receiving
                with tally.lock:
                    tally.errors += 1
                continue
            tally.add(service, len(data), spans)
            tally.decoder = decode.name
    finally:
        sock.close()


def _serve_otlp_http(tally: _Tally, stop: threading.Event, ready: Callable[..., None]) -> None:
    import gzip
    import zlib
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    response_body = ExportTraceServiceResponse().SerializeToString()
    tally.decoder = "opentelemetry-proto ExportTraceServiceRequest"

    def shaped(span: Any) -> bool:
        kinds = {a.key: a.value.WhichOneof("value") for a in span.attributes}
        return (all(kinds.get(k) == v for k, v in _OTLP_VALUE_KINDS.items())
                and len(span.events) == 1 and len(span.events[0].attributes) == 2)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's requests.Session expects

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = next((a.value.string_value for a in resource_spans.resource.attributes
                                    if a.key == "service.name"), "")
                    spans = [(s.name, shaped(s)) for scope in resource_spans.scope_spans
                             for s in scope.spans]
                    tally.add(service, len(body), spans)
                status = 200
            except Exception:  # noqa: BLE001 - count malformed payloads, keep serving
                with tally.lock:
                    tally.errors += 1
                status = 400
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(response_body)))
            self.end_headers()
            self.wfile.write(response_body)

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ready(server.server_address[1], None, lambda: None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    stop.wait()
    server.shutdown()
    server.server_close()


def _sink_main(conn: Any, kind: str) -> None:
    """Child-process entry point: serve until the parent says stop (or goes away)."""
    tally = _Tally()
    stop = threading.Event()
    drops: List[Callable[[], Optional[int]]] = []

    def ready(port: int, rcvbuf: Optional[int], socket_drops: Callable[[], Optional[int]]
              ) -> None:
        drops.append(socket_drops)
        conn.send(("ready", port, rcvbuf))

    serve = _serve_udp if kind == "udp" else _serve_otlp_http
    server = threading.Thread(target=serve, args=(tally, stop, ready), daemon=True)
    server.start()
    try:
        while server.is_alive():
            if not conn.poll(0.2):
                continue
            command = conn.recv()
            if command == "stop":
                break
            snapshot = tally.snapshot()
            snapshot["socket_drops"] = drops[0]() if drops else None
            conn.send(snapshot)
    except (EOFError, OSError):
        pass  # the parent went away
    finally:
        stop.set()
        server.join(5)


class Sink:
    """A span sink running in a separate process.

    ``kind`` is ``"udp"`` (Jaeger Thrift compact ``emitBatch`` datagrams, or JSON lines) or
    ``"otlp-http"`` (OTLP/HTTP protobuf on ``http://127.0.0.1:<port>/v1/traces``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._lock = threading.Lock()
        #: CPU seconds this process spent asking the sink for counts; bench_cpu takes it
        #: out of its figures (each query costs ~50 us of pickling and pipe I/O).
        self.query_cpu = 0.0
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with live threads
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_sink_main, args=(child, kind), daemon=True,
                                 name="bench-sink-" + kind)
        self._proc.start()
        child.close()
        try:
            if not self._conn.poll(60):
                raise EOFError
            _, self.port, self.rcvbuf = self._conn.recv()
        except (EOFError, OSError):
            self.close()
            raise RuntimeError("the %s sink process did not start (exit code %s)"
                               % (kind, self._proc.exitcode)) from None

    @property
    def endpoint(self) -> str:
        return "http://127.0.0.1:%d/v1/traces" % self.port

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            cpu = time.thread_time()
            self._conn.send("counts")
            snapshot = self._conn.recv()
            self.query_cpu += time.thread_time() - cpu
            return snapshot

    def received(self, service: str, op: str) -> Tuple[int, int]:
        """(spans received, spans with the expected shape) for a service and operation."""
        spans, shaped = self.snapshot()["spans"].get((service, op), (0, 0))
        return spans, shaped

    def wait_for(self, service: str, op: str, expected: int, timeout: float = 30.0,
                 quiet: float = DEFAULT_QUIET) -> Tuple[int, int]:
        """Polls until ``expected`` spans arrived, nothing arrived for ``quiet`` s, or timeout."""
        start = last_change = time.monotonic()
        last = (-1, -1)
        while True:
            got = self.received(service, op)
            now = time.monotonic()
            if got[0] >= expected or now - start >= timeout:
                return got
            if got != last:
                last, last_change = got, now
            elif now - last_change >= quiet:
                return got
            time.sleep(0.02)

    def close(self) -> None:
        try:
            with self._lock:
                self._conn.send("stop")
        except OSError:
            pass
        self._proc.join(10)
        if self._proc.is_alive():  # our own child: stop it by its handle
            self._proc.terminate()
            self._proc.join(5)
        self._conn.close()


class Sinks:
    """The UDP sink, plus the OTLP/HTTP sink when the OTLP exporter is installed."""

    def __init__(self) -> None:
        self.udp = Sink("udp")
        self.otlp: Optional[Sink] = None
        try:
            if otlp_http_available():
                self.otlp = Sink("otlp-http")
        except BaseException:
            self.udp.close()
            raise

    @property
    def otel(self) -> Sink:
        return self.otlp or self.udp

    def describe(self) -> str:
        snap = self.udp.snapshot()
        text = ("sinks in separate processes: UDP 127.0.0.1:%d (SO_RCVBUF %d bytes as the kernel "
                "reports it; decoder: %s)" % (self.udp.port, self.udp.rcvbuf or 0,
                                               snap["decoder"]))
        if self.otlp is not None:
            text += "; OTLP/HTTP %s" % self.otlp.endpoint
        return text

    def close(self) -> None:
        for sink in (self.otlp, self.udp):
            if sink is not None:
                sink.close()
