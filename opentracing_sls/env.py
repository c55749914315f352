"""The ``JAEGER_*`` environment variables: names, the config key each one feeds, and parsers.

One table, so the docs' configuration table and the resolver cannot drift apart.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Dict, List, Mapping, NamedTuple, Tuple

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                   "h": 3600.0}
_ENV_REFERENCE = re.compile(r"^\$\{([^:}]+)(?::([^}]*))?\}$")


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected true or false, got %r" % text)


def parse_duration(text: str) -> float:
    """Seconds from a Go duration (``1s``, ``500ms``, ``1m30s``) or a plain number of seconds."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pos = 0
        seconds = 0.0
        for match in _DURATION_PART.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            pos = match.end()
        if pos != len(value) or not value:
            raise ValueError("expected a duration such as 1s, 500ms or 1m30s, got %r"
                             % text) from None
    if seconds < 0 or seconds != seconds:
        raise ValueError("a duration must not be negative, got %r" % text)
    return seconds


def parse_int(text: str) -> int:
    return int(text.strip())


def parse_float(text: str) -> float:
    return float(text.strip())


def parse_str(text: str) -> str:
    return text.strip()


def parse_list(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_tags(text: str, environ: Mapping[str, str] = os.environ) -> Dict[str, str]:
    """``k=v,k2=v2``; a value ``${NAME:default}`` is read from the environment."""
    tags: Dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("expected key=value pairs separated by commas, got %r" % item)
        value = value.strip()
        ref = _ENV_REFERENCE.match(value)
        if ref:
            value = environ.get(ref.group(1), ref.group(2) or "")
        tags[key.strip()] = value
    return tags


class EnvVar(NamedTuple):
    name: str
    key: str
    parse: Callable[[str], object]
    default: str
    doc: str


ENV_VARS: Tuple[EnvVar, ...] = (
    EnvVar("JAEGER_SERVICE_NAME", "service_name", parse_str, "(required)",
           "Service name reported with every span."),
    EnvVar("JAEGER_DISABLED", "disabled", parse_bool, "false",
           "`true` gives the OpenTracing no-op tracer (kill switch)."),
    EnvVar("JAEGER_TAGS", "tags", parse_tags, "",
           "Process tags `k=v,k2=v2`; a value `${ENV_NAME:default}` is read from the "
           "environment. Merged under explicit `tags`."),
    EnvVar("JAEGER_TRACEID_128BIT", "generate_128bit_trace_id", parse_bool, "false",
           "Generate 128-bit trace ids."),
    EnvVar("JAEGER_AGENT_HOST", "local_agent.reporting_host", parse_str, "localhost",
           "Host of the jaeger-agent / opentracing-sls shim (UDP)."),
    EnvVar("JAEGER_AGENT_PORT", "local_agent.reporting_port", parse_int, "6831",
           "UDP port of the agent; 6832 selects the binary protocol."),
    EnvVar("JAEGER_AGENT_PROTOCOL", "local_agent.reporting_protocol", parse_str,
           "compact (binary if the port is 6832)",
           "Thrift protocol of the UDP datagrams: `compact` or `binary`."),
    EnvVar("JAEGER_ENDPOINT", "endpoint", parse_str, "",
           "Collector URL (`http://host:14268/api/traces`); when set, spans are POSTed as "
           "binary Thrift instead of sent over UDP."),
    EnvVar("JAEGER_USER", "user", parse_str, "", "Basic-auth user for `JAEGER_ENDPOINT`."),
    EnvVar("JAEGER_PASSWORD", "password", parse_str, "",
           "Basic-auth password for `JAEGER_ENDPOINT`."),
    EnvVar("JAEGER_REPORTER_LOG_SPANS", "logging", parse_bool, "false",
           "Also log every reported span (at INFO)."),
    EnvVar("JAEGER_REPORTER_MAX_QUEUE_SIZE", "reporter_queue_size", parse_int, "10000",
           "Spans held for sending; beyond it spans are dropped and counted."),
    EnvVar("JAEGER_REPORTER_FLUSH_INTERVAL", "reporter_flush_interval", parse_duration, "1s",
           "Longest time a span waits in the queue (Go duration or seconds)."),
    EnvVar("JAEGER_REPORTER_MAX_PACKET_SIZE", "reporter_max_packet_size", parse_int, "65000",
           "Largest UDP datagram; lower it where the OS limit is smaller (macOS: 9216)."),
    EnvVar("JAEGER_SAMPLER_TYPE", "sampler.type", parse_str, "remote",
           "`const`, `probabilistic`, `ratelimiting` or `remote`."),
    EnvVar("JAEGER_SAMPLER_PARAM", "sampler.param", parse_str,
           "const: 1, probabilistic: 0.001, ratelimiting: 1, remote: 0.001 (initial)",
           "Sampler parameter: 0/1, a probability, traces per second, or the initial "
           "probability of the remote sampler."),
    EnvVar("JAEGER_SAMPLING_ENDPOINT", "sampling_endpoint", parse_str,
           "http://<agent host>:5778/sampling", "URL the remote sampler polls."),
    EnvVar("JAEGER_SAMPLER_MANAGER_HOST_PORT", "sampler_manager_host_port", parse_str, "",
           "Deprecated `host:port` form of `JAEGER_SAMPLING_ENDPOINT`."),
    EnvVar("JAEGER_SAMPLER_MAX_OPERATIONS", "max_operations", parse_int, "2000",
           "Operations the per-operation sampler tracks."),
    EnvVar("JAEGER_SAMPLER_REFRESH_INTERVAL", "sampling_refresh_interval", parse_duration,
           "1m", "How often the remote sampler polls."),
    EnvVar("JAEGER_PROPAGATION", "propagation", parse_list, "b3,w3c,jaeger",
           "Header formats, comma-separated: `b3`, `b3single`, `w3c`, `jaeger`. Extraction "
           "tries them in order; injection writes all."),
)
