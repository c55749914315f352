"""The query API's reader over SLS: GetLogs queries on the "Jaeger on Aliyun Log Service"
layout, through the official SDK (``shared/reference/sls.md`` §7, §9.4).

Unlike the reference reader, searches return complete traces: a first analysis statement
picks the newest matching trace ids, then every span of those traces is read (searches
return at most 100 logs per call: they are paged with ``offset``). Queries:

- services: ``* | select distinct "process.serviceName" ...``
- operations: ``process.serviceName: "<svc>" | select operationName, "tags.span.kind" ...``
- search: ``<conditions> | select traceID, max(startTime) as latest ... group by traceID
  order by latest desc limit <n>``; conditions on the service, operation, duration and start
  (``startTime`` µs), and per tag ``tags.<k>: "<v>"`` / ``process.tags.<k>: "<v>"`` for the
  keys the logstore's index has (else the value as a full-text term). The SQL ``where``
  makes service and operation exact; the traces read are then checked span by span with the
  local store's semantics (one span with everything), so tokenized or full-text matches
  never widen the answer.
- traces by id: ``traceID: "<id>" or ...``, paged.
- dependencies: the (trace, span, parent, service) columns of the window, joined here.
- statistics: ``count(1)``, ``approx_percentile(duration, 0.5/0.99)``, ``max(duration)`` per
  service, operation and kind; errors by a second statement on ``tags.error: true``.

Log times are the spans' starts (seconds), so each query's ``[from, to)`` is the start
window; lookups by id, services and operations use the last ``lookback`` (7 days by default).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from .model import Span
from .sls_client import SlsClient
from .sls_decode import spans_by_trace
from .store_codec import search_string
from .store_read import TraceQuery
from .store_stats import OperationStats

logger = logging.getLogger(__name__)

#: Logs per search page: the service's maximum (§7).
PAGE = 100
#: Stop reading a search after this many logs (a runaway trace or window).
MAX_LOGS = 100_000
#: Rows an analysis statement may return (the service caps SQL at 100 000 rows).
MAX_SQL_ROWS = 100_000
#: Trace ids per ``traceID: ... or ...`` query.
IDS_PER_QUERY = 20
#: Spans of a found trace may start this long before or after the search window.
TRACE_SLACK_S = 3600
#: The index is re-read this often (its keys decide how tags are searched).
INDEX_TTL_S = 60.0
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.\-]+\Z")


def search_value(value: str) -> str:
    """A value as a quoted search term (backslash escapes quotes and backslashes)."""
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def search_key(key: str) -> str:
    """A key as the search syntax needs it: quoted when it has special characters."""
    return key if _PLAIN_KEY.match(key) else search_value(key)


def sql_string(value: str) -> str:
    return "'%s'" % value.replace("'", "''")


def _number(text: str) -> int:
    """An SQL result number (SLS answers strings: ``"12"``, ``"12.5"``, ``"null"``)."""
    try:
        return round(float(text))
    except (TypeError, ValueError):
        return 0


def _null(text: Optional[str]) -> str:
    return "" if text in (None, "null") else str(text)


def span_matches(span: Span, query: TraceQuery) -> bool:
    """The local store's search semantics for one span (see ``TraceQuery``)."""
    if span.process.service_name != query.service:
        return False
    if query.operation is not None and span.operation_name != query.operation:
        return False
    for low, high, value in ((query.start_min_us, query.start_max_us, span.start_time),
                             (query.duration_min_us, query.duration_max_us, span.duration)):
        if (low is not None and value < low) or (high is not None and value > high):
            return False
    if query.tags:
        have = {(tag.key, search_string(tag.type, tag.value))
                for tag in span.tags + span.process.tags}
        have.update((field.key, search_string(field.type, field.value))
                    for log in span.logs for field in log.fields)
        return all((key, value if isinstance(value, str) else str(value)) in have
                   for key, value in query.tags.items())
    return True


def dependency_links(rows: Iterable[Tuple[str, str, str, str]]) -> List[Tuple[str, str, int]]:
    """(parent service, child service, calls) from (trace, span, parent, service) rows: the
    local store's rule (a span whose parent in the window is of another service)."""
    rows = list(rows)
    services_of: Dict[Tuple[str, str], Set[str]] = {}
    for trace, span, _, service in rows:
        services_of.setdefault((trace, span), set()).add(service)
    calls: Dict[Tuple[str, str], Set[Tuple[str, str, str]]] = {}
    for trace, span, parent, service in rows:
        parents = services_of.get((trace, parent)) if parent and parent != "0" else None
        if not parents or service in parents:
            continue
        for parent_service in parents:
            calls.setdefault((parent_service, service), set()).add((trace, span, service))
    return sorted((parent, child, len(children)) for (parent, child), children in calls.items())


