"""``opentracing-sls run``: real programs in subprocesses (Flask's own server, gunicorn with
four pre-forked workers), spans decoded from the UDP datagrams they send to a socket bound
here."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from opentracing_sls.integrations import bootstrap

BIN = Path(sys.executable).parent
CLI = [str(BIN / "opentracing-sls")] if (BIN / "opentracing-sls").exists() else [
    sys.executable, "-m", "opentracing_sls.cli"]

FLASK_APP = textwrap.dedent("""
    import logging, os
    import requests
    from flask import Flask

    logging.basicConfig(level=logging.INFO, format="LOG %(trace_id)s %(span_id)s %(message)s")
    app = Flask(__name__)

    @app.route("/hello/<name>")
    def hello(name):
        logging.getLogger("app").info("greeting %s", name)
        return "hello %s, stub says %s" % (name, requests.get(os.environ["STUB_URL"],
                                                             timeout=5).text)

    if __name__ == "__main__":
        app.run(host="127.0.0.1", port=0)
""")

GUNICORN_APP = textwrap.dedent("""
    import os, time
    import opentracing
    from flask import Flask

    app = Flask(__name__)

    @app.route("/work")
    def work():
        time.sleep(0.15)  # keeps a sync worker busy so the others take requests too
        # App code using the OpenTracing API only: which worker served this span.
        opentracing.global_tracer().active_span.set_tag("worker.pid", os.getpid())
        return str(os.getpid())
""")


def _as_from_a_terminal() -> None:
    # Started by `nohup`, `time` or a shell's background job, the test run ignores SIGINT, and
    # an ignored SIGINT is inherited through exec: Python would then not install its
    # KeyboardInterrupt handler and the program would never see the Ctrl-C these tests send.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Program:
    """A subprocess whose merged output is collected by a thread."""

    def __init__(self, args: List[str], env: Dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(args, env=env, cwd=str(cwd), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, preexec_fn=_as_from_a_terminal)
        self.lines: List[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output())
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError("no %r in the output:\n%s" % (pattern, self.output()))

    def stop(self, sig: int, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # Where is it stuck? PYTHONFAULTHANDLER (see _env) dumps every thread on SIGABRT.
            os.killpg(self.proc.pid, signal.SIGABRT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.reader.join(5)
            raise AssertionError("no exit %.0f s after signal %d; output:\n%s"
                                 % (timeout, sig, self.output())) from None
        self.reader.join(5)
        return code


@pytest.fixture
def programs():
    started: List[Program] = []
    yield started
    for program in started:
        if program.proc.poll() is None:
            os.killpg(program.proc.pid, signal.SIGKILL)
            program.proc.wait(5)


def _env(udp_port: int, **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAEGER_", "OPENTRACING_SLS_"))}
    env.update(JAEGER_AGENT_HOST="127.0.0.1", JAEGER_AGENT_PORT=str(udp_port),
               JAEGER_SAMPLER_TYPE="const", JAEGER_SAMPLER_PARAM="1", PYTHONFAULTHANDLER="1")
    env.update(extra)
    return env


def _get(port: int, path: str, headers: Optional[Dict[str, str]] = None) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        return body
    finally:
        conn.close()


def _spans(datagrams: List[bytes], decode: Any) -> List[Dict[str, Any]]:
    """Every span of the datagrams as a dict, with its batch's process."""
    out = []
    for data in datagrams:
        batch = decode(data)
        process_tags = {t.key: t.vStr for t in batch.process.tags or ()}
        for span in batch.spans:
            tags = {t.key: next(v for v in (t.vStr, t.vLong, t.vBool, t.vDouble)
                                if v is not None) for t in span.tags or ()}
            out.append({
                "service": batch.process.serviceName,
                "client_uuid": process_tags.get("client-uuid"),
                "trace_id": ((span.traceIdHigh & (2**64 - 1)) << 64)
                | (span.traceIdLow & (2**64 - 1)),
                "span_id": span.spanId & (2**64 - 1),
                "parent_id": span.parentSpanId & (2**64 - 1),
                "name": span.operationName,
                "tags": tags,
            })
    return out


