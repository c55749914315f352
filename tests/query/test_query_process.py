"""``opentracing-sls query`` as a real process, and the query port of a running shim."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

from opentracing_sls.shim.config import resolve
from opentracing_sls.shim.server import Shim
from opentracing_sls.testing import free_ports

from .conftest import SHOP, trace_hex

CLI = [sys.executable, "-m", "opentracing_sls.cli"]


def get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = response.read()
        return json.loads(body) if "json" in response.headers["Content-Type"] else body


def wait_http(url: str, process: subprocess.Popen, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get(url, timeout=1)
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None:
                raise AssertionError("the query process exited: %s"
                                     % process.stdout.read()) from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_query_command_serves_the_api_and_ui(store_path: str) -> None:
    [port] = free_ports(1)
    process = subprocess.Popen(CLI + ["query", "--storage.local.path", store_path,
                                      "--listen.host", "127.0.0.1",
                                      "--listen.query_port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = "http://127.0.0.1:%d" % port
        services = wait_http(base + "/api/services", process)
        assert services["data"] == ["api", "db", "frontend", "mailer"]
        trace = get(base + "/api/traces/" + trace_hex(SHOP))["data"][0]
        assert len(trace["spans"]) == 4
        assert b"/static/app.js" in get(base + "/trace/" + trace_hex(SHOP))
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "query API and UI over the local store at http://127.0.0.1:%d/" % port in output


def test_query_command_refuses_a_missing_store(tmp_path: Path) -> None:
    result = subprocess.run(CLI + ["query", "--storage.local.path", str(tmp_path / "none.db")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "no span store at" in result.stderr and "none.db" in result.stderr


def test_query_command_errors_name_the_key(store_path: str) -> None:
    result = subprocess.run(CLI + ["query", "--storage.local.path", store_path,
                                   "--listen.query_port", "99999"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "'listen.query_port'" in result.stderr
    env = dict(os.environ, OPENTRACING_SLS_STORAGE_JAEGER_AGENT_HOST_PORT="agent:6831")
    result = subprocess.run(CLI + ["query", "--storage.local.path", store_path,
                                   "--storage.type", "jaeger_agent"],
                            capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 2 and "no readable storage" in result.stderr


def test_query_port_in_use_is_a_start_up_error(store_path: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run(CLI + ["query", "--storage.local.path", store_path,
                                       "--listen.host", "127.0.0.1",
                                       "--listen.query_port", str(port)],
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "listen.query_port" in result.stderr and "cannot listen" in result.stderr


def test_query_help_lists_its_keys() -> None:
    result = subprocess.run(CLI + ["query", "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0
    for flag in ("--storage.local.path", "--listen.query_port", "--listen.host", "--config"):
        assert flag in result.stdout
    assert "--listen.compact_port" not in result.stdout  # the shim's receivers are not ours
    assert "--storage.aliyun_sls.endpoint" in result.stdout
    assert "--storage.aliyun_sls.senders" not in result.stdout  # writing, not reading


def _zipkin_span(trace: str, span: str, parent: str, name: str, service: str,
                 start: int) -> Dict[str, Any]:
    out = {"traceId": trace, "id": span, "name": name, "timestamp": start, "duration": 1500,
           "kind": "SERVER", "localEndpoint": {"serviceName": service},
           "tags": {"http.method": "GET"}}
    if parent:
        out["parentId"] = parent
    return out


def test_the_shim_serves_what_it_received_on_the_query_port(tmp_path: Path) -> None:
    keys = ("compact_port", "binary_port", "http_port", "zipkin_port", "sampling_port",
            "admin_port", "query_port")
    ports = dict(zip(keys, free_ports(len(keys))))
    flags = {"listen.host": "127.0.0.1", "storage.local.path": str(tmp_path / "spans.db")}
    flags.update({"listen." + key: str(port) for key, port in ports.items()})
    shim = Shim(resolve(flags, environ={}))
    shim.start()
    try:
        now = int(time.time() * 1_000_000)
        trace = "463ac35c9f6413ad48485a3953bb6124"
        body = json.dumps([
            _zipkin_span(trace, "a2fb4a1d1a96d312", "", "get /reviews", "productpage", now),
            _zipkin_span(trace, "b7ad6b7169203331", "a2fb4a1d1a96d312", "get /ratings",
                         "reviews", now + 100)]).encode()
        request = urllib.request.Request(
            "http://127.0.0.1:%d/api/v2/spans" % ports["zipkin_port"], data=body,
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 202
        base = "http://127.0.0.1:%d" % ports["query_port"]
        deadline = time.monotonic() + 10
        found: List[Any] = []
        while not found and time.monotonic() < deadline:
            found = get(base + "/api/traces?service=reviews&lookback=1h")["data"]
            time.sleep(0.05)
        (result,) = found
        assert result["traceID"] == trace
        assert sorted(p["serviceName"] for p in result["processes"].values()) == [
            "productpage", "reviews"]
        assert get(base + "/api/dependencies")["data"] == [
            {"parent": "productpage", "child": "reviews", "callCount": 1}]
        assert b"<!doctype html>" in get(base + "/")
    finally:
        assert shim.stop(timeout=5)
