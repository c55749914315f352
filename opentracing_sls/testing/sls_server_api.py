"""The SLS REST operations of the test server: what each answers, as the SDK needs it.

Every handler takes the parsed request and returns ``(status, headers, body)``; an SLS error
is raised as :class:`ApiError` and becomes ``{"errorCode", "errorMessage"}`` with its status.
The response shapes, headers and error codes follow ``shared/reference/sls.md`` §6–§8.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from aliyun.log.proto import LogGroupRaw
from google.protobuf.message import DecodeError

from .sls_server_query import QueryError, select, split_query
from .sls_server_store import Batch, Logstore, Project, Store, decompress

Response = Tuple[int, Dict[str, str], bytes]
SqlHook = Callable[[List[Dict[str, str]], str, str], List[Dict[str, str]]]

_PROJECT = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]\Z")
_LOGSTORE = re.compile(r"[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]\Z")
RESERVED_KEYS = frozenset(("__time__", "__source__", "__topic__", "__partition_time__",
                           "_extract_others_", "__extract_others__"))


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Limits(NamedTuple):
    """The service's limits (§8); lower them to exercise a client's splitting."""

    max_request_raw_bytes: int = 10 * 1024 * 1024  # PutLogs: 400 PostBodyTooLarge
    max_group_logs: int = 4096  # 400 InvalidLogSize
    max_group_raw_bytes: int = 5 * 1024 * 1024  # 400 InvalidLogSize
    max_value_bytes: int = 1024 * 1024  # 400 InvalidLogSize
    max_key_bytes: int = 128  # 400 InvalidKey
    check_keys: bool = True  # per-key checks cost a little CPU per log


class Request(NamedTuple):
    method: str
    path: str
    params: Dict[str, str]
    headers: Dict[str, str]  # lower-case names
    body: bytes
    project: str


def json_response(value: Any, status: int = 200,
                  headers: Optional[Dict[str, str]] = None) -> Response:
    return status, dict(headers or {}, **{"Content-Type": "application/json"}), \
        json.dumps(value).encode("utf-8")


class Api:
    def __init__(self, store: Store, limits: Limits, sql: Optional[SqlHook]) -> None:
        self.store = store
        self.limits = limits
        self.sql = sql

    # -- routing ---------------------------------------------------------------------------------

    @staticmethod
    def operation(method: str, path: str, params: Mapping[str, str],
                  project: str) -> Tuple[str, str]:
        """(operation, logstore) for a request; operation ``unknown`` when not served."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            if not project:
                return ("list_project" if method == "GET" else "unknown"), ""
            return {"GET": "get_project", "POST": "create_project", "PUT": "update_project",
                    "DELETE": "delete_project"}.get(method, "unknown"), ""
        if parts[0] != "logstores":
            return "unknown", ""
        if len(parts) == 1:
            return {"GET": "list_logstore", "POST": "create_logstore"}.get(method,
                                                                         "unknown"), ""
        logstore = parts[1]
        rest = parts[2:]
        if not rest:
            if method == "GET":
                kind = params.get("type", "")
                return {"log": "get_logs_v1", "histogram": "get_histograms"}.get(
                    kind, "get_logstore"), logstore
            return {"DELETE": "delete_logstore", "PUT": "update_logstore"}.get(
                method, "unknown"), logstore
        if rest == ["shards"] and method == "GET":
            return "list_shards", logstore
        if rest in (["shards", "lb"], ["shards", "route"]) and method == "POST":
            return "put_logs", logstore
        if rest == ["index"]:
            return {"GET": "get_index", "POST": "create_index", "PUT": "update_index",
                    "DELETE": "delete_index"}.get(method, "unknown"), logstore
        if rest == ["logs"] and method == "POST":
            return "get_logs", logstore
        return "unknown", logstore

    def handle(self, operation: str, logstore: str, request: Request) -> Response:
        handler = getattr(self, "_" + operation, None)
        if handler is None:
            raise ApiError(400, "NotSupported", "the SLS test server does not implement %s %s"
                           % (request.method, request.path))
        return handler(request, logstore) if logstore else handler(request)

    # -- projects --------------------------------------------------------------------------------

    def _project(self, request: Request) -> Project:
        project = self.store.projects.get(request.project)
        if project is None:
            raise ApiError(404, "ProjectNotExist",
                           "The Project does not exist : %s" % request.project)
        return project

    def _logstore(self, request: Request, name: str) -> Logstore:
        store = self._project(request).logstores.get(name)
        if store is None:
            raise ApiError(404, "LogStoreNotExist", "logstore %s does not exist" % name)
        return store

    def _create_project(self, request: Request) -> Response:
        body = _json_body(request)
        name = request.project or str(body.get("projectName", ""))
        if not _PROJECT.match(name):
            raise ApiError(400, "ParameterInvalid", "invalid project name: %s" % name)
        with self.store.lock:
            if name in self.store.projects:
                raise ApiError(400, "ProjectAlreadyExist", "Project %s already exist" % name)
            self.store.projects[name] = Project(name, str(body.get("description", "")))
        return 200, {}, b""

    def _get_project(self, request: Request) -> Response:
        project = self._project(request)
        return json_response({"projectName": project.name, "description": project.description,
                              "status": "Normal", "region": "local", "owner": "",
                              "createTime": str(project.created),
                              "lastModifyTime": str(project.created), "resourceGroupId": ""})

    def _update_project(self, request: Request) -> Response:
        self._project(request).description = str(_json_body(request).get("description", ""))
        return 200, {}, b""

    def _delete_project(self, request: Request) -> Response:
        project = self._project(request)
        with self.store.lock:
            for name in list(project.logstores):
                self.store.drop_logstore(project.name, name)
            del self.store.projects[project.name]
        return 200, {}, b""

    def _list_project(self, request: Request) -> Response:
        names = sorted(self.store.projects)
        return json_response({"count": len(names), "total": len(names),
                              "projects": [{"projectName": n, "status": "Normal",
                                            "description": self.store.projects[n].description}
                                           for n in names]})

    # -- logstores -------------------------------------------------------------------------------

    def _create_logstore(self, request: Request) -> Response:
        project = self._project(request)
        body = _json_body(request)
        name = str(body.get("logstoreName", ""))
        if not _LOGSTORE.match(name):
            raise ApiError(400, "ParameterInvalid", "invalid logstore name: %s" % name)
        now = int(time.time())
        meta = {"logstoreName": name, "ttl": int(body.get("ttl", 30)),
                "shardCount": int(body.get("shardCount", 2)),
                "enable_tracking": bool(body.get("enable_tracking", False)),
                "appendMeta": bool(body.get("appendMeta", False)),
                "autoSplit": bool(body.get("autoSplit", True)),
                "maxSplitShard": int(body.get("maxSplitShard", 64)),
                "createTime": now, "lastModifyTime": now}
        with self.store.lock:
            if name in project.logstores:
                raise ApiError(400, "LogStoreAlreadyExist",
                               "logstore %s already exists" % name)
            project.logstores[name] = Logstore(name, meta)
        return 200, {}, b""

    def _get_logstore(self, request: Request, name: str) -> Response:
        return json_response(self._logstore(request, name).meta)

    def _update_logstore(self, request: Request, name: str) -> Response:
        store = self._logstore(request, name)
        store.meta.update({k: v for k, v in _json_body(request).items() if k in store.meta})
        return 200, {}, b""

    def _delete_logstore(self, request: Request, name: str) -> Response:
        project = self._project(request)
        self._logstore(request, name)
        with self.store.lock:
            del project.logstores[name]
            self.store.drop_logstore(project.name, name)
        return 200, {}, b""

    def _list_logstore(self, request: Request) -> Response:
        names = sorted(self._project(request).logstores)
        return json_response({"count": len(names), "total": len(names), "logstores": names})

    def _list_shards(self, request: Request, name: str) -> Response:
        count = int(self._logstore(request, name).meta.get("shardCount", 2))
        step = (1 << 128) // count
        return json_response([{"shardID": i, "status": "readwrite",
                               "inclusiveBeginKey": "%032x" % (i * step),
                               "exclusiveEndKey": "%032x" % min((i + 1) * step, (1 << 128) - 1),
                               "createTime": int(time.time())} for i in range(count)])

    # -- index -----------------------------------------------------------------------------------

    def _create_index(self, request: Request, name: str) -> Response:
        store = self._logstore(request, name)
        if store.index is not None:
            raise ApiError(400, "IndexAlreadyExist", "Logstore index is already created.")
        store.index = _index_body(request)
        return 200, {}, b""

    def _update_index(self, request: Request, name: str) -> Response:
        self._logstore(request, name).index = _index_body(request)
        return 200, {}, b""

    def _get_index(self, request: Request, name: str) -> Response:
        store = self._logstore(request, name)
        if store.index is None:
            raise ApiError(400, "IndexConfigNotExist", "logstore without index config")
        return json_response(dict(store.index, ttl=store.meta["ttl"]))

    def _delete_index(self, request: Request, name: str) -> Response:
        store = self._logstore(request, name)
        if store.index is None:
            raise ApiError(400, "IndexConfigNotExist", "logstore without index config")
        store.index = None
        return 200, {}, b""

    # -- PutLogs ---------------------------------------------------------------------------------

    def _put_logs(self, request: Request, name: str) -> Response:
        project = self._project(request)
        self._logstore(request, name)
        headers = request.headers
        if "x-log-bodyrawsize" not in headers:
            raise ApiError(400, "MissingBodyRawSize", "x-log-bodyrawsize is required")
        try:
            raw_size = int(headers["x-log-bodyrawsize"])
        except ValueError:
            raise ApiError(400, "InvalidBodyRawSize", "x-log-bodyrawsize is invalid") from None
        limits = self.limits
        if raw_size > limits.max_request_raw_bytes:
            raise ApiError(400, "PostBodyTooLarge", "body size %d must little than %d"
                           % (raw_size, limits.max_request_raw_bytes))
        compress = headers.get("x-log-compresstype", "")
        if compress not in ("", "lz4", "deflate", "zstd"):
            raise ApiError(400, "InvalidCompressType", "unsupported compress type %s" % compress)
        try:
            raw = decompress(request.body, compress, raw_size)
        except ValueError as exc:
            raise ApiError(400, "PostBodyUncompressError", str(exc)) from None
        try:
            group = LogGroupRaw.FromString(raw)
        except DecodeError:
            raise ApiError(400, "PostBodyInvalid", "the body is not a LogGroup") from None
        count = len(group.Logs)
        if count > limits.max_group_logs or raw_size > limits.max_group_raw_bytes:
            raise ApiError(400, "InvalidLogSize", "logs count %d or size %d exceed the limit"
                           % (count, raw_size))
        if limits.check_keys or raw_size > limits.max_value_bytes:
            _check_logs(group, limits, raw_size)
        self.store.add_batch(project.name, name, Batch(time.time(), compress, raw_size, count,
                                                       request.body))
        return 200, {}, b""

    # -- GetLogs and histograms ------------------------------------------------------------------

    def _search(self, request: Request, name: str, params: Mapping[str, Any]
                ) -> Tuple[List[Dict[str, str]], str, str]:
        store = self._logstore(request, name)
        if store.index is None:
            raise ApiError(400, "IndexConfigNotExist", "logstore without index config")
        try:
            start, end = int(params.get("from", 0)), int(params.get("to", 0))
        except (TypeError, ValueError):
            raise ApiError(400, "ParameterInvalid", "from and to must be integers") from None
        if start >= end:
            raise ApiError(400, "ParameterInvalid", "from must be less than to")
        search, sql = split_query(str(params.get("query") or ""))
        rows = [log.row() for log in self.store.logs(request.project, name)]
        try:
            hits = select(rows, search, start, end, store.index)
        except QueryError as exc:
            raise ApiError(400, "ParameterInvalid", str(exc)) from None
        if sql:
            if self.sql is None:
                raise ApiError(400, "ParameterInvalid", "the SLS test server does not run SQL "
                               "analysis: %s" % sql)
            hits = self.sql(hits, sql, name)
        return hits, search, sql

    def _page(self, hits: List[Dict[str, str]], params: Mapping[str, Any], sql: str
              ) -> List[Dict[str, str]]:
        if sql:
            return hits
        if str(params.get("reverse", "false")).lower() == "true":
            hits = hits[::-1]
        line = int(params.get("line", 100) or 100)
        offset = int(params.get("offset", 0) or 0)
        return hits[offset:offset + min(line, 100)]

    def _get_logs(self, request: Request, name: str) -> Response:
        params = _json_body(request)
        hits, search, sql = self._search(request, name, params)
        data = self._page(hits, params, sql)
        keys = sorted({k for row in data for k in row if not k.startswith("__")})
        return json_response({"meta": {"progress": "Complete", "count": len(data),
                                       "processedRows": len(hits), "elapsedMillisecond": 1,
                                       "hasSQL": bool(sql), "whereQuery": search,
                                       "aggQuery": sql, "keys": keys, "terms": [],
                                       "isAccurate": True},
                              "data": data})

    def _get_logs_v1(self, request: Request, name: str) -> Response:
        hits, _, sql = self._search(request, name, request.params)
        data = self._page(hits, request.params, sql)
        return json_response(data, headers={
            "x-log-progress": "Complete", "x-log-count": str(len(data)),
            "x-log-processed-rows": str(len(hits)), "x-log-elapsed-millisecond": "1",
            "x-log-has-sql": "true" if sql else "false"})

    def _get_histograms(self, request: Request, name: str) -> Response:
        hits, _, _ = self._search(request, name, request.params)
        start, end = int(request.params["from"]), int(request.params["to"])
        width = max(1, -(-(end - start) // 60))  # at most 60 buckets
        buckets = []
        for low in range(start, end, width):
            high = min(end, low + width)
            count = sum(1 for row in hits if low <= int(row["__time__"]) < high)
            buckets.append({"from": low, "to": high, "count": count, "progress": "Complete"})
        return json_response(buckets, headers={"x-log-progress": "Complete",
                                               "x-log-count": str(len(hits))})


def _check_logs(group: Any, limits: Limits, raw_size: int) -> None:
    """Key names (with ``check_keys``) and value sizes. Only logs larger than the value limit
    can hold a value over it, so values are looked at only there (the size is computed in C)."""
    max_value = limits.max_value_bytes
    good_keys = set()
    for log in group.Logs:
        if limits.check_keys:
            for key in [content.Key for content in log.Contents]:
                if key not in good_keys:
                    if not key or len(key.encode("utf-8")) > limits.max_key_bytes or \
                            key in RESERVED_KEYS:
                        raise ApiError(400, "InvalidKey", "invalid key %r" % key[:200])
                    good_keys.add(key)
        if raw_size > max_value and log.ByteSize() > max_value:
            for content in log.Contents:
                if len(content.Value) > max_value:
                    raise ApiError(400, "InvalidLogSize", "value of %s is %d bytes, larger "
                                   "than %d" % (content.Key, len(content.Value), max_value))


def _json_body(request: Request) -> Dict[str, Any]:
    if not request.body:
        return {}
    try:
        value = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "PostBodyInvalid", "the body is not JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "PostBodyInvalid", "the body is not a JSON object")
    return value


def _index_body(request: Request) -> Dict[str, Any]:
    body = _json_body(request)
    if not body.get("keys") and not body.get("line"):
        raise ApiError(400, "IndexInfoInvalid", "index needs keys or line")
    line = body.get("line")
    if line is not None and "token" not in line:
        raise ApiError(400, "IndexInfoInvalid", "line.token is required")
    for key, config in (body.get("keys") or {}).items():
        if config.get("type", "text") in ("text", "json") and "token" not in config:
            raise ApiError(400, "IndexInfoInvalid", "keys.%s.token is required" % key)
    return body
