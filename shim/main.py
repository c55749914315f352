"""``opentracing-sls shim``: run the local agent until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import List, Optional

from .config import ConfigError, add_arguments, flags_from_args, resolve

logger = logging.getLogger("opentracing_sls.shim")

DESCRIPTION = """\
The opentracing-sls agent shim: receives spans from Jaeger clients (UDP compact 6831, UDP
binary 6832, HTTP collector 14268) and Envoy sidecars (Zipkin JSON 9411), turns them into one
span model, and writes them to the configured sinks (the embedded local store by default, or
a real jaeger-agent). Serves sampling strategies (5778), Prometheus metrics (14271), and
the query API and web UI over the stored spans (16686).

Settings come from defaults < --config FILE (YAML) < OPENTRACING_SLS_* environment < flags.
A port of 0 disables that listener."""

#: Seconds sinks get to write what they hold after SIGTERM.
SHUTDOWN_TIMEOUT = 10.0
_WORKER_ENV = "OPENTRACING_SLS_SHIM_WORKER"
_PARENT_ENV = "OPENTRACING_SLS_SHIM_PARENT"


def add_shim_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("shim", help="run the agent shim (see shim --help)",
                                   description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_options(parser)
    parser.set_defaults(func=run_shim)


def _add_options(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"),
                        help="log verbosity (default: info)")
    parser.add_argument("--check-config", action="store_true",
                        help="print the resolved settings and exit")


def run_shim(args: argparse.Namespace) -> int:
    from .sampling import StrategyError
    from .server import Shim, StartupError
    from .store_accel import STORE_BACKEND
    from .thrift_decode import COMPACT_BACKEND

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = resolve(flags_from_args(args), file_path=args.config)
    except ConfigError as exc:
        print("opentracing-sls shim: %s" % exc, file=sys.stderr)
        return 2
    if args.check_config:
        print("\n".join(config.describe()))
        return 0
    worker_index = int(os.environ.get(_WORKER_ENV, "0"))
    children: List[subprocess.Popen] = []
    if worker_index:
        # Extra workers share only the UDP ports (SO_REUSEPORT); HTTP stays in the first.
        for key in ("listen.http_port", "listen.zipkin_port", "listen.sampling_port",
                    "listen.admin_port", "listen.query_port"):
            config[key] = 0
    try:
        shim = Shim(config, reuse_port=config["workers"] > 1)
        shim.start()
    except (StartupError, StrategyError) as exc:
        print("opentracing-sls shim: %s" % exc, file=sys.stderr)
        return 2
    if not worker_index and config["workers"] > 1:
        children = _spawn_workers(config["workers"] - 1)
    logger.info("shim started: %s; sinks: %s; compact decoder: %s; store rows: %s",
                _listening(config), ", ".join(config["storage.type"]), COMPACT_BACKEND,
                STORE_BACKEND)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    parent = int(os.environ.get(_PARENT_ENV, "0")) if worker_index else 0
    while not stop.wait(1.0):
        if parent and os.getppid() != parent:
            # The first process died without stopping us (SIGKILL, OOM): a worker left
            # running would hold the shared UDP port and keep writing next to its successor.
            logger.warning("the first shim process (pid %d) is gone: stopping worker %d",
                           parent, worker_index)
            break
    logger.info("stopping: draining sinks (up to %.0f s)", SHUTDOWN_TIMEOUT)
    for child in children:
        child.send_signal(signal.SIGTERM)
    drained = shim.stop(timeout=SHUTDOWN_TIMEOUT)
    for child in children:
        try:
            child.wait(timeout=SHUTDOWN_TIMEOUT + 5)
        except subprocess.TimeoutExpired:
            child.kill()
    logger.info("stopped%s", "" if drained else " (some spans were dropped: see metrics)")
    return 0


def _spawn_workers(count: int) -> List[subprocess.Popen]:
    children = []
    for index in range(1, count + 1):
        env = dict(os.environ, **{_WORKER_ENV: str(index), _PARENT_ENV: str(os.getpid())})
        children.append(subprocess.Popen([sys.executable, "-m", "opentracing_sls.shim"]
                                         + sys.argv[_argv_offset():], env=env))
    return children


def _argv_offset() -> int:
    # "opentracing-sls shim ARGS" or "python -m opentracing_sls.shim ARGS"
    return 2 if len(sys.argv) > 1 and sys.argv[1] == "shim" else 1


def _listening(config: dict) -> str:
    ports = ["%s=%d" % (key.split(".")[1], config[key]) for key in sorted(config)
             if key.startswith("listen.") and key.endswith("_port") and config[key]]
    return "host %s, %s" % (",".join(config["listen.host"]), " ".join(ports))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opentracing_sls.shim",
                                     description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_options(parser)
    return run_shim(parser.parse_args(argv))
