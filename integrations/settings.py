"""The integrations' environment variables, in one place, and how their values are read.

Precedence is the tracer's: an explicit argument wins over the environment, which wins over
the default. A bad explicit value raises ``ValueError`` naming the option; a bad environment
value logs a warning and is ignored (the rest of the list still applies).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Callable, Iterable, List, Mapping, NamedTuple, Optional, Pattern, Tuple

logger = logging.getLogger("opentracing_sls.integrations")


class EnvVar(NamedTuple):
    name: str
    default: str
    doc: str


FLASK_EXCLUDED_PATHS = EnvVar(
    "OPENTRACING_SLS_FLASK_EXCLUDED_PATHS", "",
    "Comma-separated regular expressions; a request whose path matches one (`re.search`) "
    "gets no span. Example: `^/health$,^/metrics`.")
REQUESTS_EXCLUDED_URLS = EnvVar(
    "OPENTRACING_SLS_REQUESTS_EXCLUDED_URLS", "",
    "Comma-separated regular expressions; an outgoing `requests` call whose full URL matches "
    "one gets no span and no added headers.")
FORWARD_HEADERS = EnvVar(
    "OPENTRACING_SLS_FORWARD_HEADERS", "",
    "Extra incoming headers to forward, comma-separated, case-insensitive; `name*` matches a "
    "prefix. Added to the built-in Istio list.")
FORWARDING = EnvVar(
    "OPENTRACING_SLS_FORWARDING", "true",
    "`false` turns header forwarding off (spans and injection stay on).")
INSTRUMENT = EnvVar(
    "OPENTRACING_SLS_INSTRUMENT", "flask,requests",
    "`opentracing-sls run` only: libraries to instrument, comma-separated; `none` sets up the "
    "tracer alone.")
LOG_CORRELATION = EnvVar(
    "OPENTRACING_SLS_LOG_CORRELATION", "false",
    "`opentracing-sls run` only: `true` adds `trace_id`/`span_id` to every log record.")

ENV_VARS: Tuple[EnvVar, ...] = (FLASK_EXCLUDED_PATHS, REQUESTS_EXCLUDED_URLS, FORWARD_HEADERS,
                                FORWARDING, INSTRUMENT, LOG_CORRELATION)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_table_markdown() -> str:
    """The variables as a Markdown table (embedded in docs/integrations.md)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for var in ENV_VARS:
        lines.append("| `%s` | %s | %s |" % (var.name, "`%s`" % var.default if var.default
                                             else "(none)", var.doc))
    return "\n".join(lines)


def split_list(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _environ(environ: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def patterns(option: str, explicit: Optional[Iterable[Any]], var: EnvVar,
             environ: Optional[Mapping[str, str]] = None) -> Tuple[Pattern[str], ...]:
    """Compiled regular expressions from ``explicit`` (strings or compiled) or ``var``."""
    if explicit is not None:
        if isinstance(explicit, (str, bytes)):
            explicit = [explicit] if isinstance(explicit, str) else None
            if explicit is None:
                raise ValueError("%s: must be a list of regular expressions" % option)
        compiled = []
        for item in explicit:
            if isinstance(item, re.Pattern):
                compiled.append(item)
                continue
            try:
                compiled.append(re.compile(item))
            except (re.error, TypeError) as exc:
                raise ValueError("%s: invalid regular expression %r (%s)"
                                 % (option, item, exc)) from None
        return tuple(compiled)
    compiled = []
    for item in split_list(_environ(environ).get(var.name, var.default)):
        try:
            compiled.append(re.compile(item))
        except re.error as exc:
            logger.warning("opentracing_sls.integrations: ignoring %r in %s (%s)", item,
                           var.name, exc)
    return tuple(compiled)


def boolean(option: str, explicit: Optional[bool], var: EnvVar,
            environ: Optional[Mapping[str, str]] = None) -> bool:
    if explicit is not None:
        if not isinstance(explicit, bool):
            raise ValueError("%s: must be True or False (got %r)" % (option, explicit))
        return explicit
    text = _environ(environ).get(var.name, "").strip().lower()
    if not text:
        return var.default == "true"
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    logger.warning("opentracing_sls.integrations: ignoring %s=%r (not a boolean); using %s",
                   var.name, text, var.default)
    return var.default == "true"


def names(option: str, explicit: Optional[Iterable[str]], var: EnvVar,
          environ: Optional[Mapping[str, str]] = None) -> Tuple[str, ...]:
    """Lower-case header names (``name*`` kept as a prefix pattern)."""
    if explicit is not None:
        if isinstance(explicit, str):
            explicit = split_list(explicit)
        out = []
        for item in explicit:
            if not isinstance(item, str) or not _is_header_name(item.rstrip("*")):
                raise ValueError("%s: %r is not a header name" % (option, item))
            out.append(item.strip().lower())
        return tuple(out)
    out = []
    for item in split_list(_environ(environ).get(var.name, var.default)):
        if _is_header_name(item.rstrip("*")):
            out.append(item.lower())
        else:
            logger.warning("opentracing_sls.integrations: ignoring %r in %s (not a header "
                           "name)", item, var.name)
    return tuple(out)


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _is_header_name(text: str) -> bool:
    return bool(_TOKEN.match(text.strip()))


def hook(option: str, value: Optional[Callable[..., Any]]) -> Optional[Callable[..., Any]]:
    if value is not None and not callable(value):
        raise ValueError("%s: must be callable (got %r)" % (option, value))
    return value
