"""The ``opentracing-sls`` command.

Later issues add ``shim``, ``run`` and ``query``; for now it documents the tracer's
environment and checks a configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from . import __version__
from .env import ENV_VARS


def env_table_markdown() -> str:
    """The ``JAEGER_*`` variables as a Markdown table (also embedded in docs/tracer.md)."""
    lines = ["| variable | config key | default | meaning |", "|---|---|---|---|"]
    for var in ENV_VARS:
        lines.append("| `%s` | `%s` | %s | %s |" % (var.name, var.key, var.default or "(none)",
                                                   var.doc))
    return "\n".join(lines)


def _cmd_env(args: argparse.Namespace) -> int:
    if args.markdown:
        print(env_table_markdown())
        return 0
    width = max(len(var.name) for var in ENV_VARS)
    for var in ENV_VARS:
        value = os.environ.get(var.name)
        if var.name == "JAEGER_PASSWORD" and value:
            value = "(set)"
        print("%-*s  %s" % (width, var.name, "= " + value if value is not None else "(unset)"))
        print("%-*s  %s" % (width, "", var.doc))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .config import resolve_settings

    try:
        settings = resolve_settings({}, args.service_name, validate=True)
    except ValueError as exc:
        print("invalid configuration: %s" % exc, file=sys.stderr)
        return 2
    for field, value in sorted(vars(settings).items()):
        if field == "password" and value:
            value = "(set)"
        print("%s = %r" % (field, value))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opentracing-sls",
        description="OpenTracing tracer, agent shim and instrumentation for Istio and "
                    "Alibaba Cloud Log Service.")
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    env_parser = sub.add_parser("env", help="list the JAEGER_* environment variables the "
                                            "tracer reads, with their current values")
    env_parser.add_argument("--markdown", action="store_true",
                            help="print the documentation table instead")
    env_parser.set_defaults(func=_cmd_env)
    check = sub.add_parser("check-config", help="resolve the tracer settings from the "
                                                "environment and print them, or the error")
    check.add_argument("--service-name", default=None,
                       help="service name (default: JAEGER_SERVICE_NAME)")
    check.set_defaults(func=_cmd_check)
    from .shim.main import add_shim_parser

    add_shim_parser(sub)
    from .testing.sls_server_cli import add_sls_server_parser

    add_sls_server_parser(sub)
    from .shim.traces_cli import add_traces_parser

    add_traces_parser(sub)
    from .shim.query_server import add_query_parser

    add_query_parser(sub)
    from .integrations.bootstrap import add_run_parser

    add_run_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
