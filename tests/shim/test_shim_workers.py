"""``--workers N``: N processes receive on the same UDP port (SO_REUSEPORT), all write the one
store, and SIGTERM to the first stops them all without losing what they received."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import List

import pytest

from opentracing_sls.reporting.encoding import get_encoder
from opentracing_sls.shim.store import LocalStore
from opentracing_sls.testing import make_span_record

SHIM = [sys.executable, "-m", "opentracing_sls.cli", "shim"]
SENDERS = 64
SPANS_PER_DATAGRAM = 10


def _children(pid: int) -> List[int]:
    path = "/proc/%d/task/%d/children" % (pid, pid)
    with open(path) as f:
        return [int(p) for p in f.read().split()]


def _wait_healthy(admin: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % admin, timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, "shim did not start"
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.1)


def test_workers_share_the_udp_port_and_stop_together(pick_ports, tmp_path):
    if not hasattr(socket, "SO_REUSEPORT") or not os.path.exists("/proc/self/task"):
        pytest.skip("SO_REUSEPORT and /proc are needed")
    compact, admin = pick_ports(2)
    db = str(tmp_path / "spans.db")
    process = subprocess.Popen(SHIM + [
        "--workers", "2", "--listen.host", "127.0.0.1", "--listen.compact_port", str(compact),
        "--listen.binary_port", "0", "--listen.http_port", "0", "--listen.zipkin_port", "0",
        "--listen.sampling_port", "0", "--listen.query_port", "0",
        "--listen.admin_port", str(admin), "--storage.local.path", db],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_healthy(admin, process)
        deadline = time.monotonic() + 30
        while len(_children(process.pid)) < 1:
            assert time.monotonic() < deadline, "the second worker did not start"
            time.sleep(0.1)
        [worker] = _children(process.pid)
        time.sleep(1.0)  # the worker binds after it starts; give it time to join the port
        encoder = get_encoder("compact")
        proc_bytes = encoder.encode_process("workers", {})
        total = 0
        # Many source ports: the kernel spreads them over the sockets by 4-tuple hash.
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SENDERS)]
        try:
            for n, sock in enumerate(socks):
                records = [make_span_record(n * SPANS_PER_DATAGRAM + i + 1)
                           for i in range(SPANS_PER_DATAGRAM)]
                sock.sendto(encoder.encode_emit_batch(
                    proc_bytes, [encoder.encode_span(r) for r in records], n + 1, (0, 0, 0)),
                    ("127.0.0.1", compact))
                total += SPANS_PER_DATAGRAM
        finally:
            for sock in socks:
                sock.close()
        deadline = time.monotonic() + 30
        stored = 0
        while stored < total and time.monotonic() < deadline:
            time.sleep(0.2)
            with LocalStore(db, create=False) as store:
                stored = store.span_count()
        # The first process's own metrics show only its share: the rest went to the worker.
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5) as r:
            text = r.read().decode()
        first = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("opentracing_sls_shim_spans_decoded_total"))
        process.send_signal(signal.SIGTERM)
        # The first process forwards the signal and waits for its workers before exiting.
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert stored == total
    assert 0 < first < total, "one process received everything: the port was not shared"
    assert not _alive(worker), "the worker outlived the first process"


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_workers_stop_when_the_first_process_is_killed(pick_ports, tmp_path):
    if not hasattr(socket, "SO_REUSEPORT") or not os.path.exists("/proc/self/task"):
        pytest.skip("SO_REUSEPORT and /proc are needed")
    compact, admin = pick_ports(2)
    process = subprocess.Popen(SHIM + [
        "--workers", "3", "--listen.host", "127.0.0.1", "--listen.compact_port", str(compact),
        "--listen.binary_port", "0", "--listen.http_port", "0", "--listen.zipkin_port", "0",
        "--listen.sampling_port", "0", "--listen.query_port", "0",
        "--listen.admin_port", str(admin), "--storage.local.path", str(tmp_path / "s.db")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: List[int] = []
    try:
        _wait_healthy(admin, process)
        deadline = time.monotonic() + 30
        while len(workers) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
            workers = _children(process.pid)
        process.kill()  # no SIGTERM to forward: the workers must notice on their own
        process.wait(timeout=10)
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "a worker outlived the killed first process"
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
