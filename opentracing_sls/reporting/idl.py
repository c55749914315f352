"""The Jaeger Thrift schema, loaded with thriftpy2 from the ``idl/*.thrift`` package data.

Exposes four modules, each loaded on first access (parsing costs a few milliseconds, and
the tracer's hot path never needs them: it uses the hand-written encoders)::

    from opentracing_sls.reporting.idl import agent, jaeger
    jaeger.Span, jaeger.Batch, agent.Agent.emitBatch_args, ...

- ``jaeger``: the span model (``Tag``, ``Log``, ``SpanRef``, ``Span``, ``Process``,
  ``ClientStats``, ``Batch``) and ``service Collector``;
- ``agent``: ``service Agent`` with the oneway ``emitBatch`` / ``emitZipkinBatch``;
- ``sampling``: the sampling strategy structs and ``service SamplingManager``;
- ``zipkincore``: the Zipkin v1 model used by ``emitZipkinBatch``.

``agent.jaeger`` and ``agent.zipkincore`` are the very same module objects as ``jaeger``
and ``zipkincore``, so decoded structs have one class per Thrift type.
"""

from __future__ import annotations

import os
import threading
import types
from typing import Dict

import thriftpy2

__all__ = ["IDL_DIR", "agent", "jaeger", "sampling", "zipkincore"]

#: Directory of the ``.thrift`` files (installed as package data next to this module).
IDL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "idl")

# thriftpy2 names an included file's module "<includer's prefix><file>_thrift" and caches
# modules by name, so with one shared prefix the modules loaded here and the ones agent.thrift
# includes are the same objects. The prefix also keeps clear of other users of thriftpy2
# (sys.modules is global, and thriftpy2 refuses two files under one module name).
_MODULE_PREFIX = "opentracing_sls_"
# Includes must be loaded before their includers for the cache sharing described above.
_FILES = ("jaeger", "zipkincore", "agent", "sampling")

# Declared for type checkers and linters; the values come from __getattr__ below.
jaeger: types.ModuleType
agent: types.ModuleType
sampling: types.ModuleType
zipkincore: types.ModuleType

_lock = threading.Lock()
_loaded: Dict[str, types.ModuleType] = {}


def _load(name: str) -> types.ModuleType:
    with _lock:
        if not _loaded:
            modules = {
                file_name: thriftpy2.load(
                    os.path.join(IDL_DIR, file_name + ".thrift"),
                    module_name=_MODULE_PREFIX + file_name + "_thrift",
                    include_dirs=[IDL_DIR],
                )
                for file_name in _FILES
            }
            # Each include renames the shared module to the bare file name; restore the name
            # it is registered under in sys.modules.
            for file_name, module in modules.items():
                module.__name__ = _MODULE_PREFIX + file_name + "_thrift"
            _loaded.update(modules)
        return _loaded[name]


def __getattr__(name: str) -> types.ModuleType:
    # PEP 562 module attribute hook: load the schema on first use only.
    if name in _FILES:
        return _load(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + list(_FILES))
