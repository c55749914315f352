"""The shim as users run it: a real ``opentracing-sls shim`` process stopped with SIGTERM,
and the jaeger_agent sink forwarding to a UDP listener that decodes with thriftpy2."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from thriftpy2.protocol import TCompactProtocol
from thriftpy2.transport import TMemoryBuffer

from opentracing_sls import Config
from opentracing_sls.reporting.idl import agent
from opentracing_sls.shim.config import resolve
from opentracing_sls.shim.server import Shim
from opentracing_sls.shim.store import LocalStore

SHIM = [sys.executable, "-m", "opentracing_sls.cli", "shim"]


def test_help_and_check_config():
    out = subprocess.run(SHIM + ["--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for key in ("--listen.compact_port", "--storage.type", "--storage.local.path",
                "--storage.jaeger_agent.host_port", "--sampling.strategies_file"):
        assert key in out.stdout
    out = subprocess.run(SHIM + ["--check-config", "--listen.compact_port", "7777"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "listen.compact_port = 7777" in out.stdout


def test_bad_config_stops_start_up_naming_the_key():
    out = subprocess.run(SHIM + ["--listen.http_port", "99999"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "'listen.http_port'" in out.stderr and "port number" in out.stderr


def test_port_in_use_is_a_clear_start_up_error(pick_ports, tmp_path):
    [port] = pick_ports(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", port))
        out = subprocess.run(SHIM + ["--listen.host", "127.0.0.1", "--listen.compact_port",
                                     str(port), "--listen.binary_port", "0",
                                     "--listen.http_port", "0", "--listen.zipkin_port", "0",
                                     "--listen.sampling_port", "0", "--listen.admin_port", "0",
                                     "--listen.query_port", "0",
                                     "--storage.local.path", str(tmp_path / "s.db")],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "listen.compact_port" in out.stderr


def test_sigterm_under_load_loses_nothing_received(pick_ports, tmp_path):
    compact, admin = pick_ports(2)
    db = str(tmp_path / "spans.db")
    process = subprocess.Popen(SHIM + [
        "--listen.host", "127.0.0.1", "--listen.compact_port", str(compact),
        "--listen.binary_port", "0", "--listen.http_port", "0", "--listen.zipkin_port", "0",
        "--listen.sampling_port", "0", "--listen.admin_port", str(admin),
        "--listen.query_port", "0",
        "--storage.local.path", db], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % admin, timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "shim did not start"
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.1)
        tracer = Config({"local_agent": {"reporting_host": "127.0.0.1",
                                         "reporting_port": compact},
                         "sampler": {"type": "const", "param": 1}},
                        service_name="load").new_tracer()
        for i in range(3000):
            tracer.start_span("op-%d" % (i % 7)).finish()
        assert tracer.close(timeout=10)
        received = _wait_metric(admin, "opentracing_sls_shim_spans_decoded_total", 3000)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        output = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert received == 3000
    # the start-up line says which implementations run (C when built, as here)
    assert re.search(r"shim started: .*compact decoder: (c|python); store rows: (c|python)",
                     output), output
    store = LocalStore(db)
    try:
        assert store.span_count() == 3000
    finally:
        store.close()


def _wait_metric(admin_port, name, expected, timeout=20.0):
    deadline = time.monotonic() + timeout
    value = 0.0
    while time.monotonic() < deadline:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name):
                    value = float(line.rsplit(" ", 1)[1])
        if value >= expected:
            return value
        time.sleep(0.1)
    return value


def test_jaeger_agent_sink_forwards_every_span_once(pick_ports, tmp_path):
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    compact = pick_ports(1)[0]
    config = resolve({"listen.host": "127.0.0.1", "listen.compact_port": str(compact),
                      "listen.binary_port": "0", "listen.http_port": "0",
                      "listen.zipkin_port": "0", "listen.sampling_port": "0",
                      "listen.admin_port": "0", "listen.query_port": "0",
                      "storage.type": "jaeger_agent,local",
                      "storage.local.path": str(tmp_path / "s.db"),
                      "storage.jaeger_agent.host_port": "127.0.0.1:%d"
                      % listener.getsockname()[1]}, environ={})
    shim = Shim(config)
    shim.start()
    try:
        tracers = [Config({"local_agent": {"reporting_host": "127.0.0.1",
                                           "reporting_port": compact},
                           "sampler": {"type": "const", "param": 1}},
                          service_name=name).new_tracer() for name in ("svc-a", "svc-b")]
        sent = {}
        for tracer in tracers:
            for _ in range(400):
                with tracer.start_span("op") as span:
                    span.set_tag("payload", "x" * 300)
                    sent[span.context.span_id] = tracer.service_name
            assert tracer.close(timeout=5)
        got = {}
        deadline = time.monotonic() + 15
        while len(got) < len(sent) and time.monotonic() < deadline:
            try:
                data = listener.recv(70000)
            except socket.timeout:
                continue
            assert len(data) <= 65000
            proto = TCompactProtocol(TMemoryBuffer(data))
            proto.read_message_begin()
            args = agent.Agent.emitBatch_args()
            args.read(proto)
            for span in args.batch.spans:
                span_id = span.spanId & 0xFFFFFFFFFFFFFFFF
                assert span_id not in got, "forwarded twice"
                got[span_id] = args.batch.process.serviceName
        assert got == sent
    finally:
        shim.stop(timeout=5)
        listener.close()
