"""``opentracing-sls traces``: run as a subprocess on a store filled here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from opentracing_sls.shim.model import (
    BOOL,
    CHILD_OF,
    LONG,
    STRING,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)
from opentracing_sls.shim.store import LocalStore
from opentracing_sls.shim.traces_cli import span_tree

NOW = int(time.time() * 1_000_000)
WEB = Process("web", (Tag("hostname", STRING, "web-1"),))
API = Process("api", ())
CHECKOUT = (0xABC << 64) | 0x123  # 128-bit
HOME = 0x77


def make_span(trace_id: int, span_id: int, parent_id: int, operation: str, start: int,
              duration: int, process: Process, tags=(), logs=()) -> Span:
    refs = (Reference(CHILD_OF, trace_id, parent_id),) if parent_id else ()
    return Span(trace_id, span_id, parent_id, operation, 1, start, duration, tuple(tags),
                tuple(logs), refs, process)


@pytest.fixture()
def store_path(tmp_path: Path) -> str:
    path = str(tmp_path / "spans.db")
    checkout = NOW - 60_000_000  # a minute ago
    home = NOW - 30_000_000
    old = NOW - 3 * 3_600_000_000
    with LocalStore(path) as store:
        store.write_spans([
            make_span(CHECKOUT, 1, 0, "POST /checkout", checkout, 250_000, WEB,
                      tags=(Tag("span.kind", STRING, "server"),
                            Tag("http.status_code", LONG, 500), Tag("error", BOOL, True)),
                      logs=(Log(checkout + 5, (Tag("event", STRING, "error"),
                                               Tag("message", STRING, "card declined"))),)),
            make_span(CHECKOUT, 2, 1, "charge", checkout + 10_000, 200_000, API,
                      tags=(Tag("span.kind", STRING, "server"),)),
            make_span(CHECKOUT, 3, 2, "SELECT cards", checkout + 20_000, 5_000, API),
            make_span(HOME, 1, 0, "GET /", home, 12_000, WEB,
                      tags=(Tag("span.kind", STRING, "server"),
                            Tag("http.status_code", LONG, 200))),
            make_span(0x99, 1, 0, "GET /old", old, 1_000, WEB),
        ])
    return path


def run(*args: str, env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "OPENTRACING_SLS_STORE"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "opentracing_sls.cli", "traces", *args],
                          capture_output=True, text=True, timeout=60, env=environ, cwd=cwd)


def test_services(store_path: str) -> None:
    result = run("--store", store_path, "services")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["api", "web"]
    data = json.loads(run("services", "--store", store_path, "--json").stdout)
    assert data == {"data": ["api", "web"], "total": 2, "limit": 0, "offset": 0,
                    "errors": None}


def test_find_table(store_path: str) -> None:
    result = run("--store", store_path, "find", "--service", "web")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["TRACE", "ID", "START", "DURATION", "SPANS", "ERRORS", "ROOT",
                              "SERVICES"]
    assert len(rows) == 3  # the 48 h default window holds all three
    home, checkout, old = rows
    assert home.startswith("0000000000000077 ")
    assert "12.000 ms" in home and " 1 " in home and "web: GET /" in home and "web(1)" in home
    assert checkout.startswith("0000000000000abc0000000000000123 ")
    assert "250.000 ms" in checkout and " 3 " in checkout and "1 !" in checkout
    assert "web: POST /checkout" in checkout and "api(2) web(1)" in checkout
    assert "web: GET /old" in old
    start = re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", checkout)
    assert start is not None  # local ISO time with offset


def test_find_filters(store_path: str) -> None:
    def ids(*args: str) -> List[str]:
        result = run("--store", store_path, "find", *args)
        assert result.returncode == 0, result.stderr
        return [line.split()[0] for line in result.stdout.splitlines()[1:]]

    assert ids("--service", "web", "--lookback", "1h") == ["0000000000000077",
                                                          "0000000000000abc0000000000000123"]
    assert ids("--service", "web", "--tag", "http.status_code=500", "--tag", "error=true") == \
        ["0000000000000abc0000000000000123"]
    assert ids("--service", "web", "--tag", "hostname=web-1", "--limit", "1") == \
        ["0000000000000077"]
    assert ids("--service", "api", "--operation", "charge") == \
        ["0000000000000abc0000000000000123"]
    assert ids("--service", "web", "--min-duration", "100ms", "--max-duration", "1s") == \
        ["0000000000000abc0000000000000123"]
    none = run("--store", store_path, "find", "--service", "web", "--tag", "error=false")
    assert none.returncode == 0 and none.stdout == "" and "no traces" in none.stderr


def test_find_json_is_the_api_envelope(store_path: str) -> None:
    result = run("--store", store_path, "find", "--service", "api", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert set(body) == {"data", "total", "limit", "offset", "errors"}
    assert body["errors"] is None
    (trace,) = body["data"]
    assert trace["traceID"] == "0000000000000abc0000000000000123"
    assert [span["operationName"] for span in trace["spans"]] == [
        "POST /checkout", "charge", "SELECT cards"]
    assert trace["processes"] == {
        "p1": {"serviceName": "web",
               "tags": [{"key": "hostname", "type": "string", "value": "web-1"}]},
        "p2": {"serviceName": "api", "tags": []}}
    assert trace["spans"][1]["references"] == [
        {"refType": "CHILD_OF", "traceID": trace["traceID"], "spanID": "0000000000000001"}]


def test_get_tree(store_path: str) -> None:
    result = run("--store", store_path, "get", "abc0000000000000123")
    assert result.returncode == 0, result.stderr
    title, root, charge, select = result.stdout.splitlines()
    assert title.startswith("Trace 0000000000000abc0000000000000123: 3 spans, 2 services, "
                            "250.000 ms, started ")
    assert root.startswith("web: POST /checkout  250.000 ms  +0.000 ms  ")
    assert "[span.kind=server http.status_code=500]" in root
    assert "ERROR (event=error message=card declined)" in root
    assert charge.startswith("  api: charge  200.000 ms  +10.000 ms  [span.kind=server]")
    assert select == "    api: SELECT cards  5.000 ms  +20.000 ms"


def test_get_json(store_path: str) -> None:
    body = json.loads(run("--store", store_path, "get", "77", "--json").stdout)
    assert body["errors"] is None
    assert [trace["traceID"] for trace in body["data"]] == ["0000000000000077"]


def test_store_from_environment_and_default(store_path: str, tmp_path: Path) -> None:
    result = run("services", env={"OPENTRACING_SLS_STORE": store_path})
    assert result.returncode == 0 and result.stdout.split() == ["api", "web"]
    os.rename(store_path, str(tmp_path / "spans.db.moved"))
    os.rename(str(tmp_path / "spans.db.moved"), str(tmp_path / "spans.db"))
    result = run("services", cwd=str(tmp_path))  # ./spans.db
    assert result.returncode == 0 and result.stdout.split() == ["api", "web"]


def test_errors(store_path: str, tmp_path: Path) -> None:
    missing = run("--store", str(tmp_path / "nope.db"), "services")
    assert missing.returncode == 2
    assert "no span store at %s" % (tmp_path / "nope.db") in missing.stderr
    assert not (tmp_path / "nope.db").exists()
    bad_id = run("--store", store_path, "get", "not-hex")
    assert bad_id.returncode == 2 and "trace id" in bad_id.stderr
    unknown = run("--store", store_path, "get", "42")
    assert unknown.returncode == 1 and "trace 0000000000000042 not found" in unknown.stderr
    unknown_json = run("--store", store_path, "get", "42", "--json")
    assert unknown_json.returncode == 1
    assert json.loads(unknown_json.stdout)["errors"] == [
        {"code": 404, "msg": "trace not found", "traceID": "0000000000000042"}]
    bad_duration = run("--store", store_path, "find", "--service", "web", "--min-duration",
                       "soon")
    assert bad_duration.returncode == 2 and "duration" in bad_duration.stderr
    reversed_range = run("--store", store_path, "find", "--service", "web",
                         "--min-duration", "1s", "--max-duration", "1ms")
    assert reversed_range.returncode == 2 and "--max-duration" in reversed_range.stderr
    bad_tag = run("--store", store_path, "find", "--service", "web", "--tag", "novalue")
    assert bad_tag.returncode == 2 and "KEY=VALUE" in bad_tag.stderr
    no_action = run("--store", store_path)
    assert no_action.returncode == 2 and "services" in no_action.stdout


def test_span_tree_handles_orphans_shared_ids_and_cycles() -> None:
    spans = [make_span(1, 5, 4, "child of missing", 10, 1, WEB),
             make_span(1, 9, 0, "client half", 0, 1, WEB),
             make_span(1, 9, 0, "server half", 1, 1, API),
             make_span(1, 10, 9, "api local", 2, 1, API),
             make_span(1, 20, 21, "loop a", 3, 1, API),
             make_span(1, 21, 20, "loop b", 4, 1, API)]
    tree = [(depth, span.operation_name) for depth, span in span_tree(spans)]
    assert tree[:4] == [(0, "client half"), (0, "server half"), (1, "api local"),
                        (0, "child of missing")]
    assert sorted(name for _, name in tree[4:]) == ["loop a", "loop b"]
    assert len(tree) == len(spans)
