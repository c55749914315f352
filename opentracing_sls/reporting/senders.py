"""Senders: the only objects in the reporting pipeline that own sockets.

A sender knows its transport's framing and size limit; the batching reporter packs encoded
spans into payloads no larger than :attr:`Sender.max_payload_size` and hands them over one at
a time. ``send`` raises on failure; the reporter counts and logs (the sender does not know how
many spans a payload holds).

Senders are used from the reporter's single worker thread only, so they take no locks.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import time
from typing import Any, Dict, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from ..constants import DEFAULT_AGENT_HOST, DEFAULT_COMPACT_PORT, MAX_UDP_PACKET_SIZE

#: Largest HTTP body we build. Keeps each POST under the 1 MiB request-buffer limits that
#: proxies and sidecars (Envoy, nginx) commonly apply; jaeger-collector itself has no cap.
DEFAULT_MAX_BODY_SIZE = 1_000_000

#: A UDP send only blocks while the local socket buffer is full; bound it anyway so a
#: pathological kernel state cannot wedge the worker.
UDP_SEND_TIMEOUT = 1.0
#: How long a resolved agent address is trusted. Kubernetes agent Services (``jaeger-agent``)
#: can move; re-resolving twice a minute costs nothing on a background thread.
UDP_RESOLVE_INTERVAL = 30.0
#: After a failed resolution, sends fail fast for this long instead of hitting DNS per batch.
UDP_RESOLVE_RETRY = 5.0

THRIFT_BINARY_CONTENT_TYPE = "application/vnd.apache.thrift.binary"

Stats = Tuple[int, int, int]


class HttpSendError(OSError):
    """The collector answered with a non-2xx status."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        super().__init__(f"HTTP {status} {reason}: {body[:200]!r}")
        self.status = status


class Sender:
    """Transport interface used by :class:`~opentracing_sls.reporting.reporter.Reporter`."""

    #: Thrift protocol the receiver expects: ``"compact"`` or ``"binary"``.
    protocol: str = "compact"
    #: Upper bound on the size of one payload (datagram or HTTP body), in bytes.
    max_payload_size: int = MAX_UDP_PACKET_SIZE

    def payload_overhead(self, encoder: Any, process: bytes) -> int:
        """Upper bound of the bytes a payload needs besides its encoded spans."""
        return int(encoder.emit_batch_overhead(process))

    def build_payload(
        self, encoder: Any, process: bytes, spans: Sequence[bytes], seq_no: int, stats: Stats
    ) -> bytes:
        """Frames encoded spans into one payload for this transport."""
        raise NotImplementedError

    def send(self, payload: bytes) -> None:
        """Sends one payload; raises on failure."""
        raise NotImplementedError

    def close(self) -> None:
        """Releases the transport's resources; a later ``send`` reopens them."""

    def reset_after_fork(self) -> None:
        """Forgets resources inherited from the parent process (called in a forked child)."""
        self.close()


