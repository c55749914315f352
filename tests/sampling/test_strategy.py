"""Parsing the sampling endpoint's JSON (both enum forms, defaults, validation)."""

from __future__ import annotations

import pytest

from opentracing_sls.sampling import (
    OperationStrategy,
    PerOperationStrategy,
    ProbabilisticStrategy,
    RateLimitingStrategy,
    parse_strategy,
)


@pytest.mark.parametrize("strategy_type", ["PROBABILISTIC", 0, "probabilistic", None])
def test_probabilistic_forms(strategy_type):
    payload = {"strategyType": strategy_type, "probabilisticSampling": {"samplingRate": 0.25}}
    assert parse_strategy(payload) == ProbabilisticStrategy(0.25)


@pytest.mark.parametrize("strategy_type", ["RATE_LIMITING", 1])
def test_rate_limiting_forms(strategy_type):
    payload = {"strategyType": strategy_type, "rateLimitingSampling": {"maxTracesPerSecond": 42}}
    assert parse_strategy(payload) == RateLimitingStrategy(42.0)


def test_missing_type_is_inferred_from_the_sub_object():
    # proto3 may omit the zero enum; only rateLimitingSampling then implies RATE_LIMITING.
    assert parse_strategy({"rateLimitingSampling": {"maxTracesPerSecond": 3}}) == (
        RateLimitingStrategy(3.0)
    )
    assert parse_strategy({}) == ProbabilisticStrategy(0.001)


def test_per_operation_form_from_the_reference():
    payload = {
        "strategyType": "PROBABILISTIC",
        "operationSampling": {
            "defaultSamplingProbability": 0.001,
            "defaultLowerBoundTracesPerSecond": 0.0016,
            "defaultUpperBoundTracesPerSecond": 0,
            "perOperationStrategies": [
                {"operation": "GET /x", "probabilisticSampling": {"samplingRate": 0.5}}
            ],
        },
    }
    assert parse_strategy(payload) == PerOperationStrategy(
        0.001, 0.0016, (OperationStrategy("GET /x", 0.5),)
    )


def test_operation_sampling_wins_over_the_type():
    payload = {
        "strategyType": 1,
        "rateLimitingSampling": {"maxTracesPerSecond": 5},
        "operationSampling": {"defaultSamplingProbability": 0.2, "perOperationStrategies": []},
    }
    assert isinstance(parse_strategy(payload), PerOperationStrategy)


def test_missing_fields_take_the_defaults():
    assert parse_strategy({"strategyType": "PROBABILISTIC"}) == ProbabilisticStrategy(0.001)
    assert parse_strategy({"strategyType": "RATE_LIMITING"}) == RateLimitingStrategy(1 / 600)
    assert parse_strategy(
        {"strategyType": 0, "probabilisticSampling": None, "rateLimitingSampling": None}
    ) == ProbabilisticStrategy(0.001)
    per_op = parse_strategy(
        {
            "operationSampling": {
                "defaultSamplingProbability": 0.3,
                "perOperationStrategies": [{"operation": "a"}],
            }
        }
    )
    # An operation without its own rate gets the server's default, not a hard-coded 0.001.
    assert per_op == PerOperationStrategy(0.3, 1 / 600, (OperationStrategy("a", 0.3),))


def test_repeated_operation_last_wins():
    per_op = parse_strategy(
        {
            "operationSampling": {
                "perOperationStrategies": [
                    {"operation": "a", "probabilisticSampling": {"samplingRate": 0.1}},
                    {"operation": "a", "probabilisticSampling": {"samplingRate": 0.9}},
                ]
            }
        }
    )
    assert per_op.operations == (OperationStrategy("a", 0.9),)


def test_large_but_legitimate_rate_limit_is_accepted():
    # jaeger-client refuses anything from 500 up.
    payload = {
        "strategyType": "RATE_LIMITING",
        "rateLimitingSampling": {"maxTracesPerSecond": 2000},
    }
    assert parse_strategy(payload) == RateLimitingStrategy(2000.0)


@pytest.mark.parametrize(
    "payload, message",
    [
        ([], "JSON object"),
        ("PROBABILISTIC", "JSON object"),
        ({"strategyType": "ADAPTIVE"}, "unsupported strategyType 'ADAPTIVE'"),
        ({"strategyType": 2}, "unsupported strategyType 2"),
        ({"strategyType": True}, "unsupported strategyType True"),
        ({"strategyType": 0, "probabilisticSampling": {"samplingRate": 1.5}}, "samplingRate"),
        ({"strategyType": 0, "probabilisticSampling": {"samplingRate": "0.5"}}, "samplingRate"),
        ({"strategyType": 0, "probabilisticSampling": 0.5}, "probabilisticSampling"),
        ({"strategyType": 1, "rateLimitingSampling": {"maxTracesPerSecond": -1}}, "maxTraces"),
        ({"strategyType": 1, "rateLimitingSampling": {"maxTracesPerSecond": 1e9}}, "at most"),
        ({"strategyType": 1, "rateLimitingSampling": {"maxTracesPerSecond": float("nan")}}, "NaN"),
        ({"operationSampling": {"perOperationStrategies": {}}}, "must be a list"),
        ({"operationSampling": {"perOperationStrategies": [1]}}, r"perOperationStrategies\[0\]"),
        ({"operationSampling": {"perOperationStrategies": [{"operation": 5}]}}, "operation"),
        ({"operationSampling": {"defaultSamplingProbability": -0.5}}, "defaultSampling"),
        ({"operationSampling": {"defaultLowerBoundTracesPerSecond": -1}}, "defaultLowerBound"),
        ({"operationSampling": [1]}, "operationSampling must be an object"),
    ],
)
def test_invalid_payloads_raise_value_error(payload, message):
    with pytest.raises(ValueError, match=message):
        parse_strategy(payload)
