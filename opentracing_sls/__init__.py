"""opentracing-sls: an OpenTracing 2.x tracer for Istio and Alibaba Cloud Log Service.

A drop-in replacement for the deprecated ``jaeger-client``::

    from opentracing_sls import Config

    tracer = Config(config={"sampler": {"type": "const", "param": 1}},
                    service_name="productpage").initialize_tracer()
"""

from .config import Config, TracerSettings
from .record import SpanRecord
from .scope_managers import ContextVarsScopeManager, ThreadLocalScopeManager
from .span import Span
from .span_context import SpanContext
from .tracer import Tracer

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ContextVarsScopeManager",
    "Span",
    "SpanContext",
    "SpanRecord",
    "ThreadLocalScopeManager",
    "Tracer",
    "TracerSettings",
    "__version__",
]
