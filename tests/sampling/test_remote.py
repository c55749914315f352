"""The remote sampler against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gc
import logging
import os
import time

import pytest

from opentracing_sls.constants import MASK_64
from opentracing_sls.metrics import Metrics
from opentracing_sls.sampling import (
    AdaptiveSampler,
    ConstSampler,
    ProbabilisticSampler,
    RateLimitingSampler,
    RemoteControlledSampler,
)

LOGGER = "opentracing_sls.sampling.remote"

PROBABILISTIC = {"strategyType": "PROBABILISTIC", "probabilisticSampling": {"samplingRate": 0.25}}
RATE_LIMITING = {
    "strategyType": "RATE_LIMITING",
    "rateLimitingSampling": {"maxTracesPerSecond": 42},
}
PER_OPERATION = {
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


def make(url, **kwargs):
    kwargs.setdefault("metrics", Metrics())
    kwargs.setdefault("start_polling", False)
    return RemoteControlledSampler("my-service", url, **kwargs)


def counts(sampler):
    return {
        name: sampler.metrics.counter(name).value
        for name in ("sampler.queries.ok", "sampler.queries.err")
        + ("sampler.updates.ok", "sampler.updates.err")
    }


def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_defaults_before_any_poll():
    sampler = RemoteControlledSampler("svc", start_polling=False)
    assert sampler.sampler == ProbabilisticSampler(0.001)
    assert sampler.sampling_endpoint == "http://localhost:5778/sampling"
    assert sampler.refresh_interval == 60.0 and sampler.max_operations == 2000
    assert sampler.is_sampled(0, "op") == (
        True,
        {"sampler.type": "probabilistic", "sampler.param": 0.001},
    )


def test_probabilistic_strategy(strategy_server):
    strategy_server.serve_json(PROBABILISTIC)
    sampler = make(strategy_server.url)
    assert sampler.poll_once() is True
    assert sampler.sampler == ProbabilisticSampler(0.25)
    assert sampler.is_sampled(MASK_64, "op") == (
        False,
        {"sampler.type": "probabilistic", "sampler.param": 0.25},
    )
    current = sampler.sampler
    assert sampler.poll_once() is True
    assert sampler.sampler is current  # same rate: not replaced, not counted
    assert counts(sampler) == {
        "sampler.queries.ok": 2,
        "sampler.queries.err": 0,
        "sampler.updates.ok": 1,
        "sampler.updates.err": 0,
    }


def test_query_string_carries_the_quoted_service_name(strategy_server):
    strategy_server.serve_json(PROBABILISTIC)
    sampler = RemoteControlledSampler("my svc/v1&x=ü", strategy_server.url, start_polling=False)
    sampler.poll_once()
    assert strategy_server.paths == ["/sampling?service=my%20svc%2Fv1%26x%3D%C3%BC"]


def test_endpoint_with_a_query_string(strategy_server):
    strategy_server.serve_json(PROBABILISTIC)
    make(strategy_server.url + "?tenant=a").poll_once()
    assert strategy_server.paths == ["/sampling?tenant=a&service=my-service"]


def test_rate_limiting_strategy_is_updated_in_place(strategy_server):
    strategy_server.serve_json(RATE_LIMITING)
    sampler = make(strategy_server.url)
    assert sampler.poll_once() is True
    limiter = sampler.sampler
    assert limiter == RateLimitingSampler(42)
    strategy_server.serve_json(
        {"strategyType": "RATE_LIMITING", "rateLimitingSampling": {"maxTracesPerSecond": 7}}
    )
    assert sampler.poll_once() is True
    assert sampler.sampler is limiter and limiter.max_traces_per_second == 7.0
    assert sampler.is_sampled(0, "op")[1] == {"sampler.type": "ratelimiting", "sampler.param": 7.0}
    assert sampler.metrics.counter("sampler.updates.ok").value == 2


def test_per_operation_strategy_is_updated_in_place(strategy_server):
    strategy_server.serve_json(PER_OPERATION)
    sampler = make(strategy_server.url, max_operations=10)
    assert sampler.poll_once() is True
    adaptive = sampler.sampler
    assert isinstance(adaptive, AdaptiveSampler) and adaptive.max_operations == 10
    assert adaptive.samplers["GET /x"].rate == 0.5
    assert sampler.is_sampled(0, "GET /x") == (
        True,
        {"sampler.type": "probabilistic", "sampler.param": 0.5},
    )
    changed = dict(PER_OPERATION, operationSampling=dict(PER_OPERATION["operationSampling"]))
    changed["operationSampling"]["perOperationStrategies"] = [
        {"operation": "GET /x", "probabilisticSampling": {"samplingRate": 0.75}}
    ]
    strategy_server.serve_json(changed)
    assert sampler.poll_once() is True
    assert sampler.sampler is adaptive and adaptive.samplers["GET /x"].rate == 0.75
    assert sampler.metrics.counter("sampler.updates.ok").value == 2


@pytest.mark.parametrize(
    "payload, expected",
    [
        (
            {"strategyType": 0, "probabilisticSampling": {"samplingRate": 0.5}},
            ProbabilisticSampler(0.5),
        ),
        (
            {"strategyType": 1, "rateLimitingSampling": {"maxTracesPerSecond": 3}},
            RateLimitingSampler(3),
        ),
    ],
)
def test_legacy_integer_enums_from_the_root_endpoint(strategy_server, payload, expected):
    strategy_server.serve_json(payload)
    sampler = make(strategy_server.base_url + "/")
    assert sampler.poll_once() is True
    assert sampler.sampler == expected
    assert strategy_server.paths == ["/?service=my-service"]


def test_switching_between_strategy_kinds(strategy_server):
    sampler = make(strategy_server.url)
    for payload, kind in (
        (RATE_LIMITING, RateLimitingSampler),
        (PER_OPERATION, AdaptiveSampler),
        (PROBABILISTIC, ProbabilisticSampler),
    ):
        strategy_server.serve_json(payload)
        assert sampler.poll_once() is True
        assert type(sampler.sampler) is kind
    assert sampler.metrics.counter("sampler.updates.ok").value == 3


@pytest.mark.parametrize(
    "status, body, metric",
    [
        (500, b"collector error: boom", "sampler.queries.err"),
        (404, b"404 page not found", "sampler.queries.err"),
        (200, b"{not json", "sampler.queries.err"),
        (200, b"\xff\xfe", "sampler.queries.err"),
        (200, b'{"strategyType": "BOGUS"}', "sampler.updates.err"),
        (
            200,
            b'{"strategyType": 0, "probabilisticSampling": {"samplingRate": 7}}',
            "sampler.updates.err",
        ),
        (
            200,
            b'{"strategyType": 1, "rateLimitingSampling": {"maxTracesPerSecond": -3}}',
            "sampler.updates.err",
        ),
    ],
)
def test_failures_keep_the_current_sampler(strategy_server, caplog, status, body, metric):
    initial = ConstSampler(True)
    sampler = make(strategy_server.url, initial_sampler=initial)
    strategy_server.serve(body, status)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert sampler.poll_once() is False
    assert sampler.sampler is initial
    assert sampler.metrics.counter(metric).value == 1
    assert sampler.metrics.counter("sampler.updates.ok").value == 0
    assert len(caplog.records) == 1  # the first failure is logged at once


def test_connection_refused_is_counted_and_logged_once(closed_port, caplog):
    sampler = make(f"http://127.0.0.1:{closed_port}/sampling", timeout=2.0)
    initial = sampler.sampler
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert sampler.poll_once() is False
        assert sampler.poll_once() is False
    assert sampler.sampler is initial
    assert sampler.metrics.counter("sampler.queries.err").value == 2
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1  # rate limited per failure kind
    assert "Cannot get sampling strategy" in records[0].getMessage()
    assert str(closed_port) in records[0].getMessage()


def test_each_failure_kind_is_logged_once(strategy_server, caplog):
    sampler = make(strategy_server.url)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for status, body in ((500, b"boom"), (200, b"{oops"), (500, b"boom"), (200, b"[")):
            strategy_server.serve(body, status)
            sampler.poll_once()
    assert len(caplog.records) == 2  # one "http", one "json"
    assert sampler.metrics.counter("sampler.queries.err").value == 4


def test_proxy_environment_is_ignored(strategy_server, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    strategy_server.serve_json(PROBABILISTIC)
    assert make(strategy_server.url).poll_once() is True


def test_construction_does_not_block_on_a_silent_agent(silent_port):
    host, port = silent_port
    start = time.monotonic()
    sampler = RemoteControlledSampler(
        "svc", f"http://{host}:{port}/sampling", refresh_interval=0.05, timeout=0.3
    )
    assert time.monotonic() - start < 0.1
    assert sampler.is_sampled(0, "op")[0] is True  # the initial sampler answers meanwhile
    sampler.close()


def test_background_polling_and_prompt_close(strategy_server):
    strategy_server.serve_json(PROBABILISTIC)
    sampler = make(strategy_server.url, start_polling=True, refresh_interval=0.05)
    assert wait_for(lambda: sampler.metrics.counter("sampler.queries.ok").value >= 3)
    assert sampler.sampler == ProbabilisticSampler(0.25)
    thread = sampler._thread
    start = time.monotonic()
    sampler.close()
    assert time.monotonic() - start < 0.5
    assert not thread.is_alive()
    polled = strategy_server.request_count
    time.sleep(0.15)
    assert strategy_server.request_count == polled
    sampler.close()  # idempotent
    assert sampler.poll_once() is False
    assert strategy_server.request_count == polled


def test_an_abandoned_sampler_stops_its_thread(strategy_server):
    strategy_server.serve_json(PROBABILISTIC)
    sampler = make(strategy_server.url, start_polling=True, refresh_interval=30)
    thread = sampler._thread
    del sampler
    gc.collect()
    thread.join(1.0)
    assert not thread.is_alive()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"service_name": ""}, "service_name"),
        ({"sampling_endpoint": "file:///etc/passwd"}, "sampling_endpoint"),
        ({"sampling_endpoint": "localhost:5778"}, "sampling_endpoint"),
        ({"refresh_interval": 0}, "refresh_interval"),
        ({"refresh_interval": float("nan")}, "refresh_interval"),
        ({"timeout": -1}, "timeout"),
        ({"max_operations": -1}, "max_operations"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message):
    arguments = {"service_name": "svc", "start_polling": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        RemoteControlledSampler(**arguments)


def test_repr_names_the_service_and_current_sampler():
    sampler = RemoteControlledSampler("svc", start_polling=False)
    assert repr(sampler) == (
        "RemoteControlledSampler('svc', 'http://localhost:5778/sampling', "
        "sampler=ProbabilisticSampler(0.001))"
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, 3.12+
def test_forked_child_gets_a_working_poller(strategy_server):
    strategy_server.serve_json(PROBABILISTIC)
    sampler = make(strategy_server.url, start_polling=True, refresh_interval=0.05)
    assert wait_for(lambda: sampler.sampler == ProbabilisticSampler(0.25))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe and the exit code, always os._exit
        code = 1
        try:
            os.close(read_end)
            queries = sampler.metrics.counter("sampler.queries.ok")
            before = queries.value
            # Only a poll made by this process can bring the strategy set after the fork.
            ok = wait_for(
                lambda: queries.value > before and sampler.sampler == ProbabilisticSampler(0.75),
                timeout=5.0,
            )
            os.write(write_end, repr(sampler.sampler).encode())
            code = 0 if ok else 2
        finally:
            os._exit(code)
    os.close(write_end)
    strategy_server.serve_json(
        {"strategyType": "PROBABILISTIC", "probabilisticSampling": {"samplingRate": 0.75}}
    )
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    sampler.close()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, message
    assert message == "ProbabilisticSampler(0.75)"
