"""The Zipkin request body: a JSON array of span objects, decoded span by span.

Shared by the v1 and v2 decoders; the mapping is documented in :mod:`opentracing_sls.shim.zipkin`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Dict, List, NamedTuple

from .model import DecodeError, Process, Span

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]").search
_SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]").search


class MalformedSpan(Exception):
    """One span is unusable (bad id, wrong type, no time): it is skipped and counted."""


class ZipkinDecodeResult(NamedTuple):
    """What a Zipkin decoder returns: a tuple, so ``spans, skipped, _ = decode(body)`` works.

    ``skipped`` counts the spans left out as malformed; ``first_error`` says why the first one
    was (for a rate-limited log line), ``""`` when none was.
    """

    spans: List[Span]
    skipped: int
    first_error: str


def load_span_array(body: Any) -> List[Any]:
    """The JSON array of a request body; ``DecodeError`` for anything else."""
    if isinstance(body, memoryview):
        body = body.tobytes()
    elif not isinstance(body, (bytes, bytearray, str)):
        raise DecodeError("body must be bytes, not %s" % type(body).__name__)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, UnicodeDecodeError and the int digit limit;
        # RecursionError is deep nesting ([[[[...]]]]).
        raise DecodeError("invalid JSON: %s" % (str(exc)[:200],)) from None
    if type(data) is not list:
        raise DecodeError("a Zipkin body is a JSON array of spans, not %s" % json_type(data))
    # json accepts escaped lone surrogates ("\ud800"): such strings cannot be encoded to UTF-8 by
    # the sinks later. They need an escape in the body, so only such bodies are scanned (a
    # one-byte search is ~30 times faster than the regular expression).
    if isinstance(body, str):
        if "\\" in body and _SURROGATE_ESCAPE_TEXT(body):
            _replace_lone_surrogates(data)
    elif b"\\" in body and _SURROGATE_ESCAPE(body):
        _replace_lone_surrogates(data)
    return data


def json_type(value: Any) -> str:
    """How a JSON value's type is named in error messages."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (it is returned as is when valid)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        # Via UTF-16 each lone surrogate becomes exactly one U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _replace_lone_surrogates(data: List[Any]) -> None:
    """Replaces lone surrogates by U+FFFD in every string, in place (iterative: no depth limit)."""
    stack: List[Any] = [data]
    while stack:
        node = stack.pop()
        if type(node) is list:
            for i, value in enumerate(node):
                if type(value) is str:
                    node[i] = clean_text(value)
                elif type(value) in (list, dict):
                    stack.append(value)
        else:
            items = list(node.items())
            node.clear()
            for key, value in items:
                if type(value) is str:
                    value = clean_text(value)
                elif type(value) in (list, dict):
                    stack.append(value)
                node[clean_text(key)] = value


def decode_spans(items: List[Any],
                 convert: Callable[[Dict[str, Any], Dict[Any, Process], Callable[[Span], None]],
                                   None],
                 processes: Dict[Any, Process]) -> ZipkinDecodeResult:
    """Runs ``convert(item, processes, append)`` on each span object, skipping malformed ones."""
    spans: List[Span] = []
    append = spans.append
    skipped = 0
    first_error = ""
    for item in items:
        if type(item) is not dict:
            raise DecodeError("a Zipkin span is a JSON object, not %s" % json_type(item))
        try:
            convert(item, processes, append)
        except MalformedSpan as exc:
            skipped += 1
            if not first_error:
                first_error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a receiver never dies on one span; tests
            # assert this path stays unused (the reason starts with "unexpected").
            skipped += 1
            if not first_error:
                first_error = "unexpected %s: %s" % (type(exc).__name__, exc)
    return ZipkinDecodeResult(spans, skipped, first_error)