def test_run_python_app_with_flasks_own_server(tmp_path, udp_sink, idl_decode, serve,
                                               programs):
    seen: List[Dict[str, str]] = []

    def stub(environ, start_response):
        seen.append({k: v for k, v in environ.items() if k.startswith("HTTP_")})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"pong"]

    stub_server = serve(stub)
    (tmp_path / "app.py").write_text(FLASK_APP)
    program = Program(CLI + ["run", "--log-correlation", sys.executable, "app.py"],
                      _env(udp_sink.port, STUB_URL=stub_server.url("/ping")), tmp_path)
    programs.append(program)
    port = int(program.wait_for(r"Running on http://127\.0\.0\.1:(\d+)").group(1))

    incoming = {"x-request-id": "rid-42", "end-user": "jason",
                "x-b3-traceid": "463ac35c9f6413ad48485a3953bb6124",
                "x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-sampled": "1"}
    assert _get(port, "/hello/ada", incoming) == "hello ada, stub says pong"
    assert program.stop(signal.SIGINT) in (0, 1, -signal.SIGINT)  # exit flush runs on SIGINT

    spans = {s["name"]: s for s in _spans(udp_sink.receive(1), idl_decode)}
    server, client = spans["/hello/<name>"], spans["GET"]
    assert server["service"] == "app"  # guessed from the command: app.py
    assert server["trace_id"] == client["trace_id"] == 0x463ac35c9f6413ad48485a3953bb6124
    assert server["parent_id"] == 0xa2fb4a1d1a96d312
    assert client["parent_id"] == server["span_id"]
    assert server["tags"]["http.status_code"] == 200
    assert client["tags"]["http.url"] == stub_server.url("/ping")
    [headers] = seen
    assert headers["HTTP_X_REQUEST_ID"] == "rid-42" and headers["HTTP_END_USER"] == "jason"
    assert headers["HTTP_X_B3_SPANID"] == "%016x" % client["span_id"]
    assert "LOG %032x %016x greeting ada" % (server["trace_id"], server["span_id"]) \
        in program.output()


TWO_SERVICES = textwrap.dedent("""
    import os, sys
    import requests
    from flask import Flask, request

    app = Flask(__name__)

    @app.route("/reviews/<id>")
    def reviews(id):
        return {k.lower(): v for k, v in request.headers.items()}

    @app.route("/productpage")
    def productpage():
        return requests.get(os.environ["REVIEWS_URL"] + "/reviews/0", timeout=5).json()

    if __name__ == "__main__":
        app.run(host="127.0.0.1", port=0)
""")


def test_two_services_under_run_make_one_trace(tmp_path, udp_sink, idl_decode, programs):
    (tmp_path / "svc.py").write_text(TWO_SERVICES)
    reviews = Program(CLI + ["run", "--service-name", "reviews", sys.executable, "svc.py"],
                      _env(udp_sink.port), tmp_path)
    programs.append(reviews)
    reviews_port = reviews.wait_for(r"Running on http://127\.0\.0\.1:(\d+)").group(1)
    productpage = Program(
        CLI + ["run", "--service-name", "productpage", sys.executable, "svc.py"],
        _env(udp_sink.port, REVIEWS_URL="http://127.0.0.1:%s" % reviews_port), tmp_path)
    programs.append(productpage)
    port = int(productpage.wait_for(r"Running on http://127\.0\.0\.1:(\d+)").group(1))

    seen = json.loads(_get(port, "/productpage", {
        "x-request-id": "rid-7", "end-user": "jason", "x-b3-sampled": "1",
        "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7", "x-b3-spanid": "e457b5a2e4d86bd1"}))
    for program in (productpage, reviews):
        program.stop(signal.SIGINT)

    spans = {(s["service"], s["name"]): s for s in _spans(udp_sink.receive(2), idl_decode)}
    upstream = spans[("productpage", "/productpage")]
    client = spans[("productpage", "GET")]
    downstream = spans[("reviews", "/reviews/<id>")]
    assert {upstream["trace_id"], client["trace_id"], downstream["trace_id"]} == {
        0x80f198ee56343ba864fe8b2a57d3eff7}
    assert upstream["parent_id"] == 0xe457b5a2e4d86bd1
    assert client["parent_id"] == upstream["span_id"]
    assert downstream["parent_id"] == client["span_id"]
    assert seen["x-request-id"] == "rid-7" and seen["end-user"] == "jason"
    assert seen["x-b3-spanid"] == "%016x" % client["span_id"]


def test_run_gunicorn_with_four_preforked_workers(tmp_path, udp_sink, idl_decode, programs):
    (tmp_path / "app.py").write_text(GUNICORN_APP)
    # Spans leave only when a worker exits: the flush at exit must work in every worker.
    env = _env(udp_sink.port, JAEGER_SERVICE_NAME="orders",
               JAEGER_REPORTER_FLUSH_INTERVAL="60s")
    program = Program(CLI + ["run", str(BIN / "gunicorn"), "-w", "4", "-b", "127.0.0.1:0",
                             "--graceful-timeout", "10", "app:app"], env, tmp_path)
    programs.append(program)
    port = int(program.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)").group(1))
    deadline = time.monotonic() + 20
    while program.output().count("Booting worker") < 4 and time.monotonic() < deadline:
        time.sleep(0.05)

    pids: List[int] = []
    with ThreadPoolExecutor(8) as pool:
        for _ in range(4):  # waves of concurrent requests until all four workers answered
            pids += [int(p) for p in pool.map(lambda _: _get(port, "/work"), range(8))]
            if len(set(pids)) == 4:
                break
    assert len(set(pids)) == 4, pids
    assert program.stop(signal.SIGTERM) == 0, program.output()

    spans = [s for s in _spans(udp_sink.receive(4, timeout=10), idl_decode)
             if s["name"] == "/work"]
    assert len(spans) == len(pids)
    assert sorted(s["tags"]["worker.pid"] for s in spans) == sorted(pids)
    assert len({s["span_id"] for s in spans}) == len(spans)
    assert len({s["trace_id"] for s in spans}) == len(spans)
    assert {s["service"] for s in spans} == {"orders"}
    # Each worker reports on its own, with its own client-uuid (the reporter restarted after
    # fork), and never with another worker's.
    uuid_of_pid = {}
    for span in spans:
        assert uuid_of_pid.setdefault(span["tags"]["worker.pid"], span["client_uuid"]) \
            == span["client_uuid"]
    assert len(set(uuid_of_pid.values())) == 4


