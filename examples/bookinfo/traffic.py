"""Page views for the demo: what a browser behind Istio's ingress gateway would send.

Each request carries an ``x-request-id`` as Envoy generates it: a random UUID whose version
digit (character 14 of the text) Envoy overwrites with the reason the request is traced
(``9``: sampled; ``4``, a plain UUID4, means not traced). The
first half of the views are anonymous; then the client signs in as ``jason`` (the user the
Istio routing and fault-injection tasks match on), so the rest carry ``end-user: jason``
downstream.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Callable, List, Optional

import requests

DEMO_USER = "jason"


def envoy_request_id() -> str:
    hexdigits = list(uuid.uuid4().hex)
    hexdigits[12] = "9"  # the version digit: Envoy's trace reason "sampled"
    text = "".join(hexdigits)
    return "-".join((text[:8], text[8:12], text[12:16], text[16:20], text[20:]))


@dataclass
class TrafficResult:
    statuses: Counter = field(default_factory=Counter)
    latencies_ms: List[float] = field(default_factory=list)
    degraded: int = 0
    last_request_id: str = ""
    user: str = ""


class ProgressBar:
    """``[#####.....] 20/40`` redrawn in place on a terminal, a line per quarter otherwise."""

    def __init__(self, total: int, stream: IO[str] = sys.stdout, width: int = 30) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self._printed = -1

    def update(self, done: int, note: str = "") -> None:
        if self.tty:
            filled = int(self.width * done / self.total)
            self.stream.write("\r  [%s%s] %d/%d %s" % ("#" * filled, "." * (self.width - filled),
                                                     done, self.total, note))
            if done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
            return
        quarter = 4 * done // self.total
        if quarter != self._printed:
            self._printed = quarter
            self.stream.write("  %d/%d page views %s\n" % (done, self.total, note))
            self.stream.flush()


def drive(base_url: str, count: int, progress: Optional[Callable[[int, str], None]] = None,
          sign_in_after: Optional[int] = None, timeout: float = 30.0) -> TrafficResult:
    """``count`` page views of ``base_url/productpage``; signs in as :data:`DEMO_USER`
    after ``sign_in_after`` views (default: half)."""
    result = TrafficResult()
    sign_in_at = count // 2 if sign_in_after is None else sign_in_after
    with requests.Session() as client:
        for done in range(count):
            if done == sign_in_at:
                client.post(base_url + "/login", data={"username": DEMO_USER, "passwd": ""},
                            headers={"Referer": base_url + "/productpage"},
                            allow_redirects=False, timeout=timeout)
                result.user = DEMO_USER
            result.last_request_id = envoy_request_id()
            started = time.perf_counter()
            response = client.get(base_url + "/productpage", timeout=timeout,
                                  headers={"x-request-id": result.last_request_id})
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.statuses[response.status_code] += 1
            if "currently unavailable" in response.text:
                result.degraded += 1
            if progress:
                progress(done + 1, "(as %s)" % (result.user or "anonymous"))
    return result
