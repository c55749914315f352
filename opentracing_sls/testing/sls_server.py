"""A local server that speaks the Alibaba Cloud Log Service (SLS) REST protocol.

The unmodified official SDK (``aliyun-log-python-sdk``) and the shim's ``aliyun_sls`` sink work
against it, so tests and benchmarks run without a cloud account::

    from aliyun.log import LogClient
    from opentracing_sls.testing.sls_server import SlsServer

    with SlsServer() as server:                      # 127.0.0.1, a free port
        client = LogClient(server.endpoint, server.access_key_id, server.access_key_secret,
                           source="127.0.0.1")
        client._isRowIp = True   # see below
        client.create_project("demo", "")
        ...
        server.logs("demo", "jaeger-span")           # what was received, decoded

What it does (``shared/reference/sls.md``):

- PutLogs (``/shards/lb`` and ``/shards/route``) with lz4, deflate, zstd or no compression;
  the LogGroup is decoded with the SDK's protobuf classes; the limits of the service are
  enforced (:class:`~.sls_server_api.Limits`) with the service's error codes.
- Signatures: V1 verified (HMAC-SHA1, ``Content-MD5``), V4 verified; an unknown AccessKeyId is
  401 ``Unauthorized``, a wrong secret 401 ``SignatureNotMatch``, a ``Date`` more than 15
  minutes off 400 ``RequestTimeExpired``.
- Projects, logstores, shards and index configs: create, get, update, delete, list, with
  ``*AlreadyExist`` / ``*NotExist`` errors.
- GetLogs (v2 ``POST .../logs`` and legacy ``GET ...?type=log``) and histograms, with the
  search part of the query language (:mod:`.sls_server_query`), ``[from, to)`` on the log time,
  ``line``/``offset``/``reverse`` paging; the analysis part (``| select ...``) goes to the
  ``sql`` hook, else it is refused with ``ParameterInvalid``.
- Faults on demand: :meth:`SlsServer.fail_next` (any error code and status),
  :meth:`~SlsServer.drop_next` (close the connection without an answer),
  :meth:`~SlsServer.set_latency`, :meth:`~SlsServer.go_down` / :meth:`~SlsServer.come_back`.
  The same over HTTP under ``/_sls_server/`` (for a server in another process; see
  :meth:`SlsServer._control`).

Pointing the SDK at it: the SDK prefixes the project to the endpoint host unless the WHOLE
endpoint string is an IPv4 address, so ``127.0.0.1:PORT`` would become
``demo.127.0.0.1:PORT``. Set ``client._isRowIp = True`` (the shim does this itself for an
endpoint whose host is an IP address or ``localhost``), or use a name and
``HTTP_PROXY=http://127.0.0.1:PORT``. The project is read from the ``Host`` header either way.

``opentracing-sls sls-server`` runs it from the command line.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

from aliyun.log.proto import LogGroupRaw

from .sls_server_api import Api, ApiError, Limits, Request, Response, SqlHook, json_response
from .sls_server_auth import verify
from .sls_server_cli import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET
from .sls_server_store import Store, StoredLog, decode_group

__all__ = ["Limits", "RequestRecord", "SlsServer", "StoredLog", "main"]

CONTROL_PREFIX = "/_sls_server/"
#: HTTP status of the error codes a fault may name without a status.
ERROR_STATUS = {"ServerBusy": 503, "InternalServerError": 500, "RequestTimeout": 500,
                "WriteQuotaExceed": 403, "ShardWriteQuotaExceed": 403,
                "ReadQuotaExceed": 403, "ShardReadQuotaExceed": 403, "ProjectForbidden": 403,
                "Unauthorized": 401, "SignatureNotMatch": 401, "PostBodyTooLarge": 400,
                "InvalidLogSize": 400, "PostBodyInvalid": 400, "RequestTimeExpired": 400,
                "ProjectNotExist": 404, "LogStoreNotExist": 404, "InvalidTimestamp": 400}


class RequestRecord(NamedTuple):
    time: float
    operation: str
    method: str
    path: str
    project: str
    status: int  # 0: the connection was dropped
    code: str  # the error code, "" on success


class _Fault(NamedTuple):
    kind: str  # "error" or "drop"
    operations: Optional[Tuple[str, ...]]
    status: int
    code: str
    message: str


class SlsServer:
    """The server; :meth:`start` binds (port 0 = a free one) and serves on a thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 accounts: Optional[Mapping[str, str]] = None, *, path: Optional[str] = None,
                 limits: Optional[Limits] = None, check_date: bool = True,
                 sql: Optional[SqlHook] = None,
                 endpoint_hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> None:
        self.host = host
        self.port = port
        self.accounts: Dict[str, str] = dict(
            accounts or {DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET})
        self.check_date = check_date
        self.store = Store(path)
        self.api = Api(self.store, limits or Limits(), sql)
        self.endpoint_hosts = tuple(h.lower() for h in endpoint_hosts) + (host.lower(),)
        self.requests: List[RequestRecord] = []
        self._faults: List[_Fault] = []
        self._latency: Dict[Optional[str], float] = {}
        self._down = False
        self._lock = threading.Lock()
        self._http: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> SlsServer:
        self._http = _HttpServer((self.host, self.port), _Handler)
        self._http.daemon_threads = True
        self._http.sls = self  # type: ignore[attr-defined]
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,),
                                        name="sls-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self.store.close()

    def __enter__(self) -> SlsServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``host:port``, for ``LogClient`` or ``storage.aliyun_sls.endpoint``."""
        return "%s:%d" % (self.host, self.port)

    @property
    def access_key_id(self) -> str:
        return next(iter(self.accounts))

    @property
    def access_key_secret(self) -> str:
        return self.accounts[self.access_key_id]

    # -- faults ----------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, code: str = "ServerBusy", status: Optional[int] = None,
                  message: str = "", operations: Optional[Sequence[str]] = None) -> None:
        """The next ``count`` requests (of ``operations``, e.g. ``["put_logs"]``; default
        any) get error ``code``; the status defaults to the service's for that code."""
        fault = _Fault("error", tuple(operations) if operations else None,
                       status or ERROR_STATUS.get(code, 500), code,
                       message or "injected by the SLS test server")
        with self._lock:
            self._faults.extend([fault] * count)

    def drop_next(self, count: int = 1, operations: Optional[Sequence[str]] = None) -> None:
        """The next ``count`` requests get no answer: the connection is closed."""
        fault = _Fault("drop", tuple(operations) if operations else None, 0, "", "")
        with self._lock:
            self._faults.extend([fault] * count)

    def set_latency(self, seconds: float, operation: Optional[str] = None) -> None:
        """Every answer (to ``operation``, or all) waits ``seconds`` first; 0 removes it
        (without an operation: every latency set)."""
        with self._lock:
            if seconds <= 0 and operation is None:
                self._latency.clear()
            else:
                self._latency[operation] = seconds

    def go_down(self) -> None:
        """From now on every request's connection is closed without an answer."""
        self._down = True

    def come_back(self) -> None:
        self._down = False

    def reset_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._latency.clear()
        self._down = False

    # -- what was received -----------------------------------------------------------------------

    def logs(self, project: str, logstore: str) -> List[StoredLog]:
        """Every log received, in arrival order, decoded with the SDK's protobuf classes."""
        return self.store.logs(project, logstore)

    def raw_groups(self, project: str, logstore: str) -> List[bytes]:
        """The LogGroup protobuf bodies as received (decompressed), one per PutLogs."""
        return [batch.raw() for batch in self.store.batches(project, logstore)]

    def count_unique(self, project: str, logstore: str,
                     keys: Sequence[str] = ("traceID", "spanID")) -> Tuple[int, int]:
        """(logs, distinct values of ``keys``) over everything received, decoding one batch at
        a time (for runs too large to hold decoded; duplicates = logs - distinct)."""
        seen = set()
        total = 0
        for batch in self.store.batches(project, logstore):
            for log in LogGroupRaw.FromString(batch.raw()).Logs:
                values = {c.Key: c.Value for c in log.Contents if c.Key in keys}
                seen.add(tuple(values.get(k) for k in keys))
                total += 1
        return total, len(seen)

    def log_count(self, project: str, logstore: str) -> int:
        with self.store.lock:
            project_ = self.store.projects.get(project)
            store = project_.logstores.get(logstore) if project_ else None
            return store.count if store else 0

    def index_config(self, project: str, logstore: str) -> Optional[Dict[str, Any]]:
        with self.store.lock:
            project_ = self.store.projects.get(project)
            store = project_.logstores.get(logstore) if project_ else None
            return store.index if store else None

    def request_count(self, operation: Optional[str] = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if operation in (None, r.operation))

    # -- serving ---------------------------------------------------------------------------------

    def project_of(self, host_header: str) -> str:
        """The project prefix of ``Host`` (``<project>.<endpoint host>``), or ""; never the
        first label of an IP address (§10)."""
        host = host_header.strip().lower()
        if host.startswith("[") or host.count(":") == 1:
            host = host.rsplit(":", 1)[0] if not host.startswith("[") else host
        for suffix in self.endpoint_hosts:
            if host == suffix:
                return ""
            if host.endswith("." + suffix):
                return host[:-len(suffix) - 1]
        if host.replace(".", "").isdigit():
            return ""
        return host.split(".", 1)[0] if host.count(".") >= 2 else ""

    def serve(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
              ) -> Optional[Response]:
        """The answer to one request; None means "close the connection, no answer"."""
        parts = urlsplit(raw_path)
        path = unquote(parts.path) or "/"
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if path.startswith(CONTROL_PREFIX):
            return self._control(method, path, params, body)
        lower = {k.lower(): v for k, v in headers.items()}
        project = self.project_of(lower.get("host", ""))
        operation, logstore = Api.operation(method, path, params, project)
        with self._lock:
            fault = next((f for f in self._faults
                          if f.operations is None or operation in f.operations), None)
            if fault is not None:
                self._faults.remove(fault)
            latency = self._latency.get(operation, self._latency.get(None, 0.0))
        if latency:
            time.sleep(latency)
        status, code, response = 0, "", None
        if self._down or (fault is not None and fault.kind == "drop"):
            pass
        else:
            try:
                if fault is not None:
                    raise ApiError(fault.status, fault.code, fault.message)
                failure = verify(self.accounts, method, path, params, headers, body,
                                 time.time(), self.check_date)
                if failure is not None:
                    raise ApiError(*failure)
                response = self.api.handle(operation, logstore, Request(
                    method, path, params, lower, body, project))
            except ApiError as exc:
                code = exc.code
                response = json_response({"errorCode": exc.code, "errorMessage": exc.message},
                                         status=exc.status)
            status = response[0]
        with self._lock:
            self.requests.append(RequestRecord(time.time(), operation, method, path, project,
                                               status, code))
        return response

    def _control(self, method: str, path: str, params: Mapping[str, str],
                 body: bytes) -> Response:
        """``GET /_sls_server/stats``: requests and log counts per logstore.
        ``GET /_sls_server/logs?project=&logstore=``: the received logs as rows.
        ``GET /_sls_server/unique?project=&logstore=[&keys=traceID,spanID]``: logs and
        distinct key values.
        ``POST /_sls_server/faults`` with JSON ``{"fail_next": n, "code": "ServerBusy",
        "status": 503, "operations": [...]}``, ``{"drop_next": n}``, ``{"latency": s}``,
        ``{"down": true|false}`` or ``{"reset": true}``."""
        action = path[len(CONTROL_PREFIX):].strip("/")
        if action == "stats" and method == "GET":
            with self.store.lock:
                counts = {"%s/%s" % (p.name, s.name): s.count
                          for p in self.store.projects.values() for s in p.logstores.values()}
            return json_response({"requests": self.request_count(), "logs": counts,
                                  "down": self._down})
        if action == "unique" and method == "GET":
            total, unique = self.count_unique(params.get("project", ""),
                                              params.get("logstore", ""),
                                              params.get("keys", "traceID,spanID").split(","))
            return json_response({"logs": total, "unique": unique})
        if action == "logs" and method == "GET":
            return json_response([log.row() for log in
                                  self.logs(params.get("project", ""),
                                            params.get("logstore", ""))])
        if action == "faults" and method == "POST":
            try:
                spec = json.loads(body.decode("utf-8") or "{}")
                if spec.get("reset"):
                    self.reset_faults()
                if "fail_next" in spec:
                    self.fail_next(int(spec["fail_next"]), spec.get("code", "ServerBusy"),
                                   spec.get("status"), spec.get("message", ""),
                                   spec.get("operations"))
                if "drop_next" in spec:
                    self.drop_next(int(spec["drop_next"]), spec.get("operations"))
                if "latency" in spec:
                    self.set_latency(float(spec["latency"]), spec.get("operation"))
                if "down" in spec:
                    (self.go_down if spec["down"] else self.come_back)()
            except (ValueError, TypeError, AttributeError) as exc:
                return json_response({"error": str(exc)}, status=400)
            return json_response({"ok": True})
        return json_response({"error": "unknown control request"}, status=404)