class SlsReader:
    """A ``Reader`` over one logstore; thread-safe (``SlsClient`` keeps a client per thread)."""

    name = "aliyun_sls"

    def __init__(self, client: SlsClient, project: str, logstore: str, *,
                 lookback_s: int = 7 * 86400, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.project = project
        self.logstore = logstore
        self.lookback_s = lookback_s
        self.clock = clock
        self._index_lock = threading.Lock()
        self._index: Tuple[float, Dict[str, Any]] = (-INDEX_TTL_S, {})

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SlsReader:
        """The reader of a resolved shim configuration (``storage.aliyun_sls.*``)."""
        from .sls_client import Credentials
        from .sls_config import parse_endpoint

        def key(name: str) -> Any:
            return config["storage.aliyun_sls." + name]

        def reveal(value: Any) -> str:
            return value.reveal() if hasattr(value, "reveal") else str(value or "")

        client = SlsClient(parse_endpoint(key("endpoint")),
                           Credentials(key("accesskey.id"), reveal(key("accesskey.secret")),
                                       reveal(key("security_token"))),
                           key("timeout_ms") / 1000.0)
        return cls(client, key("project"), key("logstore"))

    # -- Reader -------------------------------------------------------------------------------

    def services(self) -> List[str]:
        rows = self._sql("*", 'select distinct "process.serviceName" as service from log '
                         "limit 10000", *self._recent())
        return sorted({_null(row.get("service")) for row in rows} - {""})

    def operations(self, service: str,
                   span_kind: Optional[str] = None) -> List[Tuple[str, str]]:
        rows = self._sql(
            "%s: %s" % (search_key("process.serviceName"), search_value(service)),
            'select operationName as operation, "tags.span.kind" as kind, count(1) as spans '
            'from log where "process.serviceName" = %s group by operationName, '
            '"tags.span.kind" limit 10000' % sql_string(service), *self._recent())
        pairs = {(_null(row.get("operation")), _null(row.get("kind"))) for row in rows}
        return sorted(pair for pair in pairs if span_kind is None or pair[1] == span_kind)

    def get_traces(self, trace_ids: Sequence[int]) -> Dict[int, List[Span]]:
        return self._traces(trace_ids, *self._recent())

    def find_traces(self, query: TraceQuery) -> List[List[Span]]:
        now = self.clock()
        start_s = (query.start_min_us // 1_000_000 if query.start_min_us is not None
                   else int(now) - self.lookback_s)
        end_s = (query.start_max_us // 1_000_000 if query.start_max_us is not None
                 else int(now)) + 1
        if start_s >= end_s:
            return []
        search, exact = self._conditions(query)
        limit = query.limit if query.limit > 0 else 1000
        wanted = limit if exact else min(1000, limit * 3)
        where = ['"process.serviceName" = %s' % sql_string(query.service)]
        if query.operation is not None:
            where.append("operationName = %s" % sql_string(query.operation))
        rows = self._sql(search, "select traceID, max(startTime) as latest from log where %s "
                         "group by traceID order by latest desc limit %d"
                         % (" and ".join(where), wanted), start_s, end_s)
        ids: List[int] = []
        for row in rows:
            try:
                ids.append(int(row.get("traceID", ""), 16))
            except ValueError:
                continue
        traces = self._traces(ids, start_s - TRACE_SLACK_S, end_s + TRACE_SLACK_S)
        found = [traces[trace_id] for trace_id in dict.fromkeys(ids) if trace_id in traces
                 and any(span_matches(span, query) for span in traces[trace_id])]
        return found[:limit]

    def dependencies(self, end_us: int, lookback_us: int) -> List[Tuple[str, str, int]]:
        start_us = end_us - lookback_us
        if start_us > end_us:
            return []
        rows = self._sql("startTime >= %d and startTime <= %d" % (start_us, end_us),
                         'select traceID, spanID, parentSpanID, "process.serviceName" as '
                         "service from log limit %d" % MAX_SQL_ROWS,
                         start_us // 1_000_000, end_us // 1_000_000 + 1)
        if len(rows) >= MAX_SQL_ROWS:
            logger.warning("dependencies: the window has more than %d spans; the graph is "
                           "built from the first %d", MAX_SQL_ROWS, MAX_SQL_ROWS)
        return dependency_links((row.get("traceID", ""), row.get("spanID", ""),
                                 row.get("parentSpanID", ""), _null(row.get("service")))
                                for row in rows)

    def operation_stats(self, service: Optional[str], start_us: int,
                        end_us: int) -> List[OperationStats]:
        if end_us < start_us:
            return []
        search = "startTime >= %d and startTime <= %d" % (start_us, end_us)
        if service is not None:
            search = "%s: %s and %s" % (search_key("process.serviceName"),
                                        search_value(service), search)
        group = ('from log group by "process.serviceName", operationName, "tags.span.kind" '
                 "limit 10000")
        columns = ('select "process.serviceName" as service, operationName as operation, '
                   '"tags.span.kind" as kind, ')
        window = (start_us // 1_000_000, end_us // 1_000_000 + 1)
        rows = self._sql(search, columns + "count(1) as spans, approx_percentile(duration, "
                         "0.5) as p50, approx_percentile(duration, 0.99) as p99, "
                         "max(duration) as slowest " + group, *window)
        errors = {(_null(row.get("service")), _null(row.get("operation")),
                   _null(row.get("kind"))): _number(row.get("errors", "0"))
                  for row in self._sql(search + " and tags.error: true",
                                       columns + "count(1) as errors " + group, *window)}
        stats = []
        for row in rows:
            key = (_null(row.get("service")), _null(row.get("operation")),
                   _null(row.get("kind")))
            if service is not None and key[0] != service:
                continue
            stats.append(OperationStats(key[0], key[1], key[2], _number(row.get("spans")),
                                        errors.get(key, 0), _number(row.get("p50")),
                                        _number(row.get("p99")), _number(row.get("slowest"))))
        stats.sort(key=lambda r: (-r.count, r.service, r.operation, r.span_kind))
        return stats

    def close(self) -> None:
        """Nothing to release: the SDK opens a connection per request."""

    # -- queries ------------------------------------------------------------------------------

    def _recent(self) -> Tuple[int, int]:
        now = int(self.clock())
        return now - self.lookback_s, now + 300  # clocks differ: a little of the future too

    def _conditions(self, query: TraceQuery) -> Tuple[str, bool]:
        """The search part of a trace search, and whether its tag terms are exact (whole
        value keys of the index) or may match more spans than asked."""
        keys = self._index_keys()
        terms = ["%s: %s" % (search_key("process.serviceName"), search_value(query.service))]
        if query.operation is not None:
            terms.append("operationName: %s" % search_value(query.operation))
        for key, low, high in (("startTime", query.start_min_us, query.start_max_us),
                               ("duration", query.duration_min_us, query.duration_max_us)):
            if low is not None:
                terms.append("%s >= %d" % (key, low))
            if high is not None:
                terms.append("%s <= %d" % (key, high))
        exact = True
        for key, value in query.tags.items():
            text = value if isinstance(value, str) else str(value)
            fields = [field for field in ("tags." + key, "process.tags." + key) if field in keys]
            if not fields:
                # Not indexed as a key: any field holding the value's words (checked below).
                terms.append(search_value(text))
                exact = False
                continue
            exact = exact and all(not keys[field].get("token") for field in fields)
            terms.append("(%s)" % " or ".join("%s: %s" % (search_key(field), search_value(text))
                                              for field in fields))
        return " and ".join(terms), exact

    def _index_keys(self) -> Dict[str, Any]:
        with self._index_lock:
            loaded, keys = self._index
            if time.monotonic() - loaded < INDEX_TTL_S:
                return keys
        try:
            response = self.client.call("get_index", lambda c: c.get_index_config(
                self.project, self.logstore))
            keys = dict(response.get_index_config().to_json().get("keys") or {})
        except Exception as exc:  # noqa: BLE001 - no index: search by full text
            logger.warning("cannot read the index of %s/%s (%s): tags are searched as full "
                           "text", self.project, self.logstore, exc)
            keys = {}
        with self._index_lock:
            self._index = (time.monotonic(), keys)
        return keys

    def _sql(self, search: str, statement: str, start_s: int, end_s: int
             ) -> List[Dict[str, str]]:
        """The rows of ``search | statement`` over logs of ``[start_s, end_s)``."""
        response = self.client.call("get_logs", lambda c: c.get_log(
            self.project, self.logstore, start_s, end_s, query="%s | %s" % (search, statement),
            size=0))  # rows follow the statement's LIMIT; line 0 as the reference sends
        return [dict(log.get_contents()) for log in response.get_logs()]

    def _search(self, search: str, start_s: int, end_s: int) -> List[Dict[str, str]]:
        """Every log of ``search`` in ``[start_s, end_s)``, page by page."""
        rows: List[Dict[str, str]] = []
        while len(rows) < MAX_LOGS:
            read_page = functools.partial(self._page, search=search, start_s=start_s,
                                          end_s=end_s, offset=len(rows))
            response = self.client.call("get_logs", read_page)
            page = [dict(log.get_contents()) for log in response.get_logs()]
            rows += page
            if len(page) < PAGE:
                return rows
        logger.warning("query %r: stopped reading after %d logs", search, MAX_LOGS)
        return rows

    def _page(self, client: Any, search: str, start_s: int, end_s: int, offset: int) -> Any:
        return client.get_log(self.project, self.logstore, start_s, end_s, query=search,
                              offset=offset, size=PAGE)

    def _traces(self, trace_ids: Sequence[int], start_s: int, end_s: int
                ) -> Dict[int, List[Span]]:
        ids = list(dict.fromkeys(trace_ids))
        traces: Dict[int, List[Span]] = {}
        for first in range(0, len(ids), IDS_PER_QUERY):
            terms = []
            for trace_id in ids[first:first + IDS_PER_QUERY]:
                padded = "%032x" % trace_id if trace_id >> 64 else "%016x" % trace_id
                # Writers before the padding (the reference's tag 0.0.3) wrote plain %x.
                for text in dict.fromkeys((padded, "%x" % trace_id)):
                    terms.append("traceID: %s" % search_value(text))
            found, bad = spans_by_trace(self._search(" or ".join(terms), start_s, end_s))
            if bad:
                logger.warning("%d logs of %s/%s are not spans of the expected layout", bad,
                               self.project, self.logstore)
            traces.update(found)
        return traces
