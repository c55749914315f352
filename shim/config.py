"""Shim configuration: defaults < YAML file (``--config``) < environment < command-line flags.

Every key is dotted (``listen.compact_port``); the flag is the key (``--listen.compact_port``),
the environment variable is ``OPENTRACING_SLS_`` + the key in upper case with dots as
underscores (``OPENTRACING_SLS_LISTEN_COMPACT_PORT``); the YAML file may nest the key
(``listen: {compact_port: 6831}``) or spell it dotted. A bad key or value stops start-up with
a message naming the key, where it came from, and the rule.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from . import sls_config

ENV_PREFIX = "OPENTRACING_SLS_"
STORAGE_TYPES = ("local", "jaeger_agent", "aliyun_sls")
PLANNED_STORAGE_TYPES: Tuple[str, ...] = ()


class ConfigError(ValueError):
    """A configuration problem; the message names the key, its source and the rule."""


def _port(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a port number from 0 to 65535 (0 disables)")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError("must be a port number from 0 to 65535 (0 disables)") from None
    if not 0 <= number <= 65535:
        raise ValueError("must be a port number from 0 to 65535 (0 disables)")
    return number


def _positive_int(value: Any) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError("must be a positive integer") from None
    if number <= 0 or isinstance(value, bool):
        raise ValueError("must be a positive integer")
    return number


def _probability(value: Any) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError("must be a number from 0 to 1") from None
    if not 0.0 <= number <= 1.0:
        raise ValueError("must be a number from 0 to 1")
    return number


def _text(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError("must be a string")
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _optional_text(value: Any) -> str:
    return "" if value is None or str(value).strip() == "" else _text(value)


def _hosts(value: Any) -> Tuple[str, ...]:
    parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
    hosts = tuple(str(p).strip() for p in parts if str(p).strip())
    if not hosts:
        raise ValueError("must name at least one address (localhost, 0.0.0.0, ::, an IP)")
    return hosts


def _storage_types(value: Any) -> Tuple[str, ...]:
    parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = tuple(dict.fromkeys(str(p).strip().lower() for p in parts if str(p).strip()))
    if not names:
        raise ValueError("must name at least one of %s" % ", ".join(STORAGE_TYPES))
    for name in names:
        if name in PLANNED_STORAGE_TYPES:
            raise ValueError("%r is not available in this version; use %s"
                             % (name, ", ".join(STORAGE_TYPES)))
        if name not in STORAGE_TYPES:
            raise ValueError("unknown type %r; allowed: %s" % (name, ", ".join(STORAGE_TYPES)))
    return names


def _host_port(value: Any) -> str:
    text = _optional_text(value)
    if not text:
        return ""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("must be host:port, e.g. jaeger-agent:6831")
    try:
        number = int(port)
    except ValueError:
        raise ValueError("must be host:port with a numeric port") from None
    if not 1 <= number <= 65535:
        raise ValueError("must be host:port with a port from 1 to 65535")
    return text


class Key(NamedTuple):
    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str
    secret: bool = False  # never echoed: errors say "(got ***)", --check-config shows ***

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.name.upper().replace(".", "_")


KEYS: Tuple[Key, ...] = (
    Key("listen.host", ("localhost",), _hosts,
        "addresses to bind, comma-separated; localhost binds 127.0.0.1 and ::1; use 0.0.0.0 "
        "for a DaemonSet (:: alone binds the HTTP ports to IPv6 only)"),
    Key("listen.compact_port", 6831, _port, "UDP, Jaeger Thrift compact emitBatch"),
    Key("listen.binary_port", 6832, _port, "UDP, Jaeger Thrift binary emitBatch"),
    Key("listen.http_port", 14268, _port, "HTTP, POST /api/traces with a binary Thrift Batch"),
    Key("listen.zipkin_port", 9411, _port, "HTTP, POST /api/v1/spans and /api/v2/spans (JSON)"),
    Key("listen.sampling_port", 5778, _port, "HTTP, GET /sampling?service= strategies"),
    Key("listen.admin_port", 14271, _port, "HTTP, /metrics (Prometheus) and /healthz"),
    Key("listen.query_port", 16686, _port,
        "HTTP, the Jaeger query API (/api/...) and the web UI (/) over the stored spans"),
    Key("storage.type", ("local",), _storage_types,
        "sinks, comma-separated: local, jaeger_agent, aliyun_sls (several = fan-out)"),
    Key("storage.local.path", "./spans.db", _text, "SQLite file of the local store"),
    Key("storage.jaeger_agent.host_port", "", _host_port,
        "jaeger-agent to forward to as compact UDP (required with storage.type jaeger_agent)"),
    Key("sampling.strategies_file", "", _optional_text,
        "Jaeger strategies JSON file (service and per-operation strategies)"),
    Key("sampling.default_probability", 0.001, _probability,
        "probability served to services the strategies file does not name"),
    Key("queue.max_spans", 100000, _positive_int,
        "spans each sink may hold before new spans are dropped and counted"),
    Key("limits.max_body_bytes", 4 * 1024 * 1024, _positive_int,
        "largest accepted HTTP request body, after gzip decompression"),
    Key("workers", 1, _positive_int,
        "receiving processes sharing the UDP ports (SO_REUSEPORT)"),
) + tuple(Key(*spec) for spec in sls_config.KEY_SPECS)  # storage.aliyun_sls.*, spool.*
KEYS_BY_NAME: Dict[str, Key] = {key.name: key for key in KEYS}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"listen": {"host": x}}`` -> ``{"listen.host": x}``; dotted keys pass through."""
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        name = prefix + str(key)
        if isinstance(value, Mapping) and name not in KEYS_BY_NAME:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def load_file(path: str) -> Dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            tree = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError("--config %s: cannot read the file: %s" % (path, exc.strerror)) from None
    except yaml.YAMLError as exc:
        raise ConfigError("--config %s: not valid YAML: %s" % (path, exc)) from None
    if tree is None:
        return {}
    if not isinstance(tree, Mapping):
        raise ConfigError("--config %s: the top level must be a mapping of keys" % path)
    return flatten(tree)


