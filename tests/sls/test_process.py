"""The shim as users run it, writing to the SLS test server: ``kill -9`` in the middle of an
outage loses nothing that was spooled, a wrong secret is one clear start-up error, and the
secret never shows in output, help, or the resolved configuration."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from opentracing_sls import Config
from opentracing_sls.shim.config import ConfigError, add_arguments, resolve
from opentracing_sls.shim.main import main as shim_main

SHIM = [sys.executable, "-m", "opentracing_sls.cli", "shim"]
SECRET_ENV = "OPENTRACING_SLS_STORAGE_ALIYUN_SLS_ACCESSKEY_SECRET"
PROJECT, LOGSTORE = "trace-test", "jaeger-span"


def command(flags):
    """Every flag but the secret (it comes from the environment, as documented)."""
    args = list(SHIM) + ["--log-level", "debug"]
    for key, value in flags.items():
        if key != "storage.aliyun_sls.accesskey.secret":
            args.append("--%s=%s" % (key, value))
    return args


def environment(secret):
    env = dict(os.environ)
    env[SECRET_ENV] = secret
    return env


def metric(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_up(process, port):
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=1):
                return
        except OSError:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "shim did not start"
            time.sleep(0.1)


def test_kill_9_mid_outage_then_restart_delivers_the_spool(sls_server, flags_for):
    flags = flags_for(sls_server)
    secret = sls_server.access_key_secret
    admin = int(flags["listen.admin_port"])
    sls_server.go_down()
    first = subprocess.Popen(command(flags), env=environment(secret), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_up(first, admin)
        tracer = Config({"local_agent": {"reporting_host": "127.0.0.1",
                                         "reporting_port": int(flags["listen.compact_port"])},
                         "sampler": {"type": "const", "param": 1}},
                        service_name="crash").new_tracer()
        sent = set()
        report = tracer._report
        tracer._report = lambda record: (sent.add("%x" % record.span_id), report(record))
        for i in range(3000):
            tracer.start_span("op-%d" % (i % 3)).finish()
        assert tracer.close(timeout=10)
        deadline = time.monotonic() + 30
        while metric(admin, "opentracing_sls_shim_spool_spans") < 3000:
            assert time.monotonic() < deadline, "not everything reached the spool"
            time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)
        output = first.communicate(timeout=10)[0]
    assert first.returncode == -signal.SIGKILL
    assert "spooling to" in output
    sls_server.come_back()
    second = subprocess.Popen(command(flags), env=environment(secret), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while sls_server.log_count(PROJECT, LOGSTORE) < 3000 and time.monotonic() < deadline:
            time.sleep(0.1)
        ids = [log.get("spanID") for log in sls_server.logs(PROJECT, LOGSTORE)]
    finally:
        second.send_signal(signal.SIGTERM)
        output += second.communicate(timeout=30)[0]
    assert second.returncode == 0
    assert set(ids) == sent and len(ids) == len(sent), "every spooled span, once"
    assert "replaying them" in output
    assert secret not in output, "the secret never appears in the logs"


def test_wrong_secret_is_one_clear_error_and_exit_2(sls_server, flags_for):
    wrong = "not-the-secret-0123456789"
    out = subprocess.run(command(flags_for(sls_server)), env=environment(wrong),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if "cannot start" in line]
    assert len(errors) == 1
    assert "SignatureNotMatch" in errors[0] and "accesskey.secret" in errors[0]
    assert len(sls_server.requests) == 1, "no retry storm"
    assert wrong not in out.stderr + out.stdout


def test_invalid_names_are_refused_at_start_naming_key_and_rule(sls_server, flags_for):
    flags = flags_for(sls_server, **{"storage.aliyun_sls.logstore": "-spans"})
    out = subprocess.run(command(flags), env=environment("s"), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "'storage.aliyun_sls.logstore'" in out.stderr and "underscores" in out.stderr
    for key, value, rule in (("storage.aliyun_sls.project", "Traces_Prod", "hyphens"),
                             ("storage.aliyun_sls.project", "ab", "3 to 63"),
                             ("storage.aliyun_sls.project", "a" * 64, "3 to 63"),
                             ("storage.aliyun_sls.logstore", "spans_", "ending with"),
                             ("storage.aliyun_sls.endpoint", "ftp://sls", "http://")):
        with pytest.raises(ConfigError) as info:
            resolve(flags_for(sls_server, **{key: value}), environ={})
        assert "'%s'" % key in str(info.value) and rule in str(info.value)
    assert resolve(flags_for(sls_server, **{"storage.aliyun_sls.logstore": "a_b-1"}),
                   environ={})["storage.aliyun_sls.logstore"] == "a_b-1"
    assert sls_server.requests == [], "refused before any request"


def test_secret_stays_out_of_help_check_config_and_errors(sls_server, flags_for, capsys,
                                                          monkeypatch, tmp_path):
    secret = "very-secret-value-42"
    monkeypatch.setenv(SECRET_ENV, secret)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    help_text = parser.format_help()
    for key in ("--storage.aliyun_sls.endpoint", "--storage.aliyun_sls.project",
                "--storage.aliyun_sls.logstore", "--storage.aliyun_sls.accesskey.id",
                "--storage.aliyun_sls.accesskey.secret", "--spool.path", "--spool.max_bytes"):
        assert key in help_text
    flags = {k: v for k, v in flags_for(sls_server).items()
             if k != "storage.aliyun_sls.accesskey.secret"}
    assert shim_main(["--%s=%s" % kv for kv in flags.items()] + ["--check-config"]) == 0
    printed = capsys.readouterr()
    assert "storage.aliyun_sls.accesskey.secret = ***" in printed.out
    assert secret not in help_text + printed.out + printed.err
    # A bad value for the secret (a list, from a YAML file) is reported without the value.
    config = tmp_path / "shim.yaml"
    config.write_text("storage:\n  aliyun_sls:\n    accesskey:\n      secret: [%s]\n" % secret)
    with pytest.raises(ConfigError) as info:
        resolve(flags, environ={}, file_path=str(config))
    assert "storage.aliyun_sls.accesskey.secret" in str(info.value)
    assert secret not in str(info.value) and "***" in str(info.value)
    # The secret from a file (a Kubernetes Secret mount), never shown either.
    (tmp_path / "secret").write_text(secret + "\n")
    resolved = resolve(dict(flags, **{"storage.aliyun_sls.accesskey.secret_file":
                                      str(tmp_path / "secret")}), environ={})
    assert resolved["storage.aliyun_sls.accesskey.secret"].reveal() == secret
    assert secret not in "\n".join(resolved.describe())
