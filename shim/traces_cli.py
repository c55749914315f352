"""``opentracing-sls traces``: search and show traces in the local span store from a terminal.

``traces services``, ``traces find --service S ...`` and ``traces get TRACE_ID`` read the
SQLite file the shim's local sink writes (``--store``, else ``$OPENTRACING_SLS_STORE``, else
``./spans.db``, the shim's default ``storage.local.path``). Output is a readable table or
tree; ``--json`` prints the Jaeger query API's response instead, so scripts get the same JSON
as ``/api/...``. Exit status: 0 success, 1 trace not found, 2 usage errors (bad arguments, no
store).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, TextIO, Tuple

from ..env import parse_duration
from .model import BOOL, STRING, Span

if TYPE_CHECKING:  # the store is imported when a command runs, not when the CLI starts
    from .store import LocalStore

#: Environment variable naming the store file when ``--store`` is not given.
STORE_ENV = "OPENTRACING_SLS_STORE"
DEFAULT_STORE = "./spans.db"
#: The shim's own setting for the same file, so one variable configures both.
SHIM_STORE_ENV = "OPENTRACING_SLS_STORAGE_LOCAL_PATH"
#: The query API's default search window.
DEFAULT_LOOKBACK = "48h"
#: Tags worth a place on a span's line in ``traces get``, in display order.
NOTABLE_TAGS = ("span.kind", "http.method", "http.url", "http.status_code", "rpc.method",
                "db.type", "db.statement", "peer.service", "messaging.destination", "error")
_MAX_TAG_CHARS = 60


class CliError(Exception):
    """A usage problem: printed as ``opentracing-sls traces: <message>``, exit status 2."""


def _duration_us(text: str) -> int:
    try:
        return round(parse_duration(text) * 1_000_000)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tag(text: str) -> Tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE, got %r" % text)
    return key, value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("expected a positive integer, got %r" % text)
    return value


def add_traces_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``traces`` and its actions on the main parser's subcommands."""
    traces = subparsers.add_parser(
        "traces", help="search and show traces in the local span store",
        description="Search and show traces in the shim's local span store (SQLite).")
    store_help = ("the span store file (default: $%s, else the shim's $%s, else %s)"
                  % (STORE_ENV, SHIM_STORE_ENV, DEFAULT_STORE))
    traces.add_argument("--store", metavar="PATH", help=store_help)
    actions = traces.add_subparsers(dest="traces_action", metavar="ACTION")
    # --store is accepted after the action too; SUPPRESS keeps an absent one from
    # overwriting the value parsed before the action.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="PATH", default=argparse.SUPPRESS, help=store_help)
    common.add_argument("--json", action="store_true",
                        help="print the Jaeger query API response (JSON)")

    actions.add_parser("services", parents=[common], help="list the services")
    find = actions.add_parser(
        "find", parents=[common], help="search traces",
        description="Traces with a span of SERVICE matching every condition, newest first.")
    find.add_argument("--service", required=True)
    find.add_argument("--operation")
    find.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE",
                      help="a tag of the span, its process or its logs (repeatable)")
    find.add_argument("--min-duration", type=_duration_us, metavar="DURATION",
                      help="e.g. 10ms, 1.5s")
    find.add_argument("--max-duration", type=_duration_us, metavar="DURATION")
    find.add_argument("--lookback", type=_duration_us, default=DEFAULT_LOOKBACK,
                      metavar="DURATION",
                      help="search spans started this long ago or later (default %s)"
                           % DEFAULT_LOOKBACK)
    find.add_argument("--limit", type=_positive_int, default=20, help="traces (default 20)")
    get = actions.add_parser("get", parents=[common], help="show one trace as a span tree")
    get.add_argument("trace_id", metavar="TRACE_ID", help="hex, up to 32 digits")
    traces.set_defaults(func=run_traces, traces_parser=traces)


