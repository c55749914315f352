"""The analysis part of SLS queries (``search | select ...``) for the SLS test server.

SLS runs a Presto-like SQL over the rows the search part selected (``shared/reference/sls.md``
§7, query-api-and-zipkin.md §11). This hook runs it on SQLite, which reads the same statements
the trace readers and the documented analysis examples use:

- ``select ... [from log | from (select ... from log ...)] [where] [group by] [having]
  [order by] [limit [offset,] n]``; the table ``log`` holds the selected rows, one column per
  key; a statement without ``from`` reads ``log``, as in SLS.
- Field names bare or double-quoted (``"process.serviceName"``), strings single-quoted.
- Aggregates ``count``, ``sum``, ``avg``, ``min``, ``max``, ``max_by(x, y)``,
  ``min_by(x, y)``, ``count_if(cond)``, ``approx_percentile(x, p)``; ``date_trunc(unit, t)``
  and ``from_unixtime(t)``.

Columns are typed like the index would type them: a key whose values are all integers is a
number (``duration``, ``startTime``, ``__time__``), so ``max(startTime)`` and
``duration > 1000`` compare numbers. A key no row has reads as NULL, as an indexed key without
values does in SLS. Results are strings, NULL as ``null`` (what SLS answers).

Use it with ``SlsServer(sql=run_sql)``.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from typing import Any, Dict, List, Optional, Sequence

from .sls_server_api import ApiError

__all__ = ["run_sql"]

_NO_COLUMN = re.compile(r"no such column: (.+)$")
# Numbers only when the text round-trips (no leading zeros, no exponent): hex ids such as
# "0000000000000077" must come back unchanged.
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]*[1-9]\Z")
_CLAUSE = re.compile(r"\b(where|group\s+by|having|order\s+by|limit)\b", re.IGNORECASE)
_FROM = re.compile(r"\bfrom\b", re.IGNORECASE)
_TRUNC_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class _ApproxPercentile:
    """Nearest-rank percentile (SLS's is approximate; tests compare with nearest rank)."""

    def __init__(self) -> None:
        self.values: List[float] = []
        self.fraction = 0.5

    def step(self, value: Any, fraction: Any) -> None:
        if value is not None:
            self.values.append(value)
            self.fraction = float(fraction)

    def finalize(self) -> Optional[float]:
        if not self.values:
            return None
        self.values.sort()
        rank = max(1, math.ceil(self.fraction * len(self.values)))
        return float(self.values[min(rank, len(self.values)) - 1])


class _ByValue:
    """``max_by(x, y)`` / ``min_by(x, y)``: ``x`` of the row with the largest/smallest ``y``."""

    sign = 1

    def __init__(self) -> None:
        self.best: Any = None
        self.key: Any = None

    def step(self, value: Any, key: Any) -> None:
        if key is not None and (self.key is None or (key - self.key) * self.sign > 0):
            self.best, self.key = value, key

    def finalize(self) -> Any:
        return self.best


class _MaxBy(_ByValue):
    sign = 1


class _MinBy(_ByValue):
    sign = -1


class _CountIf:
    def __init__(self) -> None:
        self.count = 0

    def step(self, condition: Any) -> None:
        if condition:
            self.count += 1

    def finalize(self) -> int:
        return self.count


def _date_trunc(unit: str, seconds: Any) -> Optional[int]:
    if seconds is None:
        return None
    width = _TRUNC_SECONDS.get(str(unit).lower())
    if width is None:
        raise ValueError("date_trunc: unknown unit %r" % unit)
    return int(seconds) // width * width


def _from_unixtime(seconds: Any) -> Optional[str]:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(seconds)))


def _column_type(values: Sequence[Optional[str]]) -> str:
    present = [v for v in values if v is not None and v != ""]
    if present and all(_INTEGER.match(v) for v in present):
        return "INTEGER"
    if present and all(_INTEGER.match(v) or _DECIMAL.match(v) for v in present):
        return "REAL"
    return "TEXT"


def _convert(value: Optional[str], kind: str) -> Any:
    if value is None or value == "":
        return None if kind != "TEXT" else value
    if kind == "INTEGER":
        return int(value)
    if kind == "REAL":
        return float(value)
    return value


def _top_level_ranges(sql: str) -> List[bool]:
    """For each character: is it outside quotes and parentheses?"""
    depth = 0
    quote = ""
    out = []
    for ch in sql:
        if quote:
            out.append(False)
            if ch == quote:
                quote = ""
            continue
        if ch in ("'", '"'):
            quote = ch
            out.append(False)
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        out.append(depth == 0)
    return out


def with_from(sql: str) -> str:
    """The statement with ``from log`` added when its top level has no ``from``."""
    top = _top_level_ranges(sql)
    if any(top[m.start()] for m in _FROM.finditer(sql)):
        return sql
    for match in _CLAUSE.finditer(sql):
        if top[match.start()]:
            return sql[:match.start()] + "from log " + sql[match.start():]
    return sql + " from log"


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return "%.1f" % value
    return str(value)


def run_sql(rows: List[Dict[str, str]], sql: str, logstore: str) -> List[Dict[str, str]]:
    """Run the analysis statement ``sql`` over ``rows``; an SLS-style 400 when it fails."""
    columns = sorted({key for row in rows for key in row})
    kinds = {name: _column_type([row.get(name) for row in rows]) for name in columns}
    conn = sqlite3.connect(":memory:")
    try:
        conn.create_aggregate("approx_percentile", 2, _ApproxPercentile)
        conn.create_aggregate("max_by", 2, _MaxBy)
        conn.create_aggregate("min_by", 2, _MinBy)
        conn.create_aggregate("count_if", 1, _CountIf)
        conn.create_function("date_trunc", 2, _date_trunc)
        conn.create_function("from_unixtime", 1, _from_unixtime)
        quoted = ['"%s"' % name.replace('"', '""') for name in columns]
        conn.execute("CREATE TABLE log (%s)" % ", ".join(
            "%s %s" % (q, kinds[name]) for q, name in zip(quoted, columns)) if columns
            else "CREATE TABLE log (__time__ INTEGER)")
        if columns:
            conn.executemany("INSERT INTO log VALUES (%s)" % ", ".join("?" * len(columns)),
                             [[_convert(row.get(name), kinds[name]) for name in columns]
                              for row in rows])
        statement = with_from(sql.strip().rstrip(";"))
        for _ in range(50):  # each round adds one column no row has
            try:
                cursor = conn.execute(statement)
                break
            except sqlite3.OperationalError as exc:
                missing = _NO_COLUMN.search(str(exc))
                if not missing:
                    raise
                conn.execute('ALTER TABLE log ADD COLUMN "%s" TEXT'
                             % missing.group(1).replace('"', '""'))
        else:
            raise sqlite3.OperationalError("too many unknown columns")
        names = [description[0] for description in cursor.description or ()]
        return [{name: _text(value) for name, value in zip(names, values)}
                for values in cursor.fetchall()]
    except (sqlite3.Error, ValueError) as exc:
        raise ApiError(400, "ParameterInvalid", "cannot run the analysis statement %r: %s"
                       % (sql, exc)) from None
    finally:
        conn.close()