class ShimConfig(Dict[str, Any]):
    """Resolved settings, by dotted key."""

    def describe(self) -> List[str]:
        return ["%s = %r" % (name, self[name]) for name in sorted(self)]


def resolve(flags: Optional[Mapping[str, Any]] = None, environ: Optional[Mapping[str, str]] = None,
            file_path: Optional[str] = None) -> ShimConfig:
    """Resolves and validates every key; raises :class:`ConfigError` naming the key."""
    environ = os.environ if environ is None else environ
    sources: List[Tuple[str, Dict[str, Any]]] = []
    if file_path:
        sources.append(("file %s" % file_path, load_file(file_path)))
    sources.append(("environment", {
        key.name: environ[key.env_name] for key in KEYS if key.env_name in environ}))
    sources.append(("command line", {k: v for k, v in (flags or {}).items() if v is not None}))
    config = ShimConfig()
    for key in KEYS:
        config[key.name] = key.default
    for source, values in sources:
        for name, raw in values.items():
            key = KEYS_BY_NAME.get(name)
            if key is None:
                raise ConfigError("unknown config key %r (from %s); valid keys: %s"
                                  % (name, source, ", ".join(sorted(KEYS_BY_NAME))))
            try:
                config[name] = key.parse(raw)
            except ValueError as exc:
                where = ("--" + name) if source == "command line" else (
                    key.env_name if source == "environment" else source)
                raise ConfigError("config key %r (%s): %s (got %s)"
                                  % (name, where, exc, "***" if key.secret else repr(raw))
                                  ) from None
    if "jaeger_agent" in config["storage.type"] and not config["storage.jaeger_agent.host_port"]:
        raise ConfigError("config key 'storage.jaeger_agent.host_port': required when "
                          "storage.type includes jaeger_agent")
    path = config["sampling.strategies_file"]
    if path and not os.path.isfile(path):
        raise ConfigError("config key 'sampling.strategies_file': no such file %r" % path)
    problem = sls_config.check(config)
    if problem:
        raise ConfigError("config key %r: %s" % problem)
    return config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per key, named after it, with the default and env var in the help."""
    parser.add_argument("--config", metavar="FILE", help="YAML file with any of the keys below")
    for key in KEYS:
        default = key.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        parser.add_argument("--" + key.name, dest=key.name, default=None, metavar="VALUE",
                            help="%s (default: %s; env %s)" % (key.help, shown if shown != ""
                                                              else "unset", key.env_name))


def flags_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    return {key.name: getattr(args, key.name, None) for key in KEYS}
