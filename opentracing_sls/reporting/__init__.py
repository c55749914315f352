"""Reporting: from finished span records to Jaeger Thrift on the wire.

``Reporter`` (batching, background thread) sends through a ``UdpSender`` (jaeger-agent,
6831 compact / 6832 binary) or an ``HttpSender`` (jaeger-collector ``/api/traces``);
``NullReporter``, ``InMemoryReporter``, ``LoggingReporter`` and ``CompositeReporter`` are
the simple, synchronous ones.
"""

from .basic import (
    BaseReporter,
    CompositeReporter,
    InMemoryReporter,
    LoggingReporter,
    NullReporter,
)
from .reporter import Reporter
from .senders import HttpSender, Sender, UdpSender

__all__ = [
    "BaseReporter",
    "CompositeReporter",
    "HttpSender",
    "InMemoryReporter",
    "LoggingReporter",
    "NullReporter",
    "Reporter",
    "Sender",
    "UdpSender",
]
