"""The disk spool: FIFO across restarts, bounded, and crash-consistent (torn or damaged records
are detected and skipped, never handed out)."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib

from opentracing_sls.shim.spool import HEADER_SIZE, Spool


def payload(i: int, size: int = 100) -> bytes:
    body = (b"%08d" % i) * (size // 8)
    return body + struct.pack("<I", zlib.crc32(body))


def drain(spool: Spool) -> list:
    out = []
    while True:
        record = spool.peek()
        if record is None:
            return out
        out.append(record.payload)
        spool.commit(record)


def test_fifo_order_counts_and_restart(tmp_path):
    spool = Spool(str(tmp_path), 10 << 20, segment_bytes=4096)
    for i in range(200):
        assert spool.append(payload(i), items=i % 7)
    assert spool.batches == 200 and spool.items == sum(i % 7 for i in range(200))
    assert len(spool.segments()) > 3, "small segments rotate"
    first = [spool.peek().payload]
    spool.commit(spool.peek())
    for _ in range(49):
        spool.commit(spool.peek())
    spool.close()

    reopened = Spool(str(tmp_path), 10 << 20, segment_bytes=4096)
    assert reopened.batches == 150, "acknowledged records are not replayed after a restart"
    rest = drain(reopened)
    assert first == [payload(0)]
    assert rest == [payload(i) for i in range(50, 200)]
    assert reopened.batches == 0 and reopened.items == 0
    assert len(reopened.segments()) == 1, "read segments are deleted"
    reopened.close()


def test_bounded_refuses_when_full_and_frees_after_reading(tmp_path):
    spool = Spool(str(tmp_path), 64 * 1024, segment_bytes=16 * 1024)
    accepted = 0
    while spool.append(payload(accepted, 1000), 1):
        accepted += 1
    assert 40 < accepted < 70
    assert spool.bytes <= 64 * 1024
    assert not spool.append(b"x" * (65 * 1024), 1), "a record larger than the spool never fits"
    assert drain(spool) == [payload(i, 1000) for i in range(accepted)]
    assert spool.append(payload(9999, 1000), 1), "reading frees the space"
    spool.close()


def test_torn_tail_is_cut_and_counted(tmp_path):
    spool = Spool(str(tmp_path), 10 << 20)
    for i in range(10):
        spool.append(payload(i), 1)
    spool.close()
    [segment] = spool.segments()
    size = os.path.getsize(segment)
    with open(segment, "r+b") as handle:  # the last record was half written
        handle.truncate(size - 40)
    corrupt = []
    reopened = Spool(str(tmp_path), 10 << 20, on_corrupt=corrupt.append)
    assert corrupt == [len(payload(9)) + HEADER_SIZE - 40]
    assert reopened.batches == 9
    assert drain(reopened) == [payload(i) for i in range(9)]
    # New records go after the intact prefix, not after the garbage.
    reopened.append(payload(42), 1)
    assert drain(reopened) == [payload(42)]
    reopened.close()


def test_garbage_tail_and_damaged_middle_record_are_skipped(tmp_path):
    spool = Spool(str(tmp_path), 10 << 20)
    for i in range(10):
        spool.append(payload(i), 1)
    spool.close()
    [segment] = spool.segments()
    record = len(payload(0)) + HEADER_SIZE
    with open(segment, "r+b") as handle:
        handle.seek(3 * record + HEADER_SIZE + 5)  # flip a payload byte of record 3
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
        handle.seek(0, os.SEEK_END)
        handle.write(b"SPL1" + os.urandom(50))  # a header that never completed
    corrupt = []
    reopened = Spool(str(tmp_path), 10 << 20, on_corrupt=corrupt.append)
    got = drain(reopened)
    assert got == [payload(i) for i in range(10) if i != 3], "damage never replayed"
    assert corrupt[0] == 54, "the garbage tail is cut at open"
    assert corrupt[1] == record, "the damaged record is skipped when read"
    reopened.close()


WRITER = r"""
import struct, sys, time, zlib
from opentracing_sls.shim.spool import Spool
spool = Spool(sys.argv[1], 1 << 30, segment_bytes=256 * 1024)
i = 0
while True:
    body = (b"%08d" % i) * (i % 300 + 1)
    spool.append(body + struct.pack("<I", zlib.crc32(body)), 1)
    if i == 50:
        print("ready", flush=True)
    i += 1
    if i % 20 == 0:
        time.sleep(0.002)  # keep the volume small: the point is where the kill lands
"""


def test_kill_9_during_writes_leaves_an_intact_prefix(tmp_path):
    """A writer killed at a random moment: what it wrote reads back complete and in order."""
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    spool = Spool(str(tmp_path), 1 << 30, segment_bytes=256 * 1024)
    got = drain(spool)
    assert len(got) > 50
    for i, body in enumerate(got):
        assert body[:-4] == (b"%08d" % i) * (i % 300 + 1), "record %d out of order" % i
        assert struct.unpack("<I", body[-4:])[0] == zlib.crc32(body[:-4])
    spool.close()


def test_lost_cursor_replays_instead_of_losing(tmp_path):
    spool = Spool(str(tmp_path), 10 << 20)
    for i in range(5):
        spool.append(payload(i), 1)
    spool.commit(spool.peek())
    spool.close()
    with open(os.path.join(str(tmp_path), "cursor"), "wb") as handle:
        handle.write(b"garbage")
    reopened = Spool(str(tmp_path), 10 << 20)
    assert drain(reopened) == [payload(i) for i in range(5)], "at-least-once, never lost"
    reopened.close()
