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
        # The aliyun_sls sink and its disk spool (docs/sls.md); the series appear when used.
        self.sls_requests = Counter(PREFIX + "sls_requests", "SLS API calls, by outcome",
                                    ["operation", "outcome"], registry=r)
        self.sls_retries = Counter(PREFIX + "sls_retries",
                                   "SLS calls retried after a retryable error", ["reason"],
                                   registry=r)
        self.sls_logs_written = Counter(PREFIX + "sls_logs_written", "Spans SLS accepted",
                                        ["path"], registry=r)
        self.sls_bytes_written = Counter(PREFIX + "sls_bytes_written",
                                         "Raw (uncompressed) LogGroup bytes SLS accepted",
                                         ["path"], registry=r)
        self.sls_values_truncated = Counter(PREFIX + "sls_values_truncated",
                                            "Span values cut to fit SLS limits", ["limit"],
                                            registry=r)
        self.spool_bytes = Gauge(PREFIX + "spool_bytes", "Bytes of the disk spool's files",
                                 ["sink"], registry=r)
        self.spool_batches = Gauge(PREFIX + "spool_batches", "Batches waiting in the spool",
                                   ["sink"], registry=r)
        self.spool_spans = Gauge(PREFIX + "spool_spans", "Spans waiting in the spool",
                                 ["sink"], registry=r)
        self.spool_replayed = Counter(PREFIX + "spool_replayed_batches",
                                      "Spooled batches delivered", ["sink"], registry=r)
        self.spool_corrupt = Counter(PREFIX + "spool_corrupt_bytes",
                                     "Damaged spool bytes skipped (torn or corrupt records)",
                                     ["sink"], registry=r)
