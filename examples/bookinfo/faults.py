"""Fault knobs, as Istio's fault-injection tasks use them, for running without Envoy.

In a mesh the faults live in a VirtualService (``fault.delay.fixedDelay: 7s`` and
``fault.abort.httpStatus: 500`` on ratings, matched on ``end-user: jason``) and Envoy applies
them before the request reaches the application. Here each service applies the same knobs
itself, in a ``before_request`` hook, so the demo and the tests can inject them on a laptop:

- from the environment at start: ``FAULT_DELAY`` (seconds, ``7``, ``7s`` or ``500ms``),
  ``FAULT_DELAY_PERCENT``, ``FAULT_ABORT`` (an HTTP status), ``FAULT_ABORT_PERCENT``,
  ``FAULT_END_USER`` (only requests whose ``end-user`` header has this value);
- at run time: ``GET``/``PUT``/``DELETE /admin/faults`` with the same fields in JSON
  (``delay``, ``delay_percent``, ``abort``, ``abort_percent``, ``end_user``).

An abort answers like Envoy's fault filter (``fault filter abort``, text/plain). ``/health``
and ``/admin/*`` are never faulted: Kubernetes probes do not go through the fault either.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Mapping, Optional

from flask import Flask, Response, jsonify, request

logger = logging.getLogger("bookinfo.faults")

ADMIN_PATH = "/admin/faults"
_EXEMPT_PREFIXES = ("/health", "/admin/")
ENV = {"delay": "FAULT_DELAY", "delay_percent": "FAULT_DELAY_PERCENT", "abort": "FAULT_ABORT",
       "abort_percent": "FAULT_ABORT_PERCENT", "end_user": "FAULT_END_USER"}


@dataclass(frozen=True)
class Faults:
    """What to do to each matching request. All zero: nothing."""

    delay: float = 0.0            # seconds
    delay_percent: float = 100.0
    abort: int = 0                # HTTP status; 0 = no abort
    abort_percent: float = 100.0
    end_user: str = ""            # empty: every request matches

    def matches(self, end_user: Optional[str]) -> bool:
        return not self.end_user or end_user == self.end_user

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


def parse_seconds(text: str) -> float:
    """``7``, ``7s``, ``1.5s`` or ``500ms`` in seconds; ValueError otherwise."""
    text = str(text).strip().lower()
    if text.endswith("ms"):
        value = float(text[:-2]) / 1000
    else:
        value = float(text[:-1] if text.endswith("s") else text)
    if value < 0 or value != value:
        raise ValueError("a delay must be a number of seconds >= 0, got %r" % text)
    return value


def _percent(value: Any) -> float:
    number = float(value)
    if not 0 <= number <= 100:
        raise ValueError("a percentage must be from 0 to 100, got %r" % value)
    return number


def _status(value: Any) -> int:
    number = int(value)
    if number != 0 and not 200 <= number <= 599:
        raise ValueError("abort must be an HTTP status from 200 to 599 (0: none), got %r" % value)
    return number


_PARSERS = {"delay": parse_seconds, "delay_percent": _percent, "abort": _status,
            "abort_percent": _percent, "end_user": lambda value: str(value or "")}


def updated(faults: Faults, changes: Mapping[str, Any]) -> Faults:
    """``faults`` with ``changes`` applied; ValueError naming the bad or unknown field."""
    values: Dict[str, Any] = {}
    for key, raw in changes.items():
        parser = _PARSERS.get(key)
        if parser is None:
            raise ValueError("unknown fault field %r; known: %s" % (key, ", ".join(_PARSERS)))
        try:
            values[key] = parser(raw)
        except (TypeError, ValueError) as exc:
            raise ValueError("%s: %s" % (key, exc)) from None
    return replace(faults, **values)


def from_environ(environ: Optional[Mapping[str, str]] = None) -> Faults:
    """The knobs set in the environment. A bad value is logged and ignored: a typo in a
    fault setting should not keep the service from starting."""
    env = os.environ if environ is None else environ
    faults = Faults()
    for key, name in ENV.items():
        if env.get(name, "").strip():
            try:
                faults = updated(faults, {key: env[name]})
            except ValueError as exc:
                logger.warning("ignoring %s: %s", name, exc)
    return faults


class FaultInjector:
    """Holds the current knobs of one app and applies them to its requests."""

    def __init__(self, faults: Faults, sleep: Any = time.sleep) -> None:
        self._faults = faults
        self._lock = threading.Lock()
        self._sleep = sleep

    @property
    def faults(self) -> Faults:
        return self._faults

    def set(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults

    def before_request(self) -> Optional[Response]:
        path = request.path
        if path.startswith(_EXEMPT_PREFIXES):
            return None
        faults = self._faults
        if not faults.matches(request.headers.get("end-user")):
            return None
        if faults.delay and random.random() * 100 < faults.delay_percent:
            self._sleep(faults.delay)
        if faults.abort and random.random() * 100 < faults.abort_percent:
            return Response("fault filter abort", status=faults.abort, mimetype="text/plain")
        return None


def install(app: Flask, environ: Optional[Mapping[str, str]] = None) -> FaultInjector:
    """Adds the knobs (from the environment) and the ``/admin/faults`` endpoint to ``app``."""
    injector = FaultInjector(from_environ(environ))
    app.before_request(injector.before_request)

    def admin() -> Any:
        if request.method == "DELETE":
            injector.set(Faults())
        elif request.method == "PUT":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return jsonify(error="expected a JSON object of fault fields"), 400
            try:
                injector.set(updated(injector.faults, body))
            except ValueError as exc:
                return jsonify(error=str(exc)), 400
        return jsonify(injector.faults.to_json())

    app.add_url_rule(ADMIN_PATH, "admin_faults", admin, methods=["GET", "PUT", "DELETE"])
    app.extensions["bookinfo.faults"] = injector
    return injector
