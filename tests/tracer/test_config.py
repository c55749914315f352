"""Config: jaeger-client keys, JAEGER_* environment, precedence, validation, initialisation."""

from __future__ import annotations

import logging

import opentracing
import pytest

from opentracing_sls import Config, Tracer
from opentracing_sls.config import VALID_KEYS, resolve_settings
from opentracing_sls.env import ENV_VARS, parse_duration, parse_tags
from opentracing_sls.sampling import (
    ConstSampler,
    ProbabilisticSampler,
    RateLimitingSampler,
    RemoteControlledSampler,
)

JAEGER_CLIENT_KEYS = {
    "logging", "local_agent", "sampler", "tags", "enabled", "reporter_batch_size",
    "reporter_queue_size", "propagation", "max_tag_value_length", "max_traceback_length",
    "reporter_flush_interval", "sampling_refresh_interval", "trace_id_header",
    "generate_128bit_trace_id", "baggage_header_prefix", "service_name", "throttler",
}


def test_every_jaeger_client_key_is_accepted_with_validation():
    assert JAEGER_CLIENT_KEYS <= VALID_KEYS
    config = Config({
        "logging": True,
        "local_agent": {"reporting_host": "127.0.0.1", "reporting_port": 6832,
                        "sampling_port": 5779},
        "sampler": {"type": "const", "param": 1},
        "tags": {"team": "books"},
        "enabled": True,
        "reporter_batch_size": 20,
        "reporter_queue_size": 500,
        "propagation": "b3",
        "max_tag_value_length": 256,
        "max_traceback_length": 2048,
        "reporter_flush_interval": 0.5,
        "sampling_refresh_interval": 30,
        "trace_id_header": "uber-trace-id",
        "generate_128bit_trace_id": True,
        "baggage_header_prefix": "uberctx-",
        "service_name": "productpage",
    }, validate=True)
    s = config.settings
    assert s.service_name == "productpage" and s.logging
    assert (s.reporting_host, s.reporting_port, s.reporting_protocol) == ("127.0.0.1", 6832,
                                                                          "binary")
    assert s.sampling_endpoint == "http://127.0.0.1:5779/sampling"
    assert s.propagation == ("b3",)
    assert dict(s.tags) == {"team": "books"}
    assert (s.reporter_queue_size, s.reporter_batch_size, s.reporter_flush_interval) == (
        500, 20, 0.5)
    assert s.generate_128bit_trace_id and s.max_tag_value_length == 256


def test_unknown_key_raises_with_validate_and_warns_without(caplog):
    with pytest.raises(ValueError, match="unknown config key.*'bogus'"):
        Config({"bogus": 1}, service_name="svc", validate=True)
    with caplog.at_level(logging.WARNING):
        Config({"bogus": 1}, service_name="svc")
    assert "bogus" in caplog.text


@pytest.mark.parametrize("config,key", [
    ({"sampler": {"type": "sometimes"}}, "sampler.type"),
    ({"sampler": {"type": "probabilistic", "param": 2}}, "sampler.param"),
    ({"sampler": {"type": "probabilistic", "param": "lots"}}, "sampler.param"),
    ({"local_agent": {"reporting_port": 70000}}, "local_agent.reporting_port"),
    ({"local_agent": {"reporting_port": "x"}}, "local_agent.reporting_port"),
    ({"local_agent": {"reporting_protocol": "json"}}, "local_agent.reporting_protocol"),
    ({"local_agent": {"color": "red"}}, "local_agent"),
    ({"reporter_queue_size": 0}, "reporter_queue_size"),
    ({"reporter_flush_interval": -1}, "reporter_flush_interval"),
    ({"generate_128bit_trace_id": "maybe"}, "generate_128bit_trace_id"),
    ({"propagation": "zipkin-ot"}, "zipkin-ot"),
    ({"endpoint": "ftp://x"}, "endpoint"),
    ({"trace_id_header": "x-trace"}, "trace_id_header"),
    ({"tags": ["a"]}, "tags"),
])
def test_bad_explicit_values_name_the_key(config, key):
    with pytest.raises(ValueError) as info:
        Config(config, service_name="svc")
    assert key in str(info.value)


def test_service_name_required():
    with pytest.raises(ValueError, match="service_name"):
        Config({})


