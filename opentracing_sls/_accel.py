"""The optional C extensions: whether to use them, and loading them once, configured.

Each C module has a pure-Python twin with the same behaviour; the C one is used when it was
built (``setup.py`` builds them where a compiler exists) unless ``OPENTRACING_SLS_PURE_PYTHON``
is set to anything but ``""`` or ``"0"``.
"""

from __future__ import annotations

import functools
import importlib
import os
import time
from types import ModuleType
from typing import Optional

import opentracing

from .constants import EMPTY_BAGGAGE

PURE_PYTHON_ENV = "OPENTRACING_SLS_PURE_PYTHON"


def pure_python() -> bool:
    """True when the environment asks for the pure-Python code paths."""
    return os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")


def load(name: str) -> Optional[ModuleType]:
    """``opentracing_sls.<name>`` if it was built and is wanted, else None."""
    if pure_python():
        return None
    try:
        return importlib.import_module("opentracing_sls." + name)
    except ImportError:
        return None


@functools.cache
def cspan() -> Optional[ModuleType]:
    """The C span cores (``_cspan``), handed the Python objects they build on; or None."""
    module = load("_cspan")
    if module is not None:
        from .record import SpanRecord

        speedups = load("_speedups")
        module.configure(record_type=SpanRecord, empty_baggage=EMPTY_BAGGAGE,
                         on_error=opentracing.Span._on_error, time=time.time,
                         report_api=getattr(speedups, "_report_api", None))
    return module


@functools.cache
def cprop() -> Optional[ModuleType]:
    """The C fast path of text propagation (``_cprop``), handed the classes it reads and
    builds; or None."""
    module = load("_cprop")
    if module is not None:
        from .propagation.b3 import B3Codec
        from .propagation.jaeger import JaegerCodec
        from .propagation.w3c import W3CCodec
        from .span_context import SpanContext

        module.configure(context_type=SpanContext, b3_type=B3Codec, w3c_type=W3CCodec,
                         jaeger_type=JaegerCodec,
                         context_api=getattr(cspan(), "_context_api", None))
    return module
