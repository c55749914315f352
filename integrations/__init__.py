"""Auto-instrumentation for Flask and requests, Istio header forwarding, log correlation.

Everything here uses the OpenTracing API only (``opentracing.global_tracer()`` at call
time, unless a tracer is passed), so it works with any OpenTracing 2.x tracer::

    from opentracing_sls import integrations

    integrations.instrument()            # Flask and requests, whichever are installed
    ...
    integrations.uninstrument()

Per library: ``integrations.flask.instrument(excluded_paths=[...], request_hook=...)`` and
``integrations.requests.instrument(...)``. Without code changes: ``opentracing-sls run
python app.py`` (see docs/integrations.md).
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Iterable, List, Optional

from .diagnostics import snapshot as metrics
from .forwarding import ISTIO_HEADERS, carry
from .log_correlation import TraceContextFilter, disable_log_correlation, enable_log_correlation
from .suppression import suppress_instrumentation

#: Libraries :func:`instrument` knows, by name.
LIBRARIES = ("flask", "requests")

__all__ = [
    "ISTIO_HEADERS",
    "LIBRARIES",
    "TraceContextFilter",
    "carry",
    "disable_log_correlation",
    "enable_log_correlation",
    "instrument",
    "metrics",
    "suppress_instrumentation",
    "uninstrument",
]


def _module(library: str) -> Any:
    if library not in LIBRARIES:
        raise ValueError("unknown library %r; known: %s" % (library, ", ".join(LIBRARIES)))
    return importlib.import_module("%s.%s" % (__name__, library))


def instrument(libraries: Optional[Iterable[str]] = None,
               options: Optional[Dict[str, Dict[str, Any]]] = None) -> List[str]:
    """Instruments ``libraries`` (default: all of :data:`LIBRARIES`) and returns those that
    are installed (now patched, or patched when first imported). Idempotent.

    ``options`` maps a library name to the keyword arguments of its own ``instrument``,
    e.g. ``{"flask": {"excluded_paths": ["^/health$"]}}``.
    """
    names = list(LIBRARIES if libraries is None else libraries)
    options = options or {}
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError("options given for libraries not instrumented: %s" % unknown)
    modules = [(name, _module(name)) for name in names]
    return [name for name, module in modules if module.instrument(**options.get(name, {}))]


def uninstrument(libraries: Optional[Iterable[str]] = None) -> List[str]:
    """Undoes :func:`instrument` for ``libraries`` (default: all); returns those that were
    instrumented. Idempotent."""
    names = list(LIBRARIES if libraries is None else libraries)
    return [name for name in names if _module(name).uninstrument()]
