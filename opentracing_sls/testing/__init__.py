"""Public test doubles: a tracer that keeps finished spans in memory.

Example::

    tracer = make_test_tracer()
    with tracer.start_active_span("work"):
        ...
    [record] = tracer.reporter.get_spans()
"""

from __future__ import annotations

from typing import Any, Optional

from opentracing import ScopeManager

from ..reporting import InMemoryReporter
from ..sampling import ConstSampler, Sampler
from ..tracer import Tracer

__all__ = ["InMemoryReporter", "make_test_tracer"]


def make_test_tracer(service_name: str = "test-service", sampler: Optional[Sampler] = None,
                     scope_manager: Optional[ScopeManager] = None, **kwargs: Any) -> Tracer:
    """A tracer that samples everything and records finished spans in ``tracer.reporter``.

    Extra keyword arguments go to :class:`~opentracing_sls.Tracer` (``propagation``,
    ``generate_128bit_trace_id``, ``max_tag_value_length`` ...).
    """
    return Tracer(service_name, InMemoryReporter(), sampler or ConstSampler(True),
                  scope_manager=scope_manager, **kwargs)
