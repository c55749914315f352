"""jaeger-client compatible configuration: ``Config(config, service_name=...).initialize_tracer()``.

The dict and the environment are resolved ONCE into a frozen :class:`TracerSettings`
(explicit value > ``JAEGER_*`` environment > default). A bad explicit value raises
``ValueError`` naming the key; a bad environment value logs a warning and falls back.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Any, Dict, Mapping, Optional, Tuple

import opentracing
from opentracing import ScopeManager

from . import env
from .constants import (
    DEFAULT_AGENT_HOST,
    DEFAULT_BINARY_PORT,
    DEFAULT_COMPACT_PORT,
    DEFAULT_MAX_OPERATIONS,
    DEFAULT_SAMPLING_INTERVAL,
    DEFAULT_SAMPLING_PORT,
    DEFAULT_SAMPLING_PROBABILITY,
    MAX_TAG_VALUE_LENGTH,
    MAX_TRACEBACK_LENGTH,
    MAX_UDP_PACKET_SIZE,
)
from .metrics import Metrics
from .propagation import DEFAULT_PROPAGATION

logger = logging.getLogger(__name__)

#: Keys accepted in the config dict: jaeger-client's, plus ours.
VALID_KEYS = frozenset({
    # jaeger-client 4.8.0
    "logging", "local_agent", "sampler", "tags", "enabled", "reporter_batch_size",
    "reporter_queue_size", "propagation", "max_tag_value_length", "max_traceback_length",
    "reporter_flush_interval", "sampling_refresh_interval", "trace_id_header",
    "generate_128bit_trace_id", "baggage_header_prefix", "service_name", "throttler",
    "metrics", "max_operations", "debug_id_header",
    # opentracing-sls
    "disabled", "endpoint", "user", "password", "sampling_endpoint", "reporter_max_packet_size",
    "sampler_manager_host_port",
})
_LOCAL_AGENT_KEYS = frozenset({"reporting_host", "reporting_port", "sampling_port",
                               "reporting_protocol", "enabled"})
_SAMPLER_TYPES = ("const", "probabilistic", "ratelimiting", "rate_limiting", "remote")
_PROTOCOLS = ("compact", "binary")
# Header-name keys jaeger-client allowed to change; ours are fixed by the wire formats.
_FIXED_HEADER_KEYS = {"trace_id_header": "uber-trace-id", "baggage_header_prefix": "uberctx-",
                      "debug_id_header": "jaeger-debug-id"}


@dataclasses.dataclass(frozen=True)
class TracerSettings:
    """Every tracer setting, resolved and validated."""

    service_name: str
    disabled: bool = False
    logging: bool = False
    tags: Tuple[Tuple[str, Any], ...] = ()
    generate_128bit_trace_id: bool = False
    max_tag_value_length: int = MAX_TAG_VALUE_LENGTH
    max_traceback_length: int = MAX_TRACEBACK_LENGTH
    propagation: Tuple[str, ...] = DEFAULT_PROPAGATION
    sampler_type: str = "remote"
    sampler_param: Optional[float] = None
    sampler_instance: Any = None
    sampling_endpoint: str = ""
    sampling_refresh_interval: float = DEFAULT_SAMPLING_INTERVAL
    max_operations: int = DEFAULT_MAX_OPERATIONS
    reporting_host: str = DEFAULT_AGENT_HOST
    reporting_port: int = DEFAULT_COMPACT_PORT
    reporting_protocol: str = "compact"
    endpoint: str = ""
    user: str = ""
    password: str = dataclasses.field(default="", repr=False)
    reporter_queue_size: int = 10000
    reporter_batch_size: int = 0
    reporter_flush_interval: float = 1.0
    reporter_max_packet_size: int = MAX_UDP_PACKET_SIZE


class _Resolver:
    """Looks a key up in the explicit dict, then the environment, then the default."""

    def __init__(self, config: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        self.config = config
        self.environ = environ
        self.env_by_key = {var.key: var for var in env.ENV_VARS}

    def explicit(self, key: str) -> Any:
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    def from_env(self, key: str) -> Any:
        var = self.env_by_key.get(key)
        if var is None:
            return None
        text = self.environ.get(var.name)
        if text is None or (text.strip() == "" and var.parse is not env.parse_str):
            return None
        try:
            value = var.parse(text)
        except ValueError as exc:
            logger.warning("opentracing_sls: ignoring %s=%r (%s); using the default",
                           var.name, text, exc)
            return None
        return value if value != "" else None

    def get(self, key: str, check: Any, default: Any) -> Any:
        """``check(value) -> value`` raises ValueError with the rule; applied to both sources."""
        value = self.explicit(key)
        if value is not None:
            try:
                return check(value)
            except (TypeError, ValueError) as exc:
                raise ValueError("config key %r: %s (got %r)" % (key, exc, value)) from None
        value = self.from_env(key)
        if value is not None:
            try:
                return check(value)
            except (TypeError, ValueError) as exc:
                logger.warning("opentracing_sls: ignoring %s (%s); using the default",
                               self.env_by_key[key].name, exc)
        return default


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return env.parse_bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError("must be true or false")


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("must be a positive integer")
    number = int(value)
    if number <= 0:
        raise ValueError("must be a positive integer")
    return number


def _port(value: Any) -> int:
    number = _positive_int(value)
    if number > 65535:
        raise ValueError("must be a port number between 1 and 65535")
    return number


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds")
    number = env.parse_duration(value) if isinstance(value, str) else float(value)
    if not number > 0:
        raise ValueError("must be a positive number of seconds")
    return number


def _non_empty_str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def _one_of(choices: Tuple[str, ...]) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise ValueError("must be one of %s" % ", ".join(choices))
        return value.strip().lower()
    return check


def _propagation(value: Any) -> Tuple[str, ...]:
    from .propagation import build_text_codec

    names = env.parse_list(value) if isinstance(value, str) else list(value)
    if not names:
        raise ValueError("must name at least one format")
    build_text_codec(names, url_encoding=True)  # raises ValueError naming the unknown format
    return tuple(names)


def _tags(value: Any) -> Dict[str, Any]:
    if isinstance(value, str):
        return env.parse_tags(value)
    if not isinstance(value, Mapping):
        raise ValueError("must be a dict of tag names to values")
    return dict(value)


def resolve_settings(config: Optional[Mapping[str, Any]], service_name: Optional[str] = None,
                     validate: bool = False,
                     environ: Optional[Mapping[str, str]] = None) -> TracerSettings:
    """Validates ``config`` and the environment into a :class:`TracerSettings`."""
    config = dict(config or {})
    environ = os.environ if environ is None else environ
    unknown = sorted(set(config) - VALID_KEYS)
    if unknown:
        message = "unknown config key(s) %s; valid keys: %s" % (
            ", ".join(map(repr, unknown)), ", ".join(sorted(VALID_KEYS)))
        if validate:
            raise ValueError(message)
        logger.warning("opentracing_sls: %s", message)
    local_agent = config.get("local_agent") or {}
    if not isinstance(local_agent, Mapping):
        raise ValueError("config key 'local_agent': must be a dict")
    bad = sorted(set(local_agent) - _LOCAL_AGENT_KEYS)
    if bad:
        raise ValueError("config key 'local_agent': unknown key(s) %s; valid: %s"
                         % (", ".join(bad), ", ".join(sorted(_LOCAL_AGENT_KEYS))))
    for key, fixed in _FIXED_HEADER_KEYS.items():
        if key in config and config[key] != fixed:
            raise ValueError("config key %r: only %r is supported (header names follow the "
                             "Jaeger wire format)" % (key, fixed))
    if "throttler" in config:
        logger.warning("opentracing_sls: config key 'throttler' is ignored: the stock "
                       "jaeger-agent serves no /credits endpoint, debug spans are always allowed")

    r = _Resolver(config, environ)
    name = service_name if service_name is not None else r.get("service_name", _non_empty_str,
                                                                None)
    if name is None:
        raise ValueError("service_name is required (argument, config key 'service_name' or "
                         "JAEGER_SERVICE_NAME)")
    name = _non_empty_str(name)
    if "enabled" in config and "disabled" not in config:
        try:
            disabled = not _boolean(config["enabled"])
        except ValueError as exc:
            raise ValueError("config key 'enabled': %s" % exc) from None
    else:
        disabled = r.get("disabled", _boolean, False)

    tags = dict(r.from_env("tags") or {})
    if config.get("tags") is not None:
        try:
            tags.update(_tags(config["tags"]))
        except ValueError as exc:
            raise ValueError("config key 'tags': %s" % exc) from None

    host = r.get("local_agent.reporting_host", _non_empty_str, DEFAULT_AGENT_HOST)
    port = r.get("local_agent.reporting_port", _port, DEFAULT_COMPACT_PORT)
    protocol = r.get("local_agent.reporting_protocol", _one_of(_PROTOCOLS),
                     "binary" if port == DEFAULT_BINARY_PORT else "compact")
    sampling_port = r.get("local_agent.sampling_port", _port, DEFAULT_SAMPLING_PORT)
    endpoint = r.get("endpoint", _non_empty_str, "")
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ValueError("config key 'endpoint': must be an http:// or https:// URL")

    sampler = config.get("sampler")
    sampler_instance = None
    if sampler is not None and not isinstance(sampler, Mapping):
        from .sampling import Sampler

        if not isinstance(sampler, Sampler):
            raise ValueError("config key 'sampler': must be a dict {type, param} or a Sampler")
        sampler_instance = sampler
    sampler_type = r.get("sampler.type", _one_of(_SAMPLER_TYPES), "remote")
    sampler_param = r.get("sampler.param", _sampler_param, None)
    host_port = r.get("sampler_manager_host_port", _non_empty_str, "")
    default_endpoint = ("http://%s/sampling" % host_port if host_port
                        else "http://%s:%d/sampling" % (_url_host(host), sampling_port))
    sampling_endpoint = r.get("sampling_endpoint", _non_empty_str, default_endpoint)

    settings = TracerSettings(
        service_name=name,
        disabled=disabled,
        logging=r.get("logging", _boolean, False),
        tags=tuple(tags.items()),
        generate_128bit_trace_id=r.get("generate_128bit_trace_id", _boolean, False),
        max_tag_value_length=r.get("max_tag_value_length", _positive_int, MAX_TAG_VALUE_LENGTH),
        max_traceback_length=r.get("max_traceback_length", _positive_int, MAX_TRACEBACK_LENGTH),
        propagation=r.get("propagation", _propagation, DEFAULT_PROPAGATION),
        sampler_type=sampler_type,
        sampler_param=sampler_param,
        sampler_instance=sampler_instance,
        sampling_endpoint=sampling_endpoint,
        sampling_refresh_interval=r.get("sampling_refresh_interval", _seconds,
                                        DEFAULT_SAMPLING_INTERVAL),
        max_operations=r.get("max_operations", _positive_int, DEFAULT_MAX_OPERATIONS),
        reporting_host=host,
        reporting_port=port,
        reporting_protocol=protocol,
        endpoint=endpoint,
        user=r.get("user", _non_empty_str, ""),
        password=r.get("password", _non_empty_str, ""),
        reporter_queue_size=r.get("reporter_queue_size", _positive_int, 10000),
        reporter_batch_size=r.get("reporter_batch_size", _positive_int, 0),
        reporter_flush_interval=r.get("reporter_flush_interval", _seconds, 1.0),
        reporter_max_packet_size=r.get("reporter_max_packet_size", _packet_size,
                                       MAX_UDP_PACKET_SIZE),
    )
    if bool(settings.user) != bool(settings.password):
        raise ValueError("config keys 'user' and 'password' (JAEGER_USER/JAEGER_PASSWORD) must "
                         "be set together")
    if settings.reporter_batch_size > settings.reporter_queue_size:
        raise ValueError("config key 'reporter_batch_size': must not exceed "
                         "'reporter_queue_size' (%d > %d)"
                         % (settings.reporter_batch_size, settings.reporter_queue_size))
    # Checked here so a bad param fails at start-up, naming the key.
    try:
        _build_sampler(settings, None)
    except ValueError as exc:
        if r.explicit("sampler.param") is not None:
            raise ValueError("config key 'sampler.param': %s" % exc) from None
        logger.warning("opentracing_sls: ignoring JAEGER_SAMPLER_PARAM (%s); using the "
                       "default for sampler type %r", exc, settings.sampler_type)
        settings = dataclasses.replace(settings, sampler_param=None)
    return settings


def _sampler_param(value: Any) -> float:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return float(env.parse_bool(value))
    if isinstance(value, bool):
        return float(value)
    number = float(value)
    if number != number:
        raise ValueError("must be a number, not NaN")
    return number


def _packet_size(value: Any) -> int:
    number = _positive_int(value)
    if not 1024 <= number <= MAX_UDP_PACKET_SIZE:
        raise ValueError("must be between 1024 and %d bytes" % MAX_UDP_PACKET_SIZE)
    return number


def _url_host(host: str) -> str:
    return "[%s]" % host if ":" in host and not host.startswith("[") else host


def _build_sampler(settings: TracerSettings, metrics: Optional[Metrics]) -> Any:
    from .sampling import RemoteControlledSampler, sampler_from_config

    if settings.sampler_instance is not None:
        return settings.sampler_instance
    if settings.sampler_type == "remote":
        rate = (DEFAULT_SAMPLING_PROBABILITY if settings.sampler_param is None
                else settings.sampler_param)
        initial = sampler_from_config("probabilistic", rate)
        if metrics is None:  # validation only: build nothing that starts threads
            return initial
        return RemoteControlledSampler(
            settings.service_name, sampling_endpoint=settings.sampling_endpoint,
            initial_sampler=initial, refresh_interval=settings.sampling_refresh_interval,
            max_operations=settings.max_operations, metrics=metrics)
    param = settings.sampler_param
    if param is None:
        param = {"const": 1.0, "probabilistic": DEFAULT_SAMPLING_PROBABILITY}.get(
            settings.sampler_type, 1.0)
    return sampler_from_config(settings.sampler_type, param)


def _build_reporter(settings: TracerSettings, metrics: Metrics) -> Any:
    from .reporting import CompositeReporter, HttpSender, LoggingReporter, Reporter, UdpSender

    if settings.endpoint:
        sender: Any = HttpSender(settings.endpoint, user=settings.user or None,
                                 password=settings.password or None)
    else:
        sender = UdpSender(settings.reporting_host, settings.reporting_port,
                           protocol=settings.reporting_protocol,
                           max_packet_size=settings.reporter_max_packet_size)
    kwargs: Dict[str, Any] = {"queue_size": settings.reporter_queue_size,
                              "flush_interval": settings.reporter_flush_interval,
                              "metrics": metrics}
    if settings.reporter_batch_size:
        kwargs["batch_size"] = settings.reporter_batch_size
    reporter = Reporter(sender, **kwargs)
    if settings.logging:
        return CompositeReporter(reporter, LoggingReporter())
    return reporter


class Config:
    """Drop-in for ``jaeger_client.Config``.

    ``Config(config={...}, service_name="svc", validate=True).initialize_tracer()``.
    """

    _lock = threading.Lock()
    _initialized_tracer: Optional[opentracing.Tracer] = None

    def __init__(self, config: Optional[Mapping[str, Any]] = None, metrics: Any = None,
                 service_name: Optional[str] = None, metrics_factory: Any = None,
                 validate: bool = False, scope_manager: Optional[ScopeManager] = None) -> None:
        if metrics is not None or metrics_factory is not None:
            logger.warning("opentracing_sls: 'metrics'/'metrics_factory' are not used; the "
                           "tracer's counters are in tracer.metrics.snapshot()")
        self.config: Dict[str, Any] = dict(config or {})
        self.settings = resolve_settings(self.config, service_name, validate)
        self.scope_manager = scope_manager

    @property
    def service_name(self) -> str:
        return self.settings.service_name

    @property
    def enabled(self) -> bool:
        return not self.settings.disabled

    @property
    def tags(self) -> Dict[str, Any]:
        return dict(self.settings.tags)

    def new_tracer(self, io_loop: Any = None) -> opentracing.Tracer:
        """A new tracer (the no-op tracer when disabled). Does not set the global tracer.

        ``io_loop`` is accepted for jaeger-client compatibility and ignored: the reporter
        runs on its own thread, not on a Tornado loop.
        """
        if self.settings.disabled:
            return opentracing.Tracer()
        metrics = Metrics()
        return self.create_tracer(_build_reporter(self.settings, metrics),
                                  _build_sampler(self.settings, metrics), metrics=metrics)

    def create_tracer(self, reporter: Any, sampler: Any, throttler: Any = None,
                      metrics: Optional[Metrics] = None) -> opentracing.Tracer:
        """A tracer from these settings with the given reporter and sampler.

        ``throttler`` is accepted for jaeger-client compatibility and ignored (debug spans
        are always allowed; the stock agent serves no ``/credits`` endpoint).
        """
        from .tracer import Tracer

        s = self.settings
        return Tracer(s.service_name, reporter, sampler, scope_manager=self.scope_manager,
                      propagation=s.propagation, tags=dict(s.tags),
                      max_tag_value_length=s.max_tag_value_length,
                      max_traceback_length=s.max_traceback_length,
                      generate_128bit_trace_id=s.generate_128bit_trace_id,
                      metrics=metrics or getattr(reporter, "metrics", None))

    def initialize_tracer(self, io_loop: Any = None) -> opentracing.Tracer:
        """Creates the process's tracer once and installs it as ``opentracing.global_tracer()``.

        A second call logs a warning and returns the tracer already installed (jaeger-client
        returned None, which crashed callers that used the result).
        """
        with Config._lock:
            if Config._initialized_tracer is not None:
                logger.warning("opentracing_sls: initialize_tracer() was already called; "
                               "returning the existing tracer")
                return Config._initialized_tracer
            tracer = self.new_tracer()
            opentracing.set_global_tracer(tracer)
            Config._initialized_tracer = tracer
            return tracer

    @classmethod
    def initialized(cls) -> bool:
        return cls._initialized_tracer is not None

    @classmethod
    def _reset_for_tests(cls) -> None:
        with cls._lock:
            cls._initialized_tracer = None