def test_environment_fills_in_and_explicit_wins(monkeypatch):
    monkeypatch.setenv("JAEGER_SERVICE_NAME", "from-env")
    monkeypatch.setenv("JAEGER_AGENT_HOST", "agent.local")
    monkeypatch.setenv("JAEGER_AGENT_PORT", "7000")
    monkeypatch.setenv("JAEGER_SAMPLER_TYPE", "ratelimiting")
    monkeypatch.setenv("JAEGER_SAMPLER_PARAM", "5")
    monkeypatch.setenv("JAEGER_TAGS", "region=cn-hangzhou,pod=${POD_NAME:unknown}")
    monkeypatch.setenv("JAEGER_TRACEID_128BIT", "true")
    monkeypatch.setenv("JAEGER_REPORTER_MAX_QUEUE_SIZE", "123")
    monkeypatch.setenv("JAEGER_REPORTER_FLUSH_INTERVAL", "250ms")
    monkeypatch.setenv("JAEGER_SAMPLER_REFRESH_INTERVAL", "1m30s")
    monkeypatch.setenv("JAEGER_PROPAGATION", "jaeger,b3")
    s = Config({"local_agent": {"reporting_port": 6831}, "tags": {"pod": "explicit"}}).settings
    assert s.service_name == "from-env"
    assert s.reporting_host == "agent.local"
    assert s.reporting_port == 6831  # explicit beats JAEGER_AGENT_PORT
    assert (s.sampler_type, s.sampler_param) == ("ratelimiting", 5.0)
    assert dict(s.tags) == {"region": "cn-hangzhou", "pod": "explicit"}
    assert s.generate_128bit_trace_id
    assert s.reporter_queue_size == 123
    assert s.reporter_flush_interval == 0.25
    assert s.sampling_refresh_interval == 90
    assert s.propagation == ("jaeger", "b3")
    assert s.sampling_endpoint == "http://agent.local:5778/sampling"


def test_bad_environment_values_warn_and_fall_back(monkeypatch, caplog):
    monkeypatch.setenv("JAEGER_AGENT_PORT", "not-a-port")
    monkeypatch.setenv("JAEGER_TRACEID_128BIT", "perhaps")
    monkeypatch.setenv("JAEGER_REPORTER_FLUSH_INTERVAL", "soon")
    monkeypatch.setenv("JAEGER_SAMPLER_TYPE", "always")
    with caplog.at_level(logging.WARNING):
        s = Config(service_name="svc").settings
    assert s.reporting_port == 6831 and not s.generate_128bit_trace_id
    assert s.reporter_flush_interval == 1.0 and s.sampler_type == "remote"
    for name in ("JAEGER_AGENT_PORT", "JAEGER_TRACEID_128BIT", "JAEGER_REPORTER_FLUSH_INTERVAL",
                 "JAEGER_SAMPLER_TYPE"):
        assert name in caplog.text


def test_endpoint_and_credentials(monkeypatch):
    monkeypatch.setenv("JAEGER_ENDPOINT", "http://collector:14268/api/traces")
    monkeypatch.setenv("JAEGER_USER", "u")
    with pytest.raises(ValueError, match="user.*password"):
        Config(service_name="svc")
    monkeypatch.setenv("JAEGER_PASSWORD", "secret-pass")
    s = Config(service_name="svc").settings
    assert s.endpoint == "http://collector:14268/api/traces"
    assert "secret-pass" not in repr(s)


def test_sampler_manager_host_port_is_the_deprecated_endpoint(monkeypatch):
    monkeypatch.setenv("JAEGER_SAMPLER_MANAGER_HOST_PORT", "sampler:5778")
    assert Config(service_name="s").settings.sampling_endpoint == "http://sampler:5778/sampling"
    monkeypatch.setenv("JAEGER_SAMPLING_ENDPOINT", "http://other:1/sampling")
    assert Config(service_name="s").settings.sampling_endpoint == "http://other:1/sampling"


@pytest.mark.parametrize("sampler,cls", [
    ({"type": "const", "param": 1}, ConstSampler),
    ({"type": "probabilistic", "param": 0.2}, ProbabilisticSampler),
    ({"type": "rate_limiting", "param": 3}, RateLimitingSampler),
    (None, RemoteControlledSampler),
])
def test_new_tracer_builds_the_configured_sampler(sampler, cls):
    config = {"sampler": sampler} if sampler else {}
    tracer = Config(config, service_name="svc").new_tracer()
    try:
        assert isinstance(tracer, Tracer)
        assert isinstance(tracer.sampler, cls)
    finally:
        tracer.close(timeout=1)


def test_sampler_instance_is_accepted():
    sampler = ConstSampler(False)
    tracer = Config({"sampler": sampler}, service_name="svc").new_tracer()
    assert tracer.sampler is sampler
    tracer.close(timeout=1)


@pytest.mark.parametrize("how", ["env", "enabled"])
def test_disabled_gives_the_noop_tracer(monkeypatch, how):
    config = {}
    if how == "env":
        monkeypatch.setenv("JAEGER_DISABLED", "true")
    else:
        config["enabled"] = False
    tracer = Config(config, service_name="svc").new_tracer()
    assert type(tracer) is opentracing.Tracer


def test_initialize_tracer_sets_global_once(caplog):
    first = Config({"sampler": {"type": "const", "param": 1}}, service_name="a")
    tracer = first.initialize_tracer()
    try:
        assert opentracing.global_tracer() is tracer
        assert Config.initialized()
        with caplog.at_level(logging.WARNING):
            again = Config(service_name="b").initialize_tracer()
        assert again is tracer  # jaeger-client returned None here
        assert "already" in caplog.text
    finally:
        tracer.close(timeout=1)


