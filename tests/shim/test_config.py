"""Shim configuration: precedence, YAML nesting, validation messages naming the key."""

from __future__ import annotations

import pytest

from opentracing_sls.shim.config import KEYS, ConfigError, resolve


def test_defaults():
    config = resolve({}, environ={})
    assert config["listen.host"] == ("localhost",)
    assert [config["listen." + k] for k in ("compact_port", "binary_port", "http_port",
                                            "zipkin_port", "sampling_port", "admin_port")] == [
        6831, 6832, 14268, 9411, 5778, 14271]
    assert config["storage.type"] == ("local",)
    assert config["storage.local.path"] == "./spans.db"


def test_file_then_env_then_flags(tmp_path):
    path = tmp_path / "shim.yaml"
    path.write_text("listen:\n  compact_port: 7000\n  binary_port: 7001\n"
                    "storage.local.path: /tmp/from-file.db\n")
    env = {"OPENTRACING_SLS_LISTEN_BINARY_PORT": "7002",
           "OPENTRACING_SLS_LISTEN_HTTP_PORT": "7003"}
    config = resolve({"listen.http_port": "7004"}, environ=env, file_path=str(path))
    assert config["listen.compact_port"] == 7000  # file
    assert config["listen.binary_port"] == 7002  # env beats file
    assert config["listen.http_port"] == 7004  # flag beats env
    assert config["storage.local.path"] == "/tmp/from-file.db"


@pytest.mark.parametrize("flags,needle", [
    ({"listen.compact_port": "70000"}, "'listen.compact_port' (--listen.compact_port)"),
    ({"listen.zipkin_port": "http"}, "port number"),
    ({"storage.type": "s3"}, "unknown type 's3'"),
    ({"storage.type": "aliyun_sls"}, "required when storage.type includes aliyun_sls"),
    ({"storage.type": "jaeger_agent"}, "storage.jaeger_agent.host_port"),
    ({"storage.type": "local,jaeger_agent", "storage.jaeger_agent.host_port": "agent"},
     "host:port"),
    ({"sampling.strategies_file": "/nonexistent/strategies.json"}, "no such file"),
    ({"sampling.default_probability": "2"}, "from 0 to 1"),
    ({"workers": "0"}, "positive integer"),
])
def test_bad_values_name_the_key_and_rule(flags, needle):
    with pytest.raises(ConfigError) as info:
        resolve(flags, environ={})
    assert needle in str(info.value)


def test_bad_environment_names_the_variable():
    with pytest.raises(ConfigError, match="OPENTRACING_SLS_LISTEN_ADMIN_PORT"):
        resolve({}, environ={"OPENTRACING_SLS_LISTEN_ADMIN_PORT": "-1"})


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "shim.yaml"
    path.write_text("listen:\n  compact_prot: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'listen.compact_prot'"):
        resolve({}, environ={}, file_path=str(path))


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        resolve({}, environ={}, file_path=str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve({}, environ={}, file_path=str(bad))
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        resolve({}, environ={}, file_path=str(scalar))


def test_lists_and_fan_out():
    config = resolve({"listen.host": "127.0.0.1, ::1", "storage.type": "local,jaeger_agent",
                      "storage.jaeger_agent.host_port": "[::1]:6831"}, environ={})
    assert config["listen.host"] == ("127.0.0.1", "::1")
    assert config["storage.type"] == ("local", "jaeger_agent")


def test_every_key_has_help_and_env_name():
    for key in KEYS:
        assert key.help and key.env_name.startswith("OPENTRACING_SLS_")
