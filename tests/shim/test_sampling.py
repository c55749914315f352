"""Strategies file parsing and the answers of the sampling endpoint."""

from __future__ import annotations

import json

import pytest

from opentracing_sls.sampling import parse_strategy
from opentracing_sls.shim.sampling import Strategies, StrategyError, answer

DOCUMENT = {
    "default_strategy": {"type": "probabilistic", "param": 0.25},
    "service_strategies": [
        {"service": "productpage", "type": "probabilistic", "param": 1.0,
         "operation_strategies": [{"operation": "/health", "type": "probabilistic",
                                   "param": 0.0}]},
        {"service": "reviews", "type": "ratelimiting", "param": 5},
    ],
}


def test_answers_per_service_and_default():
    strategies = Strategies(0.001, DOCUMENT)
    status, body = answer(strategies, ["reviews"], legacy=False)
    assert status == 200
    assert json.loads(body) == {"strategyType": "RATE_LIMITING",
                                "rateLimitingSampling": {"maxTracesPerSecond": 5}}
    _, body = answer(strategies, ["unknown"], legacy=False)
    assert json.loads(body)["probabilisticSampling"] == {"samplingRate": 0.25}
    _, body = answer(strategies, ["productpage"], legacy=True)
    legacy = json.loads(body)
    assert legacy["strategyType"] == 0
    assert legacy["operationSampling"]["perOperationStrategies"] == [
        {"operation": "/health", "probabilisticSampling": {"samplingRate": 0.0}}]


def test_our_remote_sampler_parses_every_answer():
    # The answers are what the tracer's RemoteControlledSampler consumes.
    strategies = Strategies(0.001, DOCUMENT)
    for service in ("productpage", "reviews", "other"):
        for legacy in (False, True):
            _, body = answer(strategies, [service], legacy)
            parse_strategy(json.loads(body))


@pytest.mark.parametrize("services", [[], ["a", "b"]])
def test_service_must_be_given_once(services):
    status, body = answer(Strategies(), services, legacy=False)
    assert status == 400 and "provided once" in body


@pytest.mark.parametrize("document,needle", [
    ({"default_strategy": {"type": "sometimes", "param": 1}}, "default_strategy: type"),
    ({"service_strategies": [{"type": "probabilistic", "param": 0.1}]}, "needs a service"),
    ({"service_strategies": [{"service": "a", "type": "probabilistic", "param": 3}]},
     "from 0 to 1"),
    ({"service_strategies": [{"service": "a", "type": "probabilistic", "param": 0.1,
                              "operation_strategies": [{"operation": "x", "type": "ratelimiting",
                                                        "param": 1}]}]},
     "must be probabilistic"),
    ([], "top level"),
])
def test_bad_documents_name_the_entry(document, needle):
    with pytest.raises(StrategyError) as info:
        Strategies(0.001, document)
    assert needle in str(info.value)


def test_from_file(tmp_path):
    path = tmp_path / "strategies.json"
    path.write_text(json.dumps(DOCUMENT))
    assert Strategies.from_file(str(path)).for_service("reviews")["strategyType"] == \
        "RATE_LIMITING"
    path.write_text("{not json")
    with pytest.raises(StrategyError, match="not valid JSON"):
        Strategies.from_file(str(path))
