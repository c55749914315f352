"""``python -m bookinfo.<service> [PORT]``: serve one service with a threaded WSGI server.

Istio's productpage, run directly with a port argument, serves threaded on ``::``; so do these
(falling back to ``0.0.0.0`` where the host has no IPv6). The container images use gunicorn
instead (see kubernetes/services.Dockerfile).

SIGTERM exits through ``sys.exit`` rather than the default kill, so ``atexit`` handlers run:
that is how whatever instruments the process (``opentracing-sls run``) gets to flush.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any, Callable, List, Optional

from werkzeug.serving import make_server

from .upstream import DEFAULT_PORT


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    sys.exit(0)


def main(service: str, create_app: Callable[[], Any], argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bookinfo.%s" % service,
                                     description="BookInfo %s service" % service)
    parser.add_argument("port", nargs="?", type=int, default=DEFAULT_PORT,
                        help="TCP port (default %d)" % DEFAULT_PORT)
    parser.add_argument("--host", default="::",
                        help="address to bind (default ::, or 0.0.0.0 without IPv6)")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app()
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except OSError:
        if args.host != "::":
            raise
        server = make_server("0.0.0.0", args.port, app, threaded=True)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    print("%s listening on %s port %d" % (service, server.host, server.port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
