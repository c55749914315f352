"""Sampling strategies served on the sampling port, from a Jaeger-style strategies file.

File format (as jaeger-agent/collector's ``--sampling.strategies-file``)::

    {"default_strategy": {"type": "probabilistic", "param": 0.5},
     "service_strategies": [
        {"service": "productpage", "type": "probabilistic", "param": 1.0,
         "operation_strategies": [{"operation": "/health", "type": "probabilistic",
                                   "param": 0.0}]},
        {"service": "reviews", "type": "ratelimiting", "param": 5}]}

``GET /sampling?service=`` answers proto-JSON with string enums; ``GET /?service=`` the legacy
Thrift-JSON with integer enums (``shared/reference/jaeger-wire.md`` section 6).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Tuple


class StrategyError(ValueError):
    """The strategies file is invalid; the message names the entry and the rule."""


def _strategy(entry: Any, where: str) -> Dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise StrategyError("%s: must be an object with type and param" % where)
    kind = str(entry.get("type", "")).lower()
    param = entry.get("param")
    if isinstance(param, bool) or not isinstance(param, (int, float)):
        raise StrategyError("%s: param must be a number" % where)
    if kind == "probabilistic":
        if not 0.0 <= param <= 1.0:
            raise StrategyError("%s: a probabilistic param must be from 0 to 1" % where)
        response: Dict[str, Any] = {"strategyType": "PROBABILISTIC",
                                    "probabilisticSampling": {"samplingRate": float(param)}}
    elif kind in ("ratelimiting", "rate_limiting"):
        if not 0 <= param <= 32767:
            raise StrategyError("%s: a ratelimiting param must be from 0 to 32767 traces/s"
                                % where)
        response = {"strategyType": "RATE_LIMITING",
                    "rateLimitingSampling": {"maxTracesPerSecond": int(param)}}
    else:
        raise StrategyError("%s: type must be probabilistic or ratelimiting, got %r"
                            % (where, entry.get("type")))
    operations = entry.get("operation_strategies") or []
    if operations:
        if not isinstance(operations, list):
            raise StrategyError("%s: operation_strategies must be a list" % where)
        per_op: List[Dict[str, Any]] = []
        for i, op in enumerate(operations):
            op_where = "%s.operation_strategies[%d]" % (where, i)
            if not isinstance(op, Mapping) or not isinstance(op.get("operation"), str):
                raise StrategyError("%s: needs an operation name" % op_where)
            op_strategy = _strategy(op, op_where)
            if op_strategy["strategyType"] != "PROBABILISTIC":
                raise StrategyError("%s: per-operation strategies must be probabilistic"
                                    % op_where)
            per_op.append({"operation": op["operation"],
                           "probabilisticSampling": op_strategy["probabilisticSampling"]})
        default_rate = (response["probabilisticSampling"]["samplingRate"]
                        if kind == "probabilistic" else 0.001)
        response["operationSampling"] = {
            "defaultSamplingProbability": default_rate,
            "defaultLowerBoundTracesPerSecond": 0.0,
            "perOperationStrategies": per_op,
        }
    return response


class Strategies:
    """Per-service strategies with a default."""

    def __init__(self, default_probability: float = 0.001,
                 document: Optional[Mapping[str, Any]] = None) -> None:
        self.default = _strategy({"type": "probabilistic", "param": default_probability},
                                 "sampling.default_probability")
        self.services: Dict[str, Dict[str, Any]] = {}
        if document is not None:
            self._load(document)

    @classmethod
    def from_file(cls, path: str, default_probability: float = 0.001) -> Strategies:
        try:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
        except OSError as exc:
            raise StrategyError("%s: cannot read: %s" % (path, exc.strerror)) from None
        except ValueError as exc:
            raise StrategyError("%s: not valid JSON: %s" % (path, exc)) from None
        return cls(default_probability, document)

    def _load(self, document: Mapping[str, Any]) -> None:
        if not isinstance(document, Mapping):
            raise StrategyError("strategies file: the top level must be an object")
        if document.get("default_strategy") is not None:
            self.default = _strategy(document["default_strategy"], "default_strategy")
        entries = document.get("service_strategies") or []
        if not isinstance(entries, list):
            raise StrategyError("service_strategies: must be a list")
        for i, entry in enumerate(entries):
            where = "service_strategies[%d]" % i
            if not isinstance(entry, Mapping) or not isinstance(entry.get("service"), str):
                raise StrategyError("%s: needs a service name" % where)
            self.services[entry["service"]] = _strategy(entry, where)

    def for_service(self, service: str) -> Dict[str, Any]:
        return self.services.get(service, self.default)


def legacy_form(response: Mapping[str, Any]) -> Dict[str, Any]:
    """The Thrift-JSON form old clients poll at ``/``: integer enums."""
    out = dict(response)
    out["strategyType"] = 0 if response["strategyType"] == "PROBABILISTIC" else 1
    return out


def answer(strategies: Strategies, services: List[str], legacy: bool) -> Tuple[int, str]:
    """(HTTP status, JSON body) for a request with the given ``service`` parameter values."""
    if len(services) != 1:
        return 400, "'service' parameter must be provided once"
    response = strategies.for_service(services[0])
    return 200, json.dumps(legacy_form(response) if legacy else response)