def run_traces(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """Run a parsed ``traces`` command; the exit status."""
    out = out or sys.stdout
    action = getattr(args, "traces_action", None)
    if action is None:
        args.traces_parser.print_help(out)
        return 2
    from .store import LocalStore, StoreError

    path = (args.store or os.environ.get(STORE_ENV) or os.environ.get(SHIM_STORE_ENV)
            or DEFAULT_STORE)
    try:
        if action == "get":
            trace_id = _parse_trace_id(args.trace_id)
        store = LocalStore(path, create=False)
    except (CliError, StoreError) as exc:
        print("opentracing-sls traces: %s" % exc, file=sys.stderr)
        return 2
    try:
        if action == "services":
            return _services(store, args, out)
        if action == "find":
            return _find(store, args, out)
        return _get(store, trace_id, args, out)
    except CliError as exc:
        print("opentracing-sls traces: %s" % exc, file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep the interpreter's final
        # flush of stdout from failing again.
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        store.close()


def _parse_trace_id(text: str) -> int:
    from .jaeger_json import parse_trace_id

    try:
        return parse_trace_id(text)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _print_json(value: object, out: TextIO) -> None:
    json.dump(value, out, indent=2)
    out.write("\n")


def _services(store: LocalStore, args: argparse.Namespace, out: TextIO) -> int:
    from .jaeger_json import envelope

    services = store.services()
    if args.json:
        _print_json(envelope(services, total=len(services)), out)
    else:
        for name in services:
            out.write(name + "\n")
    return 0


def _find(store: LocalStore, args: argparse.Namespace, out: TextIO) -> int:
    from .jaeger_json import envelope, trace_id_hex, trace_to_json
    from .store import TraceQuery

    if (args.min_duration is not None and args.max_duration is not None
            and args.max_duration < args.min_duration):
        raise CliError("--max-duration is shorter than --min-duration")
    now = int(time.time() * 1_000_000)
    query = TraceQuery(service=args.service, operation=args.operation, tags=dict(args.tag),
                       start_min_us=now - args.lookback, start_max_us=now,
                       duration_min_us=args.min_duration, duration_max_us=args.max_duration,
                       limit=args.limit)
    traces = store.find_traces(query)
    if args.json:
        _print_json(envelope([trace_to_json(spans) for spans in traces]), out)
        return 0
    if not traces:
        print("no traces of %s matched" % args.service, file=sys.stderr)
        return 0
    rows = [("TRACE ID", "START", "DURATION", "SPANS", "ERRORS", "ROOT", "SERVICES")]
    for spans in traces:
        start, duration = trace_extent(spans)
        counts: Dict[str, int] = {}
        for span in spans:
            counts[span.process.service_name] = counts.get(span.process.service_name, 0) + 1
        root = roots(spans)[0]
        errors = sum(1 for span in spans if is_error(span))
        rows.append((trace_id_hex(spans[0].trace_id), local_time(start),
                     "%.3f ms" % (duration / 1000), str(len(spans)),
                     "%d !" % errors if errors else "",
                     "%s: %s" % (root.process.service_name, root.operation_name),
                     " ".join("%s(%d)" % item for item in sorted(counts.items()))))
    _print_table(rows, out, right=(2, 3, 4))
    return 0


def _get(store: LocalStore, trace_id: int, args: argparse.Namespace, out: TextIO) -> int:
    from .jaeger_json import envelope, error_item, trace_id_hex, trace_to_json

    spans = store.get_trace(trace_id)
    if not spans:
        if args.json:
            _print_json(envelope(None, errors=[error_item("trace not found", 404, trace_id)]),
                        out)
        print("opentracing-sls traces: trace %s not found in %s"
              % (trace_id_hex(trace_id), store.path), file=sys.stderr)
        return 1
    if args.json:
        _print_json(envelope([trace_to_json(spans)]), out)
        return 0
    start, duration = trace_extent(spans)
    services = {span.process.service_name for span in spans}
    out.write("Trace %s: %d spans, %d services, %.3f ms, started %s\n"
              % (trace_id_hex(trace_id), len(spans), len(services), duration / 1000,
                 local_time(start)))
    for depth, span in span_tree(spans):
        out.write("%s%s\n" % ("  " * depth, span_line(span, start)))
    return 0


def _print_table(rows: Sequence[Sequence[str]], out: TextIO, right: Sequence[int] = ()) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                 for i, cell in enumerate(row)]
        out.write("  ".join(cells).rstrip() + "\n")


# -- presentation helpers (also used by tests) -------------------------------------------------

def local_time(us: int) -> str:
    """Epoch µs as local ISO time with milliseconds."""
    return datetime.fromtimestamp(us / 1_000_000).astimezone().isoformat(timespec="milliseconds")


def trace_extent(spans: Sequence[Span]) -> Tuple[int, int]:
    """(start µs, duration µs) of a trace: first start to last end."""
    start = min(span.start_time for span in spans)
    return start, max(span.start_time + span.duration for span in spans) - start


def is_error(span: Span) -> bool:
    return any(tag.key == "error" and (tag.value is True or tag.value == "true")
               for tag in span.tags)


def _parents(spans: Sequence[Span]) -> Dict[int, Optional[int]]:
    """Index of each span's parent in ``spans`` (None for a root or an orphan)."""
    by_id: Dict[int, List[int]] = {}
    for index, span in enumerate(spans):
        by_id.setdefault(span.span_id, []).append(index)
    parents: Dict[int, Optional[int]] = {}
    for index, span in enumerate(spans):
        candidates = [i for i in by_id.get(span.parent_id, ()) if i != index] \
            if span.parent_id else []
        # Shared span ids (Zipkin): prefer the candidate of the span's own service.
        same = [i for i in candidates
                if spans[i].process.service_name == span.process.service_name]
        parents[index] = (same or candidates or [None])[0]
    return parents


def roots(spans: Sequence[Span]) -> List[Span]:
    """Spans without a parent in the trace, earliest first."""
    parents = _parents(spans)
    found = [spans[i] for i in range(len(spans)) if parents[i] is None]
    return sorted(found or spans, key=lambda span: span.start_time)


def span_tree(spans: Sequence[Span]) -> List[Tuple[int, Span]]:
    """(depth, span) in display order: depth first, children by start time."""
    parents = _parents(spans)
    children: Dict[Optional[int], List[int]] = {}
    for index in sorted(range(len(spans)), key=lambda i: spans[i].start_time):
        children.setdefault(parents[index], []).append(index)
    order: List[Tuple[int, Span]] = []
    seen = set()

    def walk(index: int, depth: int) -> None:
        stack = [(index, depth)]
        while stack:
            current, level = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            order.append((level, spans[current]))
            stack.extend((child, level + 1) for child in reversed(children.get(current, [])))

    for index in children.get(None, []):
        walk(index, 0)
    for index in range(len(spans)):  # parent cycles in malformed input: show them anyway
        if index not in seen:
            walk(index, 0)
    return order


def span_line(span: Span, trace_start: int) -> str:
    """``service: operation  12.345 ms  +1.000 ms  [tags]  ERROR (event=error ...)``."""
    parts = ["%s: %s" % (span.process.service_name, span.operation_name),
             "%.3f ms" % (span.duration / 1000),
             "+%.3f ms" % ((span.start_time - trace_start) / 1000)]
    tags = {tag.key: tag for tag in span.tags}
    notable = []
    for key in NOTABLE_TAGS:
        tag = tags.get(key)
        if tag is None or key == "error":
            continue
        text = str(tag.value).lower() if tag.type == BOOL else str(tag.value)
        if len(text) > _MAX_TAG_CHARS:
            text = text[:_MAX_TAG_CHARS - 3] + "..."
        notable.append("%s=%s" % (key, text))
    if notable:
        parts.append("[%s]" % " ".join(notable))
    if is_error(span):
        messages = [" ".join("%s=%s" % (field.key, field.value) for field in log.fields
                             if field.type == STRING)
                    for log in span.logs
                    if any(field.key in ("event", "error.kind", "message") for field in log.fields)]
        parts.append("ERROR" + (" (%s)" % "; ".join(m for m in messages if m)
                                if any(messages) else ""))
    return "  ".join(parts)
