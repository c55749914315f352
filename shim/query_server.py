"""``opentracing-sls query``: the query API and web UI in their own process, and the reader
choice shared with the shim (which serves the same app on ``listen.query_port``).

The reader follows ``storage.type``: the local store when it includes ``local`` (complete
and fast), else SLS when it includes ``aliyun_sls``; a shim that only forwards to a
jaeger-agent has nothing to read.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any, List, Mapping, Optional

from .config import KEYS, ConfigError, flags_from_args, resolve
from .query_reader import LocalReader, Reader

if TYPE_CHECKING:  # aiohttp is imported when a server starts: `--help` works without it
    from aiohttp import web

logger = logging.getLogger("opentracing_sls.query")

DESCRIPTION = """\
Serve the Jaeger-compatible query API (/api/services, /api/traces, ...) and the web UI (/)
over the shim's local span store, or over SLS.

  opentracing-sls query --storage.local.path ./spans.db
  open http://localhost:16686/

Over SLS (the logstore the shim's aliyun_sls sink writes; the secret from the environment):

  export OPENTRACING_SLS_STORAGE_ALIYUN_SLS_ACCESSKEY_SECRET=...
  opentracing-sls query --storage.type aliyun_sls \
      --storage.aliyun_sls.endpoint cn-hangzhou.log.aliyuncs.com \
      --storage.aliyun_sls.project my-traces --storage.aliyun_sls.accesskey.id LTAI...

Settings are the shim's keys (defaults < --config FILE < OPENTRACING_SLS_* environment <
flags); only those below matter here. The store is read while a shim writes it."""

#: The keys this command reads: where to listen, which store, how to reach SLS (the sink's
#: batching, retry and spool keys are about writing).
QUERY_KEYS = ("listen.host", "listen.query_port", "storage.type", "storage.local.path",
              "storage.aliyun_sls.endpoint", "storage.aliyun_sls.project",
              "storage.aliyun_sls.logstore", "storage.aliyun_sls.accesskey.id",
              "storage.aliyun_sls.accesskey.secret", "storage.aliyun_sls.accesskey.secret_file",
              "storage.aliyun_sls.security_token", "storage.aliyun_sls.timeout_ms")


class NoReader(Exception):
    """No configured sink can be read back (e.g. only ``jaeger_agent``)."""


def build_reader(config: Mapping[str, Any], *, create: bool) -> Reader:
    """The reader for ``config``; ``create`` makes a missing local store (the shim creates
    it anyway), else a missing file is a StoreError. Raises NoReader when nothing is
    readable."""
    types = config["storage.type"]
    if "local" in types:
        return LocalReader.open(config["storage.local.path"], create=create)
    if "aliyun_sls" in types:
        from .sls_reader import SlsReader

        return SlsReader.from_config(config)
    raise NoReader("storage.type %s has no readable storage (local or aliyun_sls); the query "
                   "API needs one" % ",".join(types))


def shim_query_app(config: Mapping[str, Any]) -> Optional[web.Application]:
    """The query app for the shim process, or None (logged) when no sink can be read."""
    from .query_api import query_app

    try:
        reader = build_reader(config, create=True)
    except NoReader as exc:
        logger.warning("not serving the query API on listen.query_port: %s", exc)
        return None
    return query_app(reader, owns_reader=True)


def add_query_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "query", help="serve the query API and web UI (see query --help)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", help="YAML file with any of the keys below")
    for key in KEYS:
        if key.name not in QUERY_KEYS:
            continue
        default = ",".join(key.default) if isinstance(key.default, tuple) else key.default
        parser.add_argument("--" + key.name, dest=key.name, default=None, metavar="VALUE",
                            help="%s (default: %s; env %s)" % (key.help, default or "unset",
                                                              key.env_name))
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"),
                        help="log verbosity (default: info)")
    parser.set_defaults(func=run_query)


def run_query(args: argparse.Namespace) -> int:
    from .query_api import query_app
    from .server import StartupError, expand_hosts
    from .store_schema import StoreError

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = resolve(flags_from_args(args), file_path=args.config)
        if not config["listen.query_port"]:
            raise ConfigError("config key 'listen.query_port': 0 disables the query server, "
                              "so there is nothing to run")
        reader = build_reader(config, create=False)
    except (ConfigError, NoReader, StoreError) as exc:
        print("opentracing-sls query: %s" % exc, file=sys.stderr)
        return 2
    app = query_app(reader, owns_reader=True)
    try:
        asyncio.run(_serve(app, expand_hosts(config["listen.host"]),
                           config["listen.query_port"], reader.name))
    except StartupError as exc:
        print("opentracing-sls query: %s" % exc, file=sys.stderr)
        return 2
    return 0


async def _serve(app: web.Application, hosts: List[str], port: int, reader: str) -> None:
    from aiohttp import web

    from .server import StartupError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        bound = []
        for host in hosts:
            site = web.TCPSite(runner, host, port)
            try:
                await site.start()
            except OSError as exc:
                if host == "::1" and len(hosts) > 1:
                    continue  # no IPv6 loopback here; 127.0.0.1 is enough
                raise StartupError("config key 'listen.query_port': cannot listen on tcp "
                                   "%s:%d: %s" % (host, port, exc.strerror or exc)) from None
            bound.append(host)
        logger.info("query API and UI over the %s store at %s", reader,
                    ", ".join("http://%s:%d/" % ("[%s]" % h if ":" in h else h, port)
                              for h in bound))
        await stop.wait()
        logger.info("stopping")
    finally:
        await runner.cleanup()
