"""The web UI's files: served at ``/`` with deep links, correct types, only shipped files;
every asset the pages reference exists; the JavaScript parses, and its pure trace model
works (under Node.js when installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from opentracing_sls.shim.query_ui import UI_DIR

from .conftest import QueryServer

JS_IMPORT = re.compile(r'^import\s[^;]*?from\s+"\./([^"]+)";', re.MULTILINE)
NODE = shutil.which("node")


def js_files() -> list:
    return sorted(UI_DIR.glob("*.js"))


@pytest.mark.parametrize("path", ["/", "/search", "/search?service=api&lookback=1h",
                                  "/trace/0000000000abcdef0000000000001234",
                                  "/trace/77?span=0000000000000002", "/dependencies",
                                  "/stats?lookback=2h", "/some/old/bookmark"])
def test_every_app_path_serves_the_index(local_server: QueryServer, path: str) -> None:
    response = local_server.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/static/app.js"></script>' in response.text
    assert response.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("name,content_type", [
    ("app.js", "text/javascript; charset=utf-8"), ("app.css", "text/css; charset=utf-8"),
    ("index.html", "text/html; charset=utf-8")])
def test_assets_have_their_content_types(local_server: QueryServer, name: str,
                                         content_type: str) -> None:
    response = local_server.get("/static/" + name)
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.body == (UI_DIR / name).read_bytes()


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/..%2Fquery_api.py",
                                  "/static/../query_api.py", "/static/", "/favicon.ico"])
def test_only_shipped_files_are_served(local_server: QueryServer, path: str) -> None:
    response = local_server.get(path)
    if response.status == 200:  # a normalized ``..`` path lands on the index fallback
        assert "<!doctype html>" in response.text and "import" not in response.text[:200]
    else:
        assert response.status == 404


def test_every_referenced_asset_exists_and_is_served(local_server: QueryServer) -> None:
    index = (UI_DIR / "index.html").read_text(encoding="utf-8")
    referenced = set(re.findall(r'(?:src|href)="/static/([^"]+)"', index))
    assert {"app.js", "app.css"} <= referenced
    pending = list(referenced)
    seen = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        assert (UI_DIR / name).is_file(), "%s is referenced but not in shim/ui" % name
        assert local_server.get("/static/" + name).status == 200
        if name.endswith(".js"):
            pending += JS_IMPORT.findall((UI_DIR / name).read_text(encoding="utf-8"))
    # Every module is reachable from app.js (no dead files shipped).
    assert {p.name for p in js_files()} <= seen


def test_the_ui_needs_no_network() -> None:
    for path in UI_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text), path.name
        assert not re.search(r"""(?:import|from)\s*\(?\s*["'](?:https?:)?//""", text), path.name
        assert "@import" not in text and "url(http" not in text, path.name


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed (the parse check needs it)")
@pytest.mark.parametrize("path", js_files(), ids=lambda p: p.name)
def test_javascript_parses(path: Path, tmp_path: Path) -> None:
    copy = tmp_path / (path.stem + ".mjs")  # .mjs: parse as a module whatever the version
    copy.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run([NODE, "--check", str(copy)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr


MODEL_SCRIPT = r"""
import { prepareTrace, visibleSpans, selfTime, serviceBreakdown } from "%(model)s";
import { parseLogfmt, toLogfmt, formatDuration, ticks } from "%(util)s";
import { layout } from "%(deps)s";
const trace = JSON.parse(process.argv[2]);
const t = prepareTrace(trace);
const out = {
  order: t.order.map((s) => [s.key, s.depth]),
  name: t.name, start: t.start, duration: t.duration, errors: t.errors, depth: t.depth,
  services: [...t.services.entries()],
  collapsed: visibleSpans(t.order, new Set([t.order[1].key, t.order[2].key])).map((s) => s.key),
  self: t.order.map((s) => selfTime(s)),
  breakdown: serviceBreakdown(t).map((r) => [r.service, r.spans, r.selfTime]),
  logfmt: parseLogfmt('error=true http.url="/a b" k="say \\"hi\\""'),
  roundTrip: parseLogfmt(toLogfmt({a: "x y", b: "1"})),
  durations: [999, 1500, 2500000, 61e6].map(formatDuration),
  ticks: ticks(0, 1000, 5),
  cycle: [...layout([{parent: "a", child: "b", callCount: 5},
                     {parent: "b", child: "c", callCount: 5},
                     {parent: "c", child: "a", callCount: 1}]).back],
};
let bad = null;
try { parseLogfmt("novalue"); } catch (e) { bad = e.message; }
out.bad = bad;
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(NODE is None, reason="Node.js is not installed")
def test_trace_model_under_node(tmp_path: Path) -> None:
    def span(span_id: str, parent: str, service: str, start: int, duration: int,
             error: bool = False) -> dict:
        return {"traceID": "00000000000000ab", "spanID": span_id, "operationName": "op" + span_id,
                "references": [{"refType": "CHILD_OF", "traceID": "00000000000000ab",
                                "spanID": parent}] if parent else [],
                "startTime": start, "duration": duration, "processID": service,
                "tags": [{"key": "error", "type": "bool", "value": True}] if error else []}

    trace = {"traceID": "00000000000000AB", "processes": {
        "p1": {"serviceName": "web"}, "p2": {"serviceName": "api"}},
        "spans": [span("3", "2", "p2", 1030, 20), span("1", "", "p1", 1000, 100),
                  span("2", "1", "p2", 1010, 50, error=True),
                  span("2", "1", "p1", 1005, 60),  # a shared (Zipkin) span id
                  span("4", "1", "p1", 1070, 40),  # runs past its parent's end
                  span("9", "missing", "p1", 1200, 5),  # orphan: a root
                  span("0", "", "p1", 0, 5)]}  # no start time: dropped, as the Jaeger UI does
    script = tmp_path / "check.mjs"
    script.write_text(MODEL_SCRIPT % {"model": (UI_DIR / "model.js").as_uri(),
                                      "util": (UI_DIR / "util.js").as_uri(),
                                      "deps": (UI_DIR / "deps.js").as_uri()}, encoding="utf-8")
    result = subprocess.run([NODE, str(script), json.dumps(trace)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # Children by start time; the shared id "2" gets a unique key; "3" hangs under the
    # api-side "2" (its own service); the orphan is a second root.
    assert out["order"] == [["1", 0], ["2_1", 1], ["2", 1], ["3", 2], ["4", 1], ["9", 0]]
    assert out["name"] == "web: op1" and out["errors"] == 1 and out["depth"] == 3
    assert out["start"] == 1000 and out["duration"] == 205
    assert out["services"] == [["api", 2], ["web", 4]]
    assert out["collapsed"] == ["1", "2_1", "2", "4", "9"]  # "2" hides "3"; "2_1" hides none
    # Self time: 1 [1000, 1100) waits for children over [1005, 1065) and [1070, 1100)
    # (4 is clipped at its parent's end) -> 10 left; 2 waits for 3 -> 30 left.
    assert out["self"] == [10, 60, 30, 20, 40, 5]
    assert out["breakdown"][0] == ["web", 4, 115]
    assert out["logfmt"] == {"error": "true", "http.url": "/a b", "k": 'say "hi"'}
    assert out["roundTrip"] == {"a": "x y", "b": "1"}
    assert out["durations"] == ["999μs", "1.5ms", "2.5s", "1m 1s"]
    assert out["ticks"] == [0, 200, 400, 600, 800, 1000]
    assert out["cycle"] == ["c\na"]  # the weak edge against the flow is the back edge
    assert "expected key=value" in out["bad"]


ROOT = Path(__file__).resolve().parents[2]


def test_the_query_doc_links_and_pictures_resolve() -> None:
    doc = ROOT / "docs" / "query-ui.md"
    text = doc.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert any(t.startswith("images/") for t in targets)
    for target in targets:
        if "://" not in target:
            assert (doc.parent / target).exists(), "docs/query-ui.md links to missing %s" % target
    assert "](docs/query-ui.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](query-ui.md)" in (ROOT / "docs" / "shim.md").read_text(encoding="utf-8")


def test_every_api_route_is_documented() -> None:
    from opentracing_sls.shim.query_api import QueryApi

    text = (ROOT / "docs" / "query-ui.md").read_text(encoding="utf-8")
    for route in QueryApi(None, None).routes():  # type: ignore[arg-type]
        path = route.path.replace("{trace_id}", "{traceID}")
        if path.endswith("{tail:.*}"):
            continue
        assert "`GET %s" % path in text, "docs/query-ui.md does not document %s" % path
