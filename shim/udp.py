"""UDP receivers: one thread per socket, decoding each datagram as it arrives.

The kernel queue in front of each socket is enlarged (``SO_RCVBUF``) to ride out bursts, and
on Linux ``SO_RXQ_OVFL`` reports how many datagrams the kernel had to drop, so even those
losses are counted rather than silent.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
import threading
from typing import Callable, List, Optional

from .metrics import ShimMetrics
from .model import DecodeError, Span

logger = logging.getLogger(__name__)

RECV_BUFFER = 8 * 1024 * 1024
MAX_DATAGRAM = 65535
_SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
_HAS_OVFL = sys.platform.startswith("linux")


def bind_udp(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A bound UDP socket; ``host`` may be an IPv4 or IPv6 literal or a name."""
    family, _, _, _, address = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM,
                                                  0, socket.AI_PASSIVE)[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6 and host in ("::", "[::]"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if reuse_port and hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        except OSError:
            pass  # the OS cap (net.core.rmem_max) applies; the default still works
        if _HAS_OVFL:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_RXQ_OVFL, 1)
            except OSError:
                pass
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class UdpReceiver:
    """Receives datagrams on one socket and hands decoded spans to ``deliver``."""

    def __init__(self, sock: socket.socket, fmt: str, decode: Callable[[bytes], List[Span]],
                 deliver: Callable[[List[Span], str], None], metrics: ShimMetrics) -> None:
        self.sock = sock
        self.format = fmt
        self.decode = decode
        self.deliver = deliver
        self.metrics = metrics
        self.port = sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._kernel_dropped = 0

    def start(self) -> None:
        self.sock.settimeout(0.2)  # lets the loop notice stop() promptly
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="shim-udp-%s-%d" % (self.format, self.port))
        self._thread.start()

    def _run(self) -> None:
        packets = self.metrics.packets.labels(self.format)
        malformed = self.metrics.malformed.labels(self.format)
        overflow = self.metrics.input_dropped.labels(self.format, "socket_overflow")
        decode, deliver, fmt = self.decode, self.deliver, self.format
        recvmsg = self.sock.recvmsg
        ancillary = socket.CMSG_SPACE(4) if _HAS_OVFL else 0
        while not self._stop.is_set():
            try:
                data, anc, _, _ = recvmsg(MAX_DATAGRAM, ancillary)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            packets.inc()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == _SO_RXQ_OVFL and len(value) >= 4:
                    total = struct.unpack("=I", value[:4])[0]
                    if total > self._kernel_dropped:
                        overflow.inc(total - self._kernel_dropped)
                        self._kernel_dropped = total
            try:
                spans = decode(data)
            except DecodeError:
                malformed.inc()
                continue
            except Exception:  # noqa: BLE001 - a decoder bug must not stop reception
                malformed.inc()
                logger.exception("unexpected error decoding a %s datagram", fmt)
                continue
            if spans:
                deliver(spans, fmt)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sock.close()
