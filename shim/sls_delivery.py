"""Sending one LogGroup to SLS, with the failure policy of each error class.

- ``retryable`` (5xx, ``ServerBusy``, write quotas, timeouts, connection errors): capped
  exponential backoff with full jitter, up to ``max_attempts`` attempts (then the caller spools
  the group), or without limit for a group that is already in the spool.
- ``auth`` and ``fatal``: no retry; the sink halts (spools, reports unhealthy).
- ``missing`` (project or logstore deleted meanwhile): provision again once (with
  ``auto_create``) and retry; otherwise halt.
- ``too_large`` / ``invalid``: the group is split in halves, each sent on its own, down to
  single logs; a single log that is too large has its values cut to 64 KiB once; a single log
  refused again is dropped and counted (``too_large`` / ``rejected``). Each step makes the
  pieces strictly smaller, so this always ends.
"""

from __future__ import annotations

import random
import threading
from typing import Callable, List, NamedTuple, Optional, Tuple

from aliyun.log.proto import LogGroupRaw

from .sls_client import AUTH, FATAL, MISSING, RETRYABLE, TOO_LARGE, SlsClient, SlsError
from .sls_encode import group_tail, split_group, truncate_utf8

#: A single log refused as too large is retried once with every value cut to this size.
SHRUNK_VALUE_BYTES = 64 * 1024


class Group(NamedTuple):
    """A LogGroup body (logs, then the Topic/Source tail) and its log count."""

    data: bytes
    count: int
    shrunk: bool = False


class Outcome(NamedTuple):
    """What became of a group: ``delivered`` and ``dropped`` log counts, and the pieces left
    over (``left``) when the sink must keep them for later (``error`` says why)."""

    delivered: int
    left: List[Group]
    error: Optional[SlsError]


class Policy(NamedTuple):
    max_attempts: int
    initial_backoff: float  # seconds
    max_backoff: float


def backoff(attempt: int, policy: Policy, rng: random.Random) -> float:
    """Equal jitter: uniform in [c/2, c] with c = min(cap, initial * 2^(attempt-1)) and
    ``attempt`` from 1, so senders that failed together do not retry together."""
    ceiling = min(policy.max_backoff, policy.initial_backoff * (2 ** min(attempt - 1, 30)))
    return rng.uniform(ceiling / 2, ceiling)


class Delivery:
    """Sends groups for one sink; thread-safe (each thread uses its own SDK client)."""

    def __init__(self, client: SlsClient, project: str, logstore: str, policy: Policy,
                 stop: threading.Event, provision: Callable[[], None],
                 on_retry: Callable[[str], None], on_drop: Callable[[int, str, str], None],
                 on_written: Callable[[int, int], None], on_truncated: Callable[[int], None],
                 tail: Optional[bytes] = None) -> None:
        self.client = client
        self.project = project
        self.logstore = logstore
        self.policy = policy
        self.stop = stop
        self.provision = provision
        self.on_retry = on_retry
        self.on_drop = on_drop
        self.on_written = on_written
        self.on_truncated = on_truncated
        self.tail = group_tail() if tail is None else tail
        self._rng = random.Random()

    def put(self, data: bytes) -> None:
        """One PutLogs attempt through the SDK's ``put_log_raw`` (lz4, ``/shards/lb``)."""
        body = _Encoded(data)
        self.client.call("put_logs", lambda c: c.put_log_raw(self.project, self.logstore, body))

    def deliver(self, group: Group, persistent: bool,
                give_up: Optional[Callable[[], bool]] = None) -> Outcome:
        """Sends ``group``, splitting it when SLS refuses its size or content. ``persistent``
        retries retryable errors without limit (the group is in the spool already);
        ``give_up()`` is asked before each retry (an outage declared by another sender, a
        shutdown)."""
        pending = [group]
        delivered = 0
        while pending:
            piece = pending.pop(0)
            error = self._send(piece, persistent, give_up)
            if error is None:
                delivered += piece.count
                self.on_written(piece.count, len(piece.data))
                continue
            if error.kind in (RETRYABLE, AUTH, FATAL, MISSING):
                return Outcome(delivered, [piece] + pending, error)
            logs = split_group(piece.data)
            if len(logs) > 1:
                middle = len(logs) // 2
                pending[:0] = [Group(b"".join(logs[:middle]) + self.tail, middle),
                               Group(b"".join(logs[middle:]) + self.tail, len(logs) - middle)]
            elif error.kind == TOO_LARGE and not piece.shrunk:
                data, cut = shrink(piece.data)
                self.on_truncated(cut)
                pending.insert(0, Group(data, 1, True))
            else:
                reason = "too_large" if error.kind == TOO_LARGE else "rejected"
                self.on_drop(piece.count, reason, str(error))
        return Outcome(delivered, [], None)

    def _send(self, group: Group, persistent: bool,
              give_up: Optional[Callable[[], bool]]) -> Optional[SlsError]:
        attempt = 0
        reprovisioned = False
        while True:
            attempt += 1
            try:
                self.put(group.data)
                return None
            except SlsError as exc:
                error = exc
            if error.kind == MISSING and not reprovisioned:
                reprovisioned = True
                try:
                    self.provision()
                except SlsError as exc:
                    if exc.kind != RETRYABLE:
                        return exc
                    error = exc
                else:
                    continue
            if error.kind != RETRYABLE:
                return error
            if self.stop.is_set() or (give_up is not None and give_up()) or (
                    not persistent and attempt >= self.policy.max_attempts):
                return error
            self.on_retry(error.outcome)
            if self.stop.wait(backoff(attempt, self.policy, self._rng)):
                return error


class _Encoded:
    """A LogGroup already in wire format: ``put_log_raw`` only calls ``SerializeToString``
    (building the SDK's protobuf object would re-encode every field in Python)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # noqa: N802 - the protobuf method name
        return self.data


def shrink(data: bytes, limit: int = SHRUNK_VALUE_BYTES) -> Tuple[bytes, int]:
    """The LogGroup with every value cut to ``limit`` bytes, and how many were cut (a rare
    path: the SDK's protobuf classes do the parsing)."""
    group = LogGroupRaw.FromString(data)
    cut = 0
    for log in group.Logs:
        for content in log.Contents:
            if len(content.Value) > limit:
                content.Value = truncate_utf8(content.Value, limit)
                cut += 1
    return group.SerializeToString(), cut