def test_process_tags_include_configured_tags():
    tracer = Config({"tags": {"version": "v1"}, "sampler": {"type": "const", "param": 1}},
                    service_name="svc").new_tracer()
    try:
        assert tracer.tags["version"] == "v1"
        assert tracer.tags["jaeger.version"].startswith("Python-")
        assert tracer.tags["hostname"]
    finally:
        tracer.close(timeout=1)


def test_parsers():
    assert parse_duration("1h2m3.5s") == 3723.5
    assert parse_duration("2") == 2.0 and parse_duration("750us") == pytest.approx(0.00075)
    for bad in ("", "1x", "s", "-1s", "1s2"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert parse_tags("a=1, b = two ,c=${NOPE_NOT_SET:dflt}", {}) == {"a": "1", "b": "two",
                                                                       "c": "dflt"}
    with pytest.raises(ValueError):
        parse_tags("novalue", {})


def test_every_env_var_is_documented_and_maps_to_a_key():
    names = [var.name for var in ENV_VARS]
    assert len(names) == len(set(names))
    for var in ENV_VARS:
        assert var.name.startswith("JAEGER_") and var.doc
    for required in ("JAEGER_SERVICE_NAME", "JAEGER_AGENT_HOST", "JAEGER_AGENT_PORT",
                     "JAEGER_ENDPOINT", "JAEGER_SAMPLER_TYPE", "JAEGER_SAMPLER_PARAM",
                     "JAEGER_SAMPLING_ENDPOINT", "JAEGER_TAGS", "JAEGER_TRACEID_128BIT",
                     "JAEGER_REPORTER_MAX_QUEUE_SIZE", "JAEGER_REPORTER_FLUSH_INTERVAL",
                     "JAEGER_PROPAGATION", "JAEGER_DISABLED"):
        assert required in names
    resolve_settings({}, "svc", environ={})  # defaults resolve without the environment


def test_bad_sampler_param_from_env_warns_and_falls_back(monkeypatch, caplog):
    monkeypatch.setenv("JAEGER_SAMPLER_TYPE", "probabilistic")
    monkeypatch.setenv("JAEGER_SAMPLER_PARAM", "5")
    with caplog.at_level(logging.WARNING):
        s = Config(service_name="svc").settings
    assert s.sampler_type == "probabilistic" and s.sampler_param is None
    assert "JAEGER_SAMPLER_PARAM" in caplog.text
    tracer = Config(service_name="svc").new_tracer()
    assert tracer.sampler.rate == 0.001
    tracer.close(timeout=1)


@pytest.mark.parametrize("param,decision", [("true", True), ("false", False), (1, True),
                                            (0, False), ("1", True)])
def test_const_param_forms(param, decision):
    tracer = Config({"sampler": {"type": "const", "param": param}},
                    service_name="svc").new_tracer()
    assert tracer.sampler.decision is decision
    tracer.close(timeout=1)


def test_batch_size_above_queue_size_names_the_key():
    with pytest.raises(ValueError, match="reporter_batch_size"):
        Config({"reporter_batch_size": 50, "reporter_queue_size": 10}, service_name="svc")


def test_explicit_enabled_beats_jaeger_disabled(monkeypatch):
    monkeypatch.setenv("JAEGER_DISABLED", "true")
    tracer = Config({"enabled": True, "sampler": {"type": "const", "param": 1}},
                    service_name="svc").new_tracer()
    assert isinstance(tracer, Tracer)
    tracer.close(timeout=1)


def test_jaeger_client_call_shapes_are_accepted():
    config = Config({"local_agent": {"enabled": True}, "sampler": {"type": "const", "param": 1}},
                    service_name="svc", validate=True)
    tracer = config.new_tracer(io_loop=None)
    other = config.create_tracer(tracer.reporter, tracer.sampler, throttler=None)
    assert isinstance(other, Tracer)
    tracer.close(timeout=1)


def test_packet_size_range_matches_the_sender():
    with pytest.raises(ValueError, match="reporter_max_packet_size"):
        Config({"reporter_max_packet_size": 800}, service_name="svc")
    tracer = Config({"reporter_max_packet_size": 1024, "sampler": {"type": "const", "param": 1}},
                    service_name="svc").new_tracer()
    tracer.close(timeout=1)


def test_finish_twice_is_logged_without_a_fake_traceback(caplog):
    from opentracing_sls.testing import make_test_tracer

    tracer = make_test_tracer()
    span = tracer.start_span("op")
    span.finish()
    with caplog.at_level(logging.WARNING):
        span.finish()
    assert "NoneType: None" not in caplog.text
    assert "finish() called twice on span 'op'" in caplog.text
