"""Per-operation statistics of the local store: span count, errors, latency percentiles.

The query API's statistics view (``/api/stats``) asks "how did each operation of a service
do in this window"; over SLS the same figures come from an SQL analysis statement. Here the
spans of the window are found through the store's hour terms (``s<service>h<hour>``, or
``h<hour>`` for every service), so only the window's rows are read, never the whole table.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from .store_codec import hour_term, service_hour_term


class OperationStats(NamedTuple):
    """Figures of one (service, operation, span kind) over a window; durations in µs."""

    service: str
    operation: str
    span_kind: str
    count: int
    errors: int
    p50_us: int
    p99_us: int
    max_us: int


def percentile(sorted_values: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of an ascending, non-empty sequence (``fraction`` in [0, 1])."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(service: str, operation: str, kind: str, durations: List[int],
              errors: int) -> OperationStats:
    """One ``OperationStats`` from the durations of its spans (sorted here, in place)."""
    durations.sort()
    return OperationStats(service, operation, kind, len(durations), errors,
                          percentile(durations, 0.5), percentile(durations, 0.99),
                          durations[-1])


def operation_stats(conn: sqlite3.Connection, service: Optional[str], start_us: int,
                    end_us: int, hours: Sequence[int]) -> List[OperationStats]:
    """Statistics of the spans started in ``[start_us, end_us]`` (of ``service``, or of every
    service when None), busiest operation first; ``hours`` are the window's hours with spans.
    """
    if end_us < start_us:
        return []
    names = dict(conn.execute("SELECT id, name FROM services"))
    if service is None:
        terms = [hour_term(hour) for hour in hours]
    else:
        service_id = next((sid for sid, name in names.items() if name == service), None)
        if service_id is None:
            return []
        terms = [service_hour_term(service_id, hour) for hour in hours]
    groups: Dict[Tuple[int, str, str], Tuple[List[int], List[int]]] = {}
    for term in terms:
        for service_id, operation, kind, duration, error in conn.execute(
                "SELECT s.service_id, s.operation, s.kind, s.duration, s.error "
                "FROM span_terms f CROSS JOIN spans s ON s.id = f.rowid "
                "WHERE span_terms MATCH ? AND s.start_time >= ? AND s.start_time <= ?",
                ('"%s"' % term, start_us, end_us)):
            group = groups.get((service_id, operation, kind))
            if group is None:
                group = groups[(service_id, operation, kind)] = ([], [0])
            group[0].append(duration)
            group[1][0] += error
    stats = [summarize(names[service_id], operation, kind, durations, errors[0])
             for (service_id, operation, kind), (durations, errors) in groups.items()]
    stats.sort(key=lambda row: (-row.count, row.service, row.operation, row.span_kind))
    return stats
