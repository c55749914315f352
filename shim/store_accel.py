"""The optional C accelerator of the store's write path, and the switch that turns it off.

``_cstore.c`` (built by ``pip install`` when a C compiler is there) does two things:

- ``Preparer``: the per-span loop of :class:`~.store_write.SpanWriter` (rows, index terms,
  JSON body, dedupe keys), giving byte for byte what the Python loop gives and leaving every
  span it does not handle (odd types, out-of-range values) to that loop;
- :func:`untrack`: takes decoded spans out of the cyclic garbage collector's view. They are
  trees of tuples of strings and numbers, which cannot form cycles, but while a sink queue
  holds tens of thousands of them every collection walks them all: measured, that was over a
  third of the shim's CPU time per span.

``OPENTRACING_SLS_PURE_PYTHON=1`` (the switch of the decoders and the tracer's encoder too)
makes both pure Python; :data:`STORE_BACKEND` says which one runs.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

try:
    from . import _cstore
except ImportError:  # not built (no compiler): everything is done in Python
    _cstore = None  # type: ignore[assignment]


def _backend() -> str:
    if os.environ.get("OPENTRACING_SLS_PURE_PYTHON", "") not in ("", "0"):
        return "python"
    return "c" if _cstore is not None else "python"


#: ``"c"`` or ``"python"``: how the local store prepares rows.
STORE_BACKEND = _backend()

#: The C ``Preparer`` class, or None when the Python loop does everything (tests switch it).
PREPARER: Optional[Any] = _cstore.Preparer if STORE_BACKEND == "c" else None

_untrack = _cstore.untrack if STORE_BACKEND == "c" else None


def untrack(spans: List[Any]) -> None:
    """Takes decoded spans out of the garbage collector's view (C only; a no-op otherwise).

    A span that holds anything but tuples, strings and numbers stays tracked.
    """
    if _untrack is not None:
        _untrack(spans)