class _HttpServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts, dropped connections) are part of the game here.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests.Session expects
    # Without TCP_NODELAY every keep-alive request waits ~40 ms (Nagle + delayed ACK).
    disable_nagle_algorithm = True
    server_version = "opentracing-sls-test-server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        response = self.server.sls.serve(method, self.path, self.headers, body)  # type: ignore
        if response is None:
            self.close_connection = True
            return
        status, headers, payload = response
        try:
            self.send_response(status)
            self.send_header("x-log-requestid", uuid.uuid4().hex.upper()[:24])
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if payload:
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. a latency fault)

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")


def main(args: argparse.Namespace) -> int:
    secret = DEFAULT_ACCESS_KEY_SECRET
    if args.access_key_secret_file:
        with open(args.access_key_secret_file, encoding="utf-8") as handle:
            secret = handle.read().strip()
    server = SlsServer(args.host, args.port, {args.access_key_id: secret},
                       path=args.db or None, check_date=not args.no_check_date).start()
    print("SLS test server on %s (endpoint %s, AccessKeyId %s)" % (
        "http://" + server.endpoint, server.endpoint, args.access_key_id), flush=True)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def decode_log_group(raw: bytes) -> List[StoredLog]:
    """A LogGroup protobuf body as :class:`StoredLog` records (the SDK's protobuf classes)."""
    return decode_group(raw)