def test_run_chains_an_existing_sitecustomize(tmp_path, udp_sink):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("import os\nos.environ['THEIRS_RAN'] = 'yes'\n")
    env = _env(udp_sink.port, PYTHONPATH=str(theirs))
    code = ("import os, opentracing, flask, requests, opentracing_sls\n"
            "print(os.environ.get('THEIRS_RAN'),\n"
            "      type(opentracing.global_tracer()).__name__,\n"
            "      opentracing.global_tracer().service_name,\n"
            "      hasattr(flask.Flask.wsgi_app, '__wrapped__'),\n"
            "      hasattr(requests.Session.send, '__wrapped__'))\n")
    result = subprocess.run(CLI + ["run", "--service-name", "probe", sys.executable, "-c",
                                   code], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == ["yes", "Tracer", "probe", "True", "True"], result.stderr


def test_run_with_instrument_none_sets_up_only_the_tracer(tmp_path, udp_sink):
    code = ("import flask, opentracing\n"
            "print(type(opentracing.global_tracer()).__name__,\n"
            "      hasattr(flask.Flask.wsgi_app, '__wrapped__'))\n")
    result = subprocess.run(CLI + ["run", "--instrument", "none", sys.executable, "-c", code],
                            env=_env(udp_sink.port), cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == ["Tracer", "False"], result.stderr


def test_run_exit_codes(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAEGER_")}
    no_command = subprocess.run(CLI + ["run"], env=env, capture_output=True, text=True,
                                timeout=30)
    assert no_command.returncode == 2 and "no command" in no_command.stderr
    missing = subprocess.run(CLI + ["run", "no-such-program-xyz"], env=env,
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 127 and "command not found" in missing.stderr
    env["JAEGER_USER"] = "only-the-user"
    invalid = subprocess.run(CLI + ["run", sys.executable, "-c", "pass"], env=env,
                             capture_output=True, text=True, timeout=30)
    assert invalid.returncode == 2 and "JAEGER_PASSWORD" in invalid.stderr


def test_the_program_runs_when_its_interpreter_cannot_import_us(tmp_path):
    # An interpreter without our package (say, another virtualenv): -S skips site-packages,
    # so our sitecustomize finds no opentracing_sls, reports it and lets the program run.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAEGER_")}
    env["PYTHONPATH"] = bootstrap.BOOTSTRAP_DIR
    result = subprocess.run([sys.executable, "-S", "-c",
                             "import sitecustomize; print('program ran')"],
                            env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert result.stdout.strip() == "program ran"
    assert "tracing not set up" in result.stderr


@pytest.mark.parametrize("command, expected", [
    (["python", "app.py"], "app"),
    (["/usr/bin/python3.11", "-u", "srv/productpage.py", "9080"], "productpage"),
    (["python", "-m", "flask", "run"], "flask"),
    (["gunicorn", "-w", "4", "-b", "127.0.0.1:0", "bookinfo.wsgi:application"], "bookinfo"),
    (["gunicorn", "-b", "localhost:8000", "app:create_app()"], "app"),
    (["uwsgi", "--ini", "x.ini"], "uwsgi"),
])
def test_default_service_name(command, expected):
    assert bootstrap.default_service_name(command) == expected


def test_prepare_environment_keeps_an_explicit_service_name_and_pythonpath():
    env = bootstrap.prepare_environment({"JAEGER_SERVICE_NAME": "mine", "PYTHONPATH": "/x"},
                                        ["python", "app.py"], instrument="flask",
                                        log_correlation=True)
    assert env["JAEGER_SERVICE_NAME"] == "mine"
    assert env["PYTHONPATH"] == bootstrap.BOOTSTRAP_DIR + os.pathsep + "/x"
    assert env["OPENTRACING_SLS_INSTRUMENT"] == "flask"
    assert env["OPENTRACING_SLS_LOG_CORRELATION"] == "true"


def test_boot_never_raises(monkeypatch):
    import opentracing

    import opentracing_sls

    def broken(*args, **kwargs):
        raise RuntimeError("config bug")

    monkeypatch.setattr(opentracing_sls, "Config", broken)
    tracer = bootstrap.boot({"OPENTRACING_SLS_INSTRUMENT": "requests,bogus",
                             "OPENTRACING_SLS_LOG_CORRELATION": "maybe"})
    assert type(tracer) is opentracing.Tracer
    from opentracing_sls.integrations import requests as ot_requests

    assert ot_requests.is_instrumented()
