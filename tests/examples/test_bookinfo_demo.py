"""``examples/bookinfo/demo.py`` (``make demo``) as a user runs it: the summary with the
trace, a clean exit on Ctrl-C, and no process left behind."""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import List

import pytest
from bookinfo import demo

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "examples", "bookinfo", "demo.py")
linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self") or not hasattr(os, "killpg"),
                                reason="finds processes through /proc")


def processes_with(marker: str) -> List[int]:
    """Pids of live processes whose environment holds ``marker`` (every process the demo
    starts inherits it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as handle:
                if marker.encode() in handle.read():
                    with open("/proc/%s/stat" % entry) as stat:
                        if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                            found.append(int(entry))
        except OSError:
            continue
    return found


def start_demo(args: List[str], marker: str, **env_vars: str) -> subprocess.Popen:
    env = dict(os.environ, BOOKINFO_DEMO_TEST=marker, PYTHONUNBUFFERED="1", **env_vars)
    return subprocess.Popen([sys.executable, DEMO, "--free-ports"] + args, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own group, as a terminal job


@pytest.fixture
def udp_agent():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def received(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            sock.recv(70000)
        except socket.timeout:
            return count
        count += 1


def test_help_lists_the_options():
    out = subprocess.run([sys.executable, DEMO, "--help"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0
    for option in ("--requests", "--no-wait", "--sls", "--sls-endpoint", "--sls-project",
                   "--sls-logstore", "--sls-accesskey-id", "--sls-accesskey-secret",
                   "--jaeger-agent", "--reviews-version", "--workdir"):
        assert option in out.stdout


def _args(*argv: str) -> argparse.Namespace:
    return demo.build_parser().parse_args(list(argv))


def test_sls_parameters_come_from_flags_or_environment_and_stay_off_the_command_line():
    env = {"OPENTRACING_SLS_STORAGE_ALIYUN_SLS_ACCESSKEY_SECRET": "s3cret",
           "OPENTRACING_SLS_STORAGE_ALIYUN_SLS_LOGSTORE": "jaeger-span"}
    settings = demo.sink_settings(_args("--sls", "--sls-endpoint", "cn-hangzhou.log.aliyuncs.com",
                                        "--sls-project", "istio-tracing",
                                        "--sls-accesskey-id", "AKID"), env)
    assert settings["flags"] == ["--storage.type", "local,aliyun_sls"]
    assert settings["env"] == {
        "OPENTRACING_SLS_STORAGE_ALIYUN_SLS_ENDPOINT": "cn-hangzhou.log.aliyuncs.com",
        "OPENTRACING_SLS_STORAGE_ALIYUN_SLS_PROJECT": "istio-tracing",
        "OPENTRACING_SLS_STORAGE_ALIYUN_SLS_LOGSTORE": "jaeger-span",
        "OPENTRACING_SLS_STORAGE_ALIYUN_SLS_ACCESSKEY_ID": "AKID",
        "OPENTRACING_SLS_STORAGE_ALIYUN_SLS_ACCESSKEY_SECRET": "s3cret"}
    assert "s3cret" not in " ".join(settings["flags"])


def test_sls_without_its_parameters_is_a_usage_error():
    with pytest.raises(SystemExit, match="--sls-project .*--sls-accesskey-secret"):
        demo.sink_settings(_args("--sls", "--sls-endpoint", "e", "--sls-logstore", "l",
                                 "--sls-accesskey-id", "a"), {})


def test_jaeger_agent_option():
    settings = demo.sink_settings(_args("--jaeger-agent", "agent.local:6831"), {})
    assert settings["flags"] == ["--storage.type", "local,jaeger_agent",
                                 "--storage.jaeger_agent.host_port", "agent.local:6831"]
    with pytest.raises(SystemExit, match="HOST:PORT"):
        demo.sink_settings(_args("--jaeger-agent", "agent.local"), {})


def test_make_demo_runs_the_bookinfo_demo():
    out = subprocess.run(["make", "-n", "-C", ROOT, "demo", "DEMO_ARGS=--requests 3"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert re.search(r"examples/bookinfo/demo\.py --requests 3\s*$", out.stdout, re.M)


@linux_only
def test_no_wait_prints_the_trace_and_leaves_nothing_behind(udp_agent):
    marker = "no-wait-%s" % uuid.uuid4().hex
    agent = "127.0.0.1:%d" % udp_agent.getsockname()[1]
    process = start_demo(["--no-wait", "--requests", "4", "--jaeger-agent", agent], marker)
    out, _ = process.communicate(timeout=90)
    assert process.returncode == 0, out
    assert "Sent 4 page views: 4 x HTTP 200" in out
    assert re.search(r"Stored: \d+ traces \(4 page views\), \d+ spans", out), out
    assert re.search(r"trace [0-9a-f]{16,32}: 7 spans, 4 services", out), out
    for line in ("productpage /productpage", "productpage GET /details/0",
                 "details /details/<product_id>", "reviews GET /ratings/0",
                 "ratings /ratings/<product_id>"):
        assert line in out
    assert re.search(r"time in each service: productpage [\d.]+ ms", out)
    assert re.search(r"Trace UI: +http://127\.0\.0\.1:\d+/", out)
    assert re.search(r"Shim sinks: local \d+ written, 0 dropped, jaeger_agent \d+ written", out)
    assert received(udp_agent) > 0  # forwarded to the jaeger-agent too
    assert re.search(r"Stopped ratings \(0\), details \(0\), reviews \(0\), "
                     r"productpage \(0\), shim \(0\)\.", out), out
    assert processes_with(marker) == []
    workdir = re.search(r"BookInfo \(reviews v3\) in (\S+)", out).group(1)
    assert not os.path.exists(workdir)  # the temporary directory went with it


@linux_only
def test_sls_option_writes_the_spans_to_sls_too(tmp_path):
    from opentracing_sls.testing.sls_server import SlsServer

    marker = "sls-%s" % uuid.uuid4().hex
    with SlsServer() as sls:
        # The secret from the environment, the other four as flags.
        process = start_demo(["--no-wait", "--requests", "3", "--workdir", str(tmp_path),
                              "--sls", "--sls-endpoint", sls.endpoint,
                              "--sls-project", "bookinfo-demo", "--sls-logstore", "jaeger-span",
                              "--sls-accesskey-id", sls.access_key_id], marker,
                             OPENTRACING_SLS_STORAGE_ALIYUN_SLS_ACCESSKEY_SECRET=(
                                 sls.access_key_secret))
        out, _ = process.communicate(timeout=90)
        assert process.returncode == 0, out
        written = re.search(r"Shim sinks: local (\d+) written, 0 dropped, "
                            r"aliyun_sls (\d+) written, 0 dropped", out)
        assert written and written.group(1) == written.group(2), out
        logs = sls.logs("bookinfo-demo", "jaeger-span")
        assert len(logs) == int(written.group(2))
        services = {dict(log.contents)["process.serviceName"] for log in logs}
        assert services == {"productpage", "details", "reviews", "ratings"}
    assert "SLS:       project bookinfo-demo, logstore jaeger-span at 127.0.0.1:" in out
    assert (tmp_path / "sls-spool").is_dir()
    assert sls.access_key_secret not in out
    assert processes_with(marker) == []


@linux_only
def test_ctrl_c_stops_everything(tmp_path):
    marker = "ctrl-c-%s" % uuid.uuid4().hex
    process = start_demo(["--requests", "2", "--workdir", str(tmp_path)], marker)
    lines = []
    deadline = time.monotonic() + 90
    try:
        for line in process.stdout:
            lines.append(line)
            if "Running until Ctrl-C" in line or time.monotonic() > deadline:
                break
        assert "Running until Ctrl-C.\n" in lines, "".join(lines)
        assert len(processes_with(marker)) == 6  # the demo, the shim and the four services
        os.killpg(process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, "".join(lines) + rest
    assert "Stopping ..." in rest
    assert re.search(r"Stopped ratings \(0\), details \(0\), reviews \(0\), "
                     r"productpage \(0\), shim \(0\)\.", rest), rest
    assert processes_with(marker) == []
    assert (tmp_path / "spans.db").exists() and (tmp_path / "productpage.log").exists()


def test_request_ids_look_like_envoys_sampled_ones():
    from bookinfo.traffic import envoy_request_id

    ids = {envoy_request_id() for _ in range(50)}
    assert len(ids) == 50
    for rid in ids:
        assert str(uuid.UUID(rid)) == rid and rid[14] == "9"  # Envoy's "sampled" reason


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_on_a_terminal_and_prints_quarters_otherwise():
    from bookinfo.traffic import ProgressBar

    terminal = _Terminal()
    bar = ProgressBar(4, terminal, width=8)
    for done in range(1, 5):
        bar.update(done, "(as jason)")
    assert terminal.getvalue().count("\r") == 4
    assert terminal.getvalue().endswith("\r  [########] 4/4 (as jason)\n")
    log = io.StringIO()
    bar = ProgressBar(100, log)
    for done in range(1, 101):
        bar.update(done)
    assert log.getvalue().splitlines() == ["  %d/100 page views " % n for n in (1, 25, 50, 75,
                                                                             100)]


@linux_only
def test_a_failed_start_is_reported_and_cleaned_up():
    marker = "failed-start-%s" % uuid.uuid4().hex
    # Nothing starts in 10 ms: the shim is reported as not answering, with its log.
    process = start_demo(["--no-wait", "--timeout", "0.01"], marker)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 1, out
    assert re.search(r"demo\.py: shim did not answer http://127\.0\.0\.1:\d+/healthz", out), out
    assert "Stopped shim (" in out
    assert processes_with(marker) == []