class UdpSender(Sender):
    """Sends ``Agent.emitBatch`` datagrams to jaeger-agent (6831 compact, 6832 binary).

    The socket is created on the first send, never in the constructor, so building a tracer
    touches neither DNS nor the network. The address comes from
    ``getaddrinfo(host, port, SOCK_DGRAM)`` (first result, so IPv6 when the resolver prefers
    it) and the socket is unconnected: with no agent listening, ``sendto`` still succeeds
    instead of surfacing ICMP port-unreachable errors.
    """

    def __init__(
        self,
        host: str = DEFAULT_AGENT_HOST,
        port: int = DEFAULT_COMPACT_PORT,
        protocol: str = "compact",
        max_packet_size: int = MAX_UDP_PACKET_SIZE,
    ) -> None:
        if protocol not in ("compact", "binary"):
            raise ValueError(f"protocol must be 'compact' or 'binary', got {protocol!r}")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be an int in 1..65535, got {port!r}")
        # 65 507 is the largest IPv4 UDP payload; below ~1 KiB hardly any span would fit.
        if not isinstance(max_packet_size, int) or not 1024 <= max_packet_size <= 65507:
            raise ValueError(
                f"max_packet_size must be an int in 1024..65507, got {max_packet_size!r}"
            )
        self.host = host or DEFAULT_AGENT_HOST
        self.port = port
        self.protocol = protocol
        self.max_payload_size = max_packet_size
        self._sock: Optional[socket.socket] = None
        self._family: Optional[int] = None
        self._address: Any = None
        self._resolve_at = 0.0  # monotonic time of the next (re-)resolution
        self._resolve_error: Optional[str] = None

    def __repr__(self) -> str:
        return f"UdpSender({self.host}:{self.port}, {self.protocol})"

    def build_payload(
        self, encoder: Any, process: bytes, spans: Sequence[bytes], seq_no: int, stats: Stats
    ) -> bytes:
        return encoder.encode_emit_batch(process, spans, seq_no, stats)

    def send(self, payload: bytes) -> None:
        if len(payload) > self.max_payload_size:
            raise ValueError(
                f"datagram of {len(payload)} bytes exceeds max_packet_size {self.max_payload_size}"
            )
        self._resolve()
        sock = self._sock
        if sock is None:  # unreachable: _resolve either opens the socket or raises
            raise OSError("UDP socket not open")
        sock.sendto(payload, self._address)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._address = None
        self._family = None
        self._resolve_at = 0.0
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _resolve(self) -> None:
        now = time.monotonic()
        if now < self._resolve_at:
            if self._address is not None:
                return
            raise socket.gaierror(f"cannot resolve {self.host}:{self.port}: {self._resolve_error}")
        try:
            infos = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)
            family, _type, proto, _name, address = infos[0]
        except (OSError, IndexError) as exc:
            self._resolve_at = now + UDP_RESOLVE_RETRY
            self._resolve_error = str(exc) or type(exc).__name__
            if self._address is not None:
                return  # keep the last good address during a DNS hiccup
            raise socket.gaierror(
                f"cannot resolve {self.host}:{self.port}: {self._resolve_error}"
            ) from None
        if self._sock is None or family != self._family:
            if self._sock is not None:
                self._sock.close()
            sock = socket.socket(family, socket.SOCK_DGRAM, proto)
            sock.settimeout(UDP_SEND_TIMEOUT)
            self._sock, self._family = sock, family
        self._address = address
        self._resolve_at = now + UDP_RESOLVE_INTERVAL


class HttpSender(Sender):
    """POSTs binary-Thrift ``Batch`` bodies to a jaeger-collector (``JAEGER_ENDPOINT``).

    Uses the standard library's ``http.client`` on purpose: applications instrument
    ``requests`` and we must never trace our own export traffic. Every request carries
    ``b3: 0`` so an Istio/Envoy sidecar does not start a trace for it either. The connection
    is kept alive between batches and reopened after any error.
    """

    protocol = "binary"

    def __init__(
        self,
        endpoint: str,
        user: Optional[str] = None,
        password: Optional[str] = None,
        timeout: float = 5.0,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        parts = urlsplit(endpoint or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if not isinstance(max_body_size, int) or max_body_size < 1024:
            raise ValueError(f"max_body_size must be an int >= 1024, got {max_body_size!r}")
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self.max_payload_size = max_body_size
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        self._headers: Dict[str, str] = {
            "Content-Type": THRIFT_BINARY_CONTENT_TYPE,
            "b3": "0",
        }
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode())
            self._headers["Authorization"] = "Basic " + token.decode("ascii")
        self._conn: Optional[http.client.HTTPConnection] = None

    def __repr__(self) -> str:
        return f"HttpSender({self.endpoint})"

    def build_payload(
        self, encoder: Any, process: bytes, spans: Sequence[bytes], seq_no: int, stats: Stats
    ) -> bytes:
        return encoder.encode_batch(process, spans, seq_no, stats)

    def send(self, payload: bytes) -> None:
        if len(payload) > self.max_payload_size:
            raise ValueError(
                f"body of {len(payload)} bytes exceeds max_body_size {self.max_payload_size}"
            )
        reused = self._conn is not None
        try:
            self._post(payload)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # A kept-alive connection the server closed while idle fails on first use;
            # that says nothing about the collector, so retry once on a fresh connection.
            if not reused:
                raise
            self._post(payload)

    def _post(self, payload: bytes) -> None:
        conn = self._conn
        if conn is None:
            conn = self._conn = self._connect()
        try:
            conn.request("POST", self._path, body=payload, headers=self._headers)
            response = conn.getresponse()
            body = response.read()  # drain, so the connection can be reused
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        if not 200 <= response.status < 300:
            raise HttpSendError(response.status, response.reason, body)

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self.timeout,
                context=ssl.create_default_context(),
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass
