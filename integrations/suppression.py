"""When the integrations must stay out of the way: our own traffic and explicit opt-outs.

Tracing the HTTP calls that deliver spans or poll sampling strategies would create spans
about spans (and, inside Istio, sidecar spans about them). The tracer's reporter and
sampler use the standard library, not ``requests``, but a later change or a user's custom
sender could; so the requests integration also skips every call made while
:func:`suppress_instrumentation` is active or from one of our own background threads
(the tracer's reporter and sampler, the shim's sinks and HTTP server, whose SLS sink
speaks HTTP through ``requests``).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Iterator

_suppressed: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "opentracing_sls_integrations_suppressed", default=False)

#: Name prefixes of the threads our tracer and shim start (reporting/reporter.py,
#: sampling/remote.py, shim/sinks.py, shim/server.py).
OWN_THREAD_PREFIXES = ("opentracing-sls-", "shim-sink-", "shim-http")

_current_thread = threading.current_thread


@contextlib.contextmanager
def suppress_instrumentation() -> Iterator[None]:
    """Within this block (and tasks started from it), the integrations create no spans and
    add no headers; calls go straight to the library.
    """
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)


_thread_state = threading.local()


def is_suppressed() -> bool:
    """True inside :func:`suppress_instrumentation` or on one of our own threads."""
    if _suppressed.get():
        return True
    # Decided once per thread: our threads are named when they are created.
    own = getattr(_thread_state, "own", None)
    if own is None:
        own = own_thread()
    return own


def own_thread() -> bool:
    """True on one of our own background threads (by name; remembered per thread)."""
    own = _thread_state.own = _current_thread().name.startswith(OWN_THREAD_PREFIXES)
    return own


#: True inside :func:`suppress_instrumentation` (server side: our own threads serve no
#: requests, so the thread-name check is not needed there).
suppressed_in_context = _suppressed.get
