"""OpenTracing semantic-convention tags and error logs shared by the integrations.

Tag names come from ``opentracing.ext.tags``; the error log has the fields the OpenTracing
specification lists (``event``, ``error.kind``, ``error.object``, ``message``, ``stack``),
the ones ``opentracing.Span``'s own context manager writes.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, Optional

import opentracing
from opentracing.ext import tags

ERROR = tags.ERROR
HTTP_METHOD = tags.HTTP_METHOD
HTTP_URL = tags.HTTP_URL
HTTP_STATUS_CODE = tags.HTTP_STATUS_CODE
SPAN_KIND = tags.SPAN_KIND
COMPONENT = tags.COMPONENT
PEER_HOSTNAME = tags.PEER_HOSTNAME
PEER_HOST_IPV4 = tags.PEER_HOST_IPV4
PEER_HOST_IPV6 = tags.PEER_HOST_IPV6
PEER_PORT = tags.PEER_PORT
SERVER = tags.SPAN_KIND_RPC_SERVER
CLIENT = tags.SPAN_KIND_RPC_CLIENT

_ip_kind_cache: Dict[str, Optional[str]] = {}
_IP_CACHE_MAX = 1024


def peer_address_tag(host: str) -> Optional[str]:
    """``peer.ipv4`` or ``peer.ipv6`` for an IP literal, None for a host name."""
    kind = _ip_kind_cache.get(host, "?")
    if kind != "?":
        return kind
    try:
        version = ipaddress.ip_address(host.strip("[]")).version
        kind = PEER_HOST_IPV4 if version == 4 else PEER_HOST_IPV6
    except ValueError:
        kind = None
    if len(_ip_kind_cache) < _IP_CACHE_MAX:
        _ip_kind_cache[host] = kind
    return kind


def add_peer(span_tags: Dict[str, Any], host: Optional[str], port: Any) -> None:
    """Adds ``peer.ipv4``/``peer.ipv6`` (IP literal) or ``peer.hostname``, and ``peer.port``."""
    if host:
        span_tags[peer_address_tag(host) or PEER_HOSTNAME] = host.strip("[]")
    if port:
        try:
            span_tags[PEER_PORT] = int(port)
        except (TypeError, ValueError):
            pass


def log_exception(span: opentracing.Span, exc: BaseException) -> None:
    """Tags ``error=true`` and logs the exception with its traceback."""
    span.set_tag(ERROR, True)
    span.log_kv({
        "event": "error",
        "error.kind": type(exc).__name__,
        "error.object": exc,
        "message": str(exc),
        "stack": exc.__traceback__,
    })


def log_server_error(span: opentracing.Span, status_code: int) -> None:
    """``error=true`` and an error event for a 5xx answer that came without an exception."""
    span.set_tag(ERROR, True)
    span.log_kv({"event": "error", "message": "HTTP %d" % status_code})
