"""The query API's storage interface (``Reader``) and its local-store implementation.

A reader answers in model spans; the API turns them into Jaeger JSON. Readers block (SQLite,
HTTP to SLS), so the API calls them in a thread pool and never on its event loop; a reader
must therefore be safe to call from several threads at once (``LocalStore`` hands each
thread its own connection; the SLS SDK client is a ``requests`` session per call).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Protocol, Sequence, Tuple

from .model import Span
from .store import LocalStore, OperationStats, TraceQuery


class Reader(Protocol):
    """What the query API reads. Trace lists hold full traces (every span), each in
    start-time order; ``find_traces`` returns the newest matching trace first."""

    #: Shown in logs and ``/api/stats`` answers ("local", "aliyun_sls").
    name: str

    def services(self) -> List[str]:
        """Every service name, sorted."""

    def operations(self, service: str,
                   span_kind: Optional[str] = None) -> List[Tuple[str, str]]:
        """(operation, span kind) pairs of ``service``, sorted; ``span_kind`` filters."""

    def get_traces(self, trace_ids: Sequence[int]) -> Dict[int, List[Span]]:
        """The spans of each known trace id; unknown ids are absent from the result."""

    def find_traces(self, query: TraceQuery) -> List[List[Span]]:
        """The traces with a span matching ``query`` (Jaeger semantics, see ``TraceQuery``)."""

    def dependencies(self, end_us: int, lookback_us: int) -> List[Tuple[str, str, int]]:
        """(parent service, child service, calls) of the spans started in
        ``[end_us - lookback_us, end_us]``."""

    def operation_stats(self, service: Optional[str], start_us: int,
                        end_us: int) -> List[OperationStats]:
        """Per-operation count, errors and latency percentiles, busiest first."""

    def close(self) -> None:
        """Release connections; idempotent."""


class LocalReader:
    """A ``Reader`` over the embedded SQLite store (``LocalStore``)."""

    name = "local"

    def __init__(self, store: LocalStore, *, owns_store: bool = True) -> None:
        self.store = store
        self._owns_store = owns_store

    @classmethod
    def open(cls, path: str, *, create: bool = False) -> LocalReader:
        """A reader of the store file ``path``; StoreError when it is not one (``create``
        makes a new, empty store instead of refusing a missing file)."""
        return cls(LocalStore(path, create=create))

    def services(self) -> List[str]:
        return self.store.services()

    def operations(self, service: str,
                   span_kind: Optional[str] = None) -> List[Tuple[str, str]]:
        return self.store.operations(service, span_kind)

    def get_traces(self, trace_ids: Sequence[int]) -> Dict[int, List[Span]]:
        return self.store.get_traces(trace_ids)

    def find_traces(self, query: TraceQuery) -> List[List[Span]]:
        return self.store.find_traces(query)

    def dependencies(self, end_us: int, lookback_us: int) -> List[Tuple[str, str, int]]:
        return self.store.dependencies(end_us, lookback_us)

    def operation_stats(self, service: Optional[str], start_us: int,
                        end_us: int) -> List[OperationStats]:
        return self.store.operation_stats(service, start_us, end_us)

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def __repr__(self) -> str:
        return "LocalReader(%r)" % self.store.path
