"""Parameter parsing of the query API: Go durations, lookbacks, tags, windows."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from opentracing_sls.shim.query_params import (
    DEFAULT_LIMIT,
    ParamError,
    go_duration_us,
    lookback_us,
    parse_dependencies,
    parse_tags,
    parse_trace_search,
)

NOW = 1_700_000_000_000_000


@pytest.mark.parametrize("text,micros", [
    ("0", 0), ("1s", 1_000_000), ("1.5s", 1_500_000), (".5s", 500_000), ("100ms", 100_000),
    ("500us", 500), ("500µs", 500), ("500μs", 500), ("1500ns", 2), ("1h30m", 5_400_000_000),
    ("2h45m30.5s", 9_930_500_000), ("+1m", 60_000_000), ("1.2s", 1_200_000)])
def test_go_durations(text: str, micros: int) -> None:
    assert go_duration_us(text) == micros


@pytest.mark.parametrize("text", ["", "1", "10", "s", "1x", "1h-5m", "-1s", "1 s", "1.s.", "ms"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        go_duration_us(text)


def test_lookbacks_take_days_and_custom() -> None:
    assert lookback_us("2d") == 2 * 86_400_000_000
    assert lookback_us("1h") == 3_600_000_000
    assert lookback_us("custom") is None


def test_tags_merge_json_and_legacy_pairs() -> None:
    params = MultiDict([("tags", '{"error": true, "http.status_code": 500, "a": "x:y"}'),
                        ("tag", "b:c:d"), ("tag", "e:")])
    assert parse_tags(params) == {"error": "true", "http.status_code": "500", "a": "x:y",
                                  "b": "c:d", "e": ""}


def test_search_defaults() -> None:
    search = parse_trace_search(MultiDict(service="web"), NOW)
    query = search.query
    assert search.trace_ids == () and query is not None
    assert query.limit == DEFAULT_LIMIT and query.operation is None and query.tags == {}
    assert (query.start_min_us, query.start_max_us) == (NOW - 48 * 3_600_000_000, NOW)
    assert parse_trace_search(MultiDict(service="web", limit="0"), NOW).query.limit == \
        DEFAULT_LIMIT
    assert parse_trace_search(MultiDict(service="web", operation=""), NOW).query.operation \
        is None


def test_multi_get_needs_no_service_and_dedupes() -> None:
    search = parse_trace_search(MultiDict([("traceID", "ab"), ("traceID", "00AB"),
                                           ("traceID", "cd")]), NOW)
    assert search.trace_ids == (0xAB, 0xCD) and search.query is None


def test_dependency_window_in_milliseconds() -> None:
    assert parse_dependencies(MultiDict(), NOW // 1000) == (NOW, 86_400_000_000)
    assert parse_dependencies(MultiDict(endTs="1000", lookback="10"), 0) == (1_000_000, 10_000)
    with pytest.raises(ParamError, match="'lookback'"):
        parse_dependencies(MultiDict(lookback="-1"), 0)
