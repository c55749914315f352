"""A bounded, crash-consistent, first-in-first-out queue of records on disk.

The SLS sink keeps here the batches SLS cannot take right now, and replays them in order when
it can, also after a restart (including ``kill -9`` or a power loss). Layout of the directory:

- ``<20-digit sequence>.seg``: segment files, appended to in sequence order. A record is a
  20-byte header and its payload::

      magic "SPL1" | payload length u32 | items u32 | crc32(payload) u32 | crc32(first 16) u32

  All little-endian. ``items`` is what the record holds (spans), for the gauges, without
  reading payloads. The header has its own checksum so a damaged length is never trusted.
- ``cursor``: the position of the oldest record not yet acknowledged (segment, offset) with a
  checksum, replaced atomically (write, then rename) on every :meth:`Spool.commit`.

Crash consistency: a record is written with one ``write`` call after the previous one is
complete, so a crash can only leave the LAST record of the LAST segment torn. Opening the spool
scans that segment, keeps the intact prefix and truncates the rest (counted as corrupt). A
damaged record anywhere else (a bad disk) is found when it is read: the reader skips forward to
the next intact header and counts the skipped bytes. A record is never handed out unless both
checksums match, so garbage is never replayed. Acknowledging a record and deleting its segment
happen in an order that at worst replays it once more (at-least-once).

Bounded: the segment files together never exceed ``max_bytes``; :meth:`append` refuses a
record that would not fit (the caller counts the drop). Without ``fsync`` (the default) a
record survives the death of the process but not of the machine; with it, both.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

MAGIC = b"SPL1"
_HEADER = struct.Struct("<4sIII")
HEADER_SIZE = _HEADER.size + 4
_CURSOR = b"SPCUR1"
SUFFIX = ".seg"
#: Records larger than this are refused (the sink's batches are at most 5 MB raw).
MAX_RECORD = 64 * 1024 * 1024


class SpoolRecord(NamedTuple):
    seq: int  # segment
    offset: int  # of the header
    end: int  # offset after the payload
    items: int
    payload: bytes


def frame(payload: bytes, items: int) -> bytes:
    head = _HEADER.pack(MAGIC, len(payload), items, zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def _parse_header(data: bytes) -> Optional[Tuple[int, int, int]]:
    """(length, items, payload crc) of a valid header, else None."""
    if len(data) < HEADER_SIZE or data[:4] != MAGIC:
        return None
    magic, length, items, crc = _HEADER.unpack_from(data)
    if struct.unpack_from("<I", data, 16)[0] != zlib.crc32(data[:16]) or length > MAX_RECORD:
        return None
    return length, items, crc


class Spool:
    """Thread-safe: any thread may :meth:`append`; one consumer calls :meth:`peek` and
    :meth:`commit`. ``on_corrupt(bytes)`` is told about every damaged stretch skipped."""

    def __init__(self, path: str, max_bytes: int, fsync: bool = False,
                 segment_bytes: Optional[int] = None,
                 on_corrupt: Optional[Callable[[int], None]] = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = segment_bytes or max(64 << 10, min(64 << 20, max_bytes // 16))
        self.on_corrupt = on_corrupt or (lambda skipped: None)
        self._lock = threading.Lock()
        os.makedirs(path, exist_ok=True)
        self._sizes: Dict[int, int] = {}  # segment -> bytes written (its valid end)
        self._fd = -1
        self._active = 0
        self._read: Tuple[int, int] = (0, 0)
        self._read_handle: Optional[Tuple[int, Any]] = None
        self.batches = 0
        self.items = 0
        self.corrupt_bytes = 0
        self._recover()

    # -- state -----------------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values())

    def _segment(self, seq: int) -> str:
        return os.path.join(self.path, "%020d%s" % (seq, SUFFIX))

    def _recover(self) -> None:
        seqs = sorted(int(name[:-len(SUFFIX)]) for name in os.listdir(self.path)
                      if name.endswith(SUFFIX) and name[:-len(SUFFIX)].isdigit())
        cursor = self._read_cursor()
        if cursor is not None and seqs and cursor[0] >= seqs[0]:
            for seq in [s for s in seqs if s < cursor[0]]:
                os.remove(self._segment(seq))  # acknowledged before the crash
            seqs = [s for s in seqs if s >= cursor[0]]
            start = cursor if cursor[0] in seqs else ((seqs[0], 0) if seqs else (0, 0))
        else:
            start = (seqs[0], 0) if seqs else (0, 0)
        for seq in seqs:
            self._sizes[seq] = os.path.getsize(self._segment(seq))
        if seqs:
            last = seqs[-1]
            valid = self._valid_prefix(last, start[1] if start[0] == last else 0)
            if valid < self._sizes[last]:
                self._note_corrupt(self._sizes[last] - valid)
                with open(self._segment(last), "r+b") as handle:
                    handle.truncate(valid)
                self._sizes[last] = valid
        self._read = start
        self._count_pending()
        # Never reuse a sequence number at or below the cursor's: a restart would take that
        # segment for an acknowledged one.
        self._open_active(max([1] + seqs + ([cursor[0]] if cursor else [])))

    def _valid_prefix(self, seq: int, offset: int) -> int:
        """The end of the last intact record of a segment, reading from ``offset``. Damage
        followed by intact records is left for the reader (it skips and counts it); only what
        follows the last intact record, a torn tail, is reported for cutting."""
        with open(self._segment(seq), "rb") as handle:
            handle.seek(offset)
            data = handle.read()
        pos = end = 0
        while pos < len(data):
            parsed = _parse_header(data[pos:pos + HEADER_SIZE])
            if parsed is not None:
                body = data[pos + HEADER_SIZE:pos + HEADER_SIZE + parsed[0]]
                if len(body) == parsed[0] and zlib.crc32(body) == parsed[2]:
                    pos = end = pos + HEADER_SIZE + parsed[0]
                    continue
            found = self._resync(data[pos + 1:], pos + 1, len(data))
            if found >= len(data):
                break
            pos = found
        return offset + end

    def _count_pending(self) -> None:
        """Batches and items from the read position on (headers only; payloads are checked
        when read)."""
        batches = items = 0
        seq, offset = self._read
        for s in sorted(self._sizes):
            if s < seq:
                continue
            with open(self._segment(s), "rb") as handle:
                pos = offset if s == seq else 0
                while pos + HEADER_SIZE <= self._sizes[s]:
                    handle.seek(pos)
                    parsed = _parse_header(handle.read(HEADER_SIZE))
                    if parsed is None:
                        break  # damaged: skipped (and counted) when read
                    batches += 1
                    items += parsed[1]
                    pos += HEADER_SIZE + parsed[0]
        self.batches, self.items = batches, items

    def _open_active(self, seq: int) -> None:
        if self._fd >= 0:
            if self.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
        self._active = seq
        self._fd = os.open(self._segment(seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._sizes.setdefault(seq, 0)
        if self._read == (0, 0) or self._read[0] not in self._sizes:
            self._read = (seq, 0)

    # -- producer side ---------------------------------------------------------------------------

    def append(self, payload: bytes, items: int) -> bool:
        """Adds a record at the end; False (nothing written) when it does not fit."""
        record = frame(payload, items)
        with self._lock:
            if self._fd < 0:
                return False
            active = self._active
            if self._sizes[active] and self._read == (active, self._sizes[active]):
                # Everything written was read: start afresh so the read bytes are freed.
                self._open_active(active + 1)
                self._advance_segment(active)
            if self.bytes + len(record) > self.max_bytes or len(payload) > MAX_RECORD:
                return False
            if self._sizes[self._active] and (self._sizes[self._active] + len(record)
                                              > self.segment_bytes):
                self._open_active(self._active + 1)
            view = memoryview(record)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(self._fd)
            self._sizes[self._active] += len(record)
            self.batches += 1
            self.items += items
        return True

    # -- consumer side ---------------------------------------------------------------------------

    def peek(self) -> Optional[SpoolRecord]:
        """The oldest record not yet committed, or None. Damaged stretches are skipped."""
        with self._lock:
            while True:
                seq, offset = self._read
                size = self._sizes.get(seq)
                if size is None:
                    return None
                if offset >= size:
                    if seq == self._active:
                        return None
                    self._advance_segment(seq)
                    continue
                record = self._read_at(seq, offset, size)
                if record is not None:
                    return record

    def _reader(self, seq: int) -> Any:
        """A read handle on segment ``seq``, kept open while the reader is in it."""
        if self._read_handle is not None and self._read_handle[0] == seq:
            return self._read_handle[1]
        if self._read_handle is not None:
            self._read_handle[1].close()
        handle = open(self._segment(seq), "rb")  # noqa: SIM115 - closed on segment change
        self._read_handle = (seq, handle)
        return handle

    def _read_at(self, seq: int, offset: int, size: int) -> Optional[SpoolRecord]:
        handle = self._reader(seq)
        handle.seek(offset)
        parsed = _parse_header(handle.read(HEADER_SIZE))
        if parsed is not None and offset + HEADER_SIZE + parsed[0] <= size:
            payload = handle.read(parsed[0])
            if zlib.crc32(payload) == parsed[2]:
                return SpoolRecord(seq, offset, offset + HEADER_SIZE + parsed[0], parsed[1],
                                   payload)
        # Damaged: resynchronise on the next intact record of this segment.
        handle.seek(offset + 1)
        rest = handle.read(size - offset - 1)
        position = self._resync(rest, offset + 1, size)
        self._note_corrupt(position - offset)
        self._read = (seq, position)
        return None

    def _resync(self, data: bytes, base: int, size: int) -> int:
        start = 0
        while True:
            found = data.find(MAGIC, start)
            if found < 0:
                return size
            parsed = _parse_header(data[found:found + HEADER_SIZE])
            if parsed is not None:
                body = data[found + HEADER_SIZE:found + HEADER_SIZE + parsed[0]]
                if len(body) == parsed[0] and zlib.crc32(body) == parsed[2]:
                    return base + found
            start = found + 1

    def commit(self, record: SpoolRecord) -> None:
        """Acknowledges ``record`` (the one :meth:`peek` returned): it is never handed out
        again, also after a restart."""
        with self._lock:
            if (record.seq, record.offset) != self._read:
                return  # committed already
            self.batches = max(0, self.batches - 1)
            self.items = max(0, self.items - record.items)
            self._read = (record.seq, record.end)
            if record.end >= self._sizes.get(record.seq, 0) and record.seq != self._active:
                self._advance_segment(record.seq)
            else:
                self._write_cursor(*self._read)

    def _advance_segment(self, seq: int) -> None:
        """Moves past a fully read segment: the cursor first, then the file, so a crash in
        between never loses a record."""
        later = [s for s in self._sizes if s > seq]
        nxt = min(later) if later else self._active + 1
        self._read = (nxt, 0)
        self._write_cursor(nxt, 0)
        self._sizes.pop(seq, None)
        if self._read_handle is not None and self._read_handle[0] == seq:
            self._read_handle[1].close()
            self._read_handle = None
        try:
            os.remove(self._segment(seq))
        except FileNotFoundError:
            pass
        if nxt not in self._sizes:  # the reader caught up with a just-rotated writer
            self._open_active(nxt)

    def _write_cursor(self, seq: int, offset: int) -> None:
        body = b"%s %d %d" % (_CURSOR, seq, offset)
        data = body + b" %d\n" % zlib.crc32(body)
        tmp = os.path.join(self.path, "cursor.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(self.path, "cursor"))

    def _read_cursor(self) -> Optional[Tuple[int, int]]:
        try:
            with open(os.path.join(self.path, "cursor"), "rb") as handle:
                parts = handle.read(200).split()
        except OSError:
            return None
        if len(parts) != 4 or parts[0] != _CURSOR:
            return None
        try:
            seq, offset, crc = int(parts[1]), int(parts[2]), int(parts[3])
        except ValueError:
            return None
        if zlib.crc32(b" ".join(parts[:3])) != crc:
            return None
        return seq, offset

    def _note_corrupt(self, skipped: int) -> None:
        self.corrupt_bytes += skipped
        self.on_corrupt(skipped)

    def segments(self) -> List[str]:
        with self._lock:
            return [self._segment(seq) for seq in sorted(self._sizes)]

    def close(self) -> None:
        with self._lock:
            if self._read_handle is not None:
                self._read_handle[1].close()
                self._read_handle = None
            if self._fd >= 0:
                if self.fsync:
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
