"""What the SLS test server holds: projects, logstores, index configs and the received logs.

Each PutLogs request is kept as a *batch*: the body as received (still compressed) with its
compression, raw size, log count and arrival time. Logs are decoded only when read (queries,
tests), with the SDK's own protobuf classes (``aliyun.log.proto.LogGroupRaw``), so the server
checks the bytes independently of any encoder under test, and taking a write costs little
(the benchmarks push tens of thousands of spans a second into it). Batches live in memory, or
in a SQLite file (``path=``) when a run would hold more than memory should.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import zlib
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import lz4.block
from aliyun.log.proto import LogGroupRaw


class StoredLog(NamedTuple):
    """One log as received: contents in the order sent (keys may repeat)."""

    time: int
    time_ns: int
    source: str
    topic: str
    tags: Tuple[Tuple[str, str], ...]
    contents: Tuple[Tuple[str, str], ...]

    def row(self) -> Dict[str, str]:
        """As GetLogs returns it: ``__time__``, ``__source__``, ``__topic__``,
        ``__tag__:<k>`` and the contents (a repeated key keeps its last value)."""
        out = {"__time__": str(self.time), "__source__": self.source, "__topic__": self.topic}
        for key, value in self.tags:
            out["__tag__:" + key] = value
        out.update(self.contents)
        return out

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        for k, v in self.contents:
            if k == key:
                return v
        return default


class Batch(NamedTuple):
    received: float
    compress: str  # "lz4", "deflate", "zstd" or "" (none)
    raw_size: int
    count: int
    body: bytes  # as received

    def raw(self) -> bytes:
        return decompress(self.body, self.compress, self.raw_size)


def decompress(body: bytes, compress: str, raw_size: int) -> bytes:
    """Raises ValueError when the body does not decompress to ``raw_size`` bytes."""
    try:
        if compress == "lz4":
            data = lz4.block.decompress(body, uncompressed_size=raw_size)
        elif compress == "deflate":
            data = zlib.decompress(body)
        elif compress == "zstd":
            import zstd  # type: ignore[import-not-found]

            data = zstd.decompress(body)
        elif compress == "":
            data = body
        else:
            raise ValueError("unsupported x-log-compresstype %r" % compress)
    except (lz4.block.LZ4BlockError, zlib.error) as exc:
        raise ValueError("the body does not decompress: %s" % exc) from None
    if len(data) != raw_size:
        raise ValueError("x-log-bodyrawsize says %d bytes, the body has %d"
                         % (raw_size, len(data)))
    return data


def decode_group(raw: bytes) -> List[StoredLog]:
    group = LogGroupRaw.FromString(raw)
    tags = tuple((t.Key, t.Value) for t in group.LogTags)
    return [StoredLog(log.Time, log.Time_ns, group.Source, group.Topic, tags,
                      tuple((c.Key, c.Value.decode("utf-8", "replace")) for c in log.Contents))
            for log in group.Logs]


class Logstore:
    def __init__(self, name: str, meta: Dict[str, Any]) -> None:
        self.name = name
        self.meta = meta
        self.index: Optional[Dict[str, Any]] = None
        self.count = 0
        self.requests = 0


class Project:
    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.created = int(time.time())
        self.logstores: Dict[str, Logstore] = {}


class Store:
    """Projects and batches; thread-safe. ``path`` keeps batches in SQLite instead of memory."""

    def __init__(self, path: Optional[str] = None) -> None:
        self.lock = threading.RLock()
        self.projects: Dict[str, Project] = {}
        self._memory: Dict[Tuple[str, str], List[Batch]] = {}
        self._rows: Dict[Tuple[str, str], Tuple[int, List[StoredLog]]] = {}
        # Decoding runs under its own lock, never under ``lock``: decoding a long run takes
        # seconds, and a PutLogs kept waiting that long times out at the client, which then
        # sends it again, so the server would store it twice (a duplicate SLS would not make).
        self._decode_lock = threading.Lock()
        self._generation: Dict[Tuple[str, str], int] = {}  # bumped when a logstore is dropped
        self._db: Optional[sqlite3.Connection] = None
        if path:
            self._db = sqlite3.connect(path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = OFF")
            self._db.execute("CREATE TABLE IF NOT EXISTS batches (project TEXT, logstore TEXT,"
                             " received REAL, compress TEXT, raw_size INTEGER,"
                             " count INTEGER, body BLOB)")

    def add_batch(self, project: str, logstore: str, batch: Batch) -> None:
        with self.lock:
            store = self.projects[project].logstores[logstore]
            store.count += batch.count
            store.requests += 1
            if self._db is not None:
                self._db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (project, logstore) + tuple(batch))
            else:
                self._memory.setdefault((project, logstore), []).append(batch)

    def batches(self, project: str, logstore: str, start: int = 0) -> Iterator[Batch]:
        """The batches received, in arrival order, from the ``start``-th on."""
        with self.lock:
            if self._db is None:
                items: List[Batch] = self._memory.get((project, logstore), [])[start:]
            else:
                items = [Batch(*row) for row in self._db.execute(
                    "SELECT received, compress, raw_size, count, body FROM batches"
                    " WHERE project = ? AND logstore = ? ORDER BY rowid LIMIT -1 OFFSET ?",
                    (project, logstore, start))]
        return iter(items)

    def logs(self, project: str, logstore: str) -> List[StoredLog]:
        """Every log received, in arrival order (decoded once, then cached). Writes go on
        while it decodes."""
        key = (project, logstore)
        with self._decode_lock:  # one decoder at a time, so the cache grows in order
            with self.lock:
                generation = self._generation.get(key, 0)
                done, rows = self._rows.get(key, (0, []))
                fresh = list(self.batches(project, logstore, done))
            decoded = [log for batch in fresh for log in decode_group(batch.raw())]
            rows = rows + decoded
            with self.lock:
                if self._generation.get(key, 0) == generation:
                    self._rows[key] = (done + len(fresh), rows)
            return list(rows)

    def drop_logstore(self, project: str, logstore: str) -> None:
        with self.lock:
            self._memory.pop((project, logstore), None)
            self._rows.pop((project, logstore), None)
            self._generation[(project, logstore)] = self._generation.get(
                (project, logstore), 0) + 1
            if self._db is not None:
                self._db.execute("DELETE FROM batches WHERE project = ? AND logstore = ?",
                                 (project, logstore))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
