"""Counters and rate-limited logs for everything the integrations catch instead of raising.

Instrumentation must never break the application, so every failure inside our own code is
swallowed; this module is where those failures become visible: a named counter per kind
(:func:`snapshot`) and one warning with the traceback the first time a kind occurs, then at
most one a minute with the number of occurrences not logged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Dict

logger = logging.getLogger("opentracing_sls.integrations")

#: Seconds between two warnings of the same kind.
LOG_INTERVAL = 60.0

_lock = threading.Lock()
_counters: Dict[str, int] = {}
_last_logged: Dict[str, float] = {}
_unlogged: Dict[str, int] = {}


def _after_fork_in_child() -> None:
    # Another thread may have held the lock at fork(): the child would wait for it forever.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def count(name: str, value: int = 1) -> None:
    """Adds ``value`` to the counter ``name``."""
    with _lock:
        _counters[name] = _counters.get(name, 0) + value


def snapshot() -> Dict[str, int]:
    """Every counter so far, by name (``integrations.flask.errors`` ...)."""
    with _lock:
        return dict(_counters)


def reset_for_tests() -> None:
    with _lock:
        _counters.clear()
        _last_logged.clear()
        _unlogged.clear()


def internal_error(counter: str, what: str, exc_info: Any = True) -> None:
    """Counts an error caught in our code and logs it, rate-limited per ``counter``.

    Call it from an ``except`` block: the traceback is logged with the message (or pass
    the exception as ``exc_info``). It never raises, whatever the logging configuration does.
    """
    try:
        count(counter)
        now = time.monotonic()
        with _lock:
            last = _last_logged.get(counter)
            if last is not None and now - last < LOG_INTERVAL:
                _unlogged[counter] = _unlogged.get(counter, 0) + 1
                return
            _last_logged[counter] = now
            skipped = _unlogged.pop(counter, 0)
        suffix = " (%d more since the last report)" % skipped if skipped else ""
        logger.warning("opentracing_sls.integrations: %s failed; the application is "
                       "unaffected [%s]%s", what, counter, suffix, exc_info=exc_info)
    except Exception:  # noqa: BLE001 - a broken log handler must not reach the app either
        pass
