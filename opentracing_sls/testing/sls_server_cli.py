"""``opentracing-sls sls-server``: the SLS test server from the command line (argument parsing
only; the server and the SDK are imported when the command runs)."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_ACCESS_KEY_ID = "sls-test-access-key"
DEFAULT_ACCESS_KEY_SECRET = "sls-test-secret"


def add_sls_server_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sls-server", help="run a local SLS-protocol test server (see sls-server --help)",
        description="A local server speaking the Alibaba Cloud Log Service REST protocol "
                    "for the official SDK and the shim's aliyun_sls sink, with fault "
                    "injection under /_sls_server/ (docs/sls.md).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one, printed)")
    parser.add_argument("--access-key-id", default=DEFAULT_ACCESS_KEY_ID)
    parser.add_argument("--access-key-secret-file", default="",
                        help="file with the secret to accept (default: %s)"
                        % DEFAULT_ACCESS_KEY_SECRET)
    parser.add_argument("--db", default="", help="keep received logs in this SQLite file "
                                                 "instead of memory")
    parser.add_argument("--no-check-date", action="store_true",
                        help="accept requests whatever their Date header")
    parser.set_defaults(func=_run)



def _run(args: argparse.Namespace) -> int:
    from .sls_server import main

    return main(args)
