"""Zero-code start-up: ``opentracing-sls run <command>``.

``run`` puts the directory of our ``sitecustomize.py`` first on ``PYTHONPATH`` and
``exec``s the command unchanged, so every Python interpreter it starts (``python app.py``,
``gunicorn``'s master, ``flask run``'s reloader child ...) calls :func:`boot` while it starts
up, before the application's code: the tracer is built from the ``JAEGER_*`` variables and
installed as ``opentracing.global_tracer()``, and the libraries are instrumented when they
are first imported.

Pre-fork servers: the tracer is created once in the master. Its reporter starts no thread
until the first span and restarts its worker, socket and ids in each forked child; the
remote sampler restarts its poller there too. So gunicorn/uWSGI workers report on their own.

Nothing here may stop the application from starting: a bad configuration or a failed import
logs a warning and the program runs untraced.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import logging
import os
import re
import shutil
import sys
import traceback
from typing import Any, List, Mapping, MutableMapping, Optional, Sequence

from . import settings

logger = logging.getLogger("opentracing_sls.integrations")

#: The directory holding our ``sitecustomize.py``.
BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")

_APP_SPEC = re.compile(r"^([A-Za-z_][\w.]*):[A-Za-z_][\w.]*(\(.*\))?$")


def boot(environ: Optional[Mapping[str, str]] = None) -> Any:
    """Builds the tracer from the environment, instruments the libraries, and enables log
    correlation when asked. Returns the tracer (the no-op tracer if it could not be built).
    Never raises."""
    import opentracing

    environ = os.environ if environ is None else environ
    tracer: Any = opentracing.global_tracer()
    try:
        from opentracing_sls import Config

        tracer = Config({}).initialize_tracer()
    except Exception as exc:  # noqa: BLE001 - the program must start anyway
        logger.warning("opentracing-sls run: tracer not started (%s); the program runs "
                       "without tracing", exc)
    try:
        from . import LIBRARIES, instrument

        text = environ.get(settings.INSTRUMENT.name, settings.INSTRUMENT.default)
        wanted = [name.lower() for name in settings.split_list(text)]
        if wanted != ["none"]:
            unknown = sorted(set(wanted) - set(LIBRARIES))
            if unknown:
                logger.warning("opentracing-sls run: ignoring unknown libraries %s in %s",
                               unknown, settings.INSTRUMENT.name)
            instrument([name for name in LIBRARIES if name in wanted])
    except Exception:  # noqa: BLE001
        logger.warning("opentracing-sls run: instrumentation failed; the program runs "
                       "without it", exc_info=True)
    try:
        if settings.boolean("log_correlation", None, settings.LOG_CORRELATION, environ):
            from .log_correlation import enable_log_correlation

            enable_log_correlation()
    except Exception:  # noqa: BLE001
        logger.warning("opentracing-sls run: log correlation not enabled", exc_info=True)
    return tracer


def boot_from_sitecustomize(own_file: str) -> None:
    """What our ``sitecustomize.py`` runs: the ``sitecustomize`` ours shadows first (a
    distribution's or the user's), then :func:`boot`."""
    _run_shadowed_sitecustomize(os.path.dirname(os.path.abspath(own_file)))
    boot()


def _run_shadowed_sitecustomize(own_dir: str) -> None:
    own = os.path.realpath(own_dir)
    path = [entry for entry in sys.path if os.path.realpath(entry or os.curdir) != own]
    try:
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
        if spec is None or spec.loader is None:
            return
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - as site.py does: report and carry on
        print("Error in sitecustomize (run by opentracing-sls):", file=sys.stderr)
        traceback.print_exc()


# -- the command ------------------------------------------------------------------------------


def default_service_name(command: Sequence[str]) -> str:
    """A service name guessed from the command: the script or module of ``python``, the
    module of a WSGI app spec (``gunicorn proj.wsgi:app`` -> ``proj``), else the program."""
    program = os.path.basename(command[0])
    args = list(command[1:])
    if re.match(r"^python[\d.]*$", program):
        for i, arg in enumerate(args):
            if arg == "-m" and i + 1 < len(args):
                return args[i + 1].split(".")[0]
            if arg in ("-c", "-"):
                break
            if not arg.startswith("-"):
                return os.path.splitext(os.path.basename(arg))[0] or program
    for arg in reversed(args):
        match = _APP_SPEC.match(arg)
        if match:
            return match.group(1).split(".")[0]
    return program


def prepare_environment(environ: Mapping[str, str], command: Sequence[str],
                        service_name: Optional[str] = None,
                        instrument: Optional[str] = None,
                        log_correlation: bool = False) -> MutableMapping[str, str]:
    """The environment ``run`` gives the command."""
    env = dict(environ)
    previous = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOTSTRAP_DIR + (os.pathsep + previous if previous else "")
    if service_name:
        env["JAEGER_SERVICE_NAME"] = service_name
    elif not env.get("JAEGER_SERVICE_NAME", "").strip():
        env["JAEGER_SERVICE_NAME"] = default_service_name(command)
    if instrument is not None:
        env[settings.INSTRUMENT.name] = instrument
    if log_correlation:
        env[settings.LOG_CORRELATION.name] = "true"
    return env


def _cmd_run(args: argparse.Namespace) -> int:
    command: List[str] = list(args.program)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("opentracing-sls run: no command given (example: opentracing-sls run python "
              "app.py)", file=sys.stderr)
        return 2
    env = prepare_environment(os.environ, command, args.service_name, args.instrument,
                              args.log_correlation)
    from opentracing_sls.config import resolve_settings

    try:
        resolve_settings({}, None, environ=env)
    except ValueError as exc:
        print("opentracing-sls run: invalid configuration: %s" % exc, file=sys.stderr)
        return 2
    executable = shutil.which(command[0], path=env.get("PATH"))
    if executable is None:
        print("opentracing-sls run: command not found: %s" % command[0], file=sys.stderr)
        return 127
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(executable, command, env)
    return 0  # pragma: no cover - execve does not return


def add_run_parser(sub: Any) -> None:
    """Adds the ``run`` subcommand to the ``opentracing-sls`` parser."""
    parser = sub.add_parser(
        "run", help="run a Python program with tracing set up from JAEGER_* variables and "
                    "Flask/requests instrumented, without changing its code",
        description="Runs COMMAND with the tracer built from the JAEGER_* variables and "
                    "Flask and requests instrumented in every Python process it starts "
                    "(through sitecustomize on PYTHONPATH). Examples: "
                    "opentracing-sls run python app.py; "
                    "opentracing-sls run gunicorn -w 4 app:app")
    parser.add_argument("--service-name", default=None,
                        help="sets JAEGER_SERVICE_NAME (default: that variable, else a name "
                             "taken from the command)")
    parser.add_argument("--instrument", default=None, metavar="LIBRARIES",
                        help="sets %s: comma-separated libraries, or none (default: %s)"
                             % (settings.INSTRUMENT.name, settings.INSTRUMENT.default))
    parser.add_argument("--log-correlation", action="store_true",
                        help="sets %s=true: trace_id/span_id on every log record"
                             % settings.LOG_CORRELATION.name)
    parser.add_argument("program", nargs=argparse.REMAINDER, metavar="COMMAND ...",
                        help="the program and its arguments")
    parser.set_defaults(func=_cmd_run)
