"""The shim's Prometheus metrics, in a registry per shim instance (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

PREFIX = "opentracing_sls_shim_"


class ShimMetrics:
    """Counters for every input, decode, write and drop; gauges for queue lengths."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.packets = Counter(PREFIX + "packets_received", "UDP datagrams received",
                               ["format"], registry=r)
        self.requests = Counter(PREFIX + "requests_received", "HTTP requests received",
                                ["format"], registry=r)
        self.malformed = Counter(PREFIX + "malformed_inputs",
                                 "Datagrams, requests or spans that could not be decoded",
                                 ["format"], registry=r)
        self.decoded = Counter(PREFIX + "spans_decoded", "Spans decoded", ["format"], registry=r)
        self.input_dropped = Counter(PREFIX + "inputs_dropped",
                                     "Datagrams or requests dropped before decoding",
                                     ["format", "reason"], registry=r)
        self.written = Counter(PREFIX + "spans_written", "Spans a sink wrote", ["sink"],
                               registry=r)
        self.dropped = Counter(PREFIX + "spans_dropped", "Spans a sink dropped",
                               ["sink", "reason"], registry=r)
        self.queue_length = Gauge(PREFIX + "queue_length", "Items waiting in a queue",
                                  ["queue"], registry=r)
