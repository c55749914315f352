"""The four BookInfo services and the shim as real processes on one host.

Used by ``demo.py``, the end-to-end tests and the benchmark. The shim keeps the spans in its
local store and serves the query UI; each service runs under ``opentracing-sls run`` (tracer
from the ``JAEGER_*`` variables, Flask and requests instrumented), reports to the shim over
UDP, and finds the others through BookInfo's own ``*_HOSTNAME`` / ``*_SERVICE_PORT``
variables. With ``tracing=False`` the services run bare (the benchmark's baseline).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from opentracing_sls.testing import free_ports

from .processes import ManagedProcess

EXAMPLES_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Start order: a service's upstreams first.
SERVICES = ("ratings", "details", "reviews", "productpage")
#: Shim listeners the stack uses; the others are disabled (port 0).
SHIM_PORTS = ("compact_port", "admin_port", "query_port")
_DISABLED_SHIM_PORTS = ("binary_port", "http_port", "zipkin_port", "sampling_port")
#: Preferred ports: the Jaeger UI's and BookInfo's, used when free.
PREFERRED = {"query_port": 16686, "productpage": 9080}
#: Probes and scrapes are not page views: no spans for them (as a mesh would configure).
EXCLUDED_PATHS = "^/health$,^/metrics$,^/admin/"
#: Headers BookInfo forwards beyond the integrations' built-in Istio list.
EXTRA_FORWARD_HEADERS = "user-agent,cookie,authorization,jwt"

#: ``(service, port, host) -> argv`` of a service; tests wrap services with it.
CommandFactory = Callable[[str, int, str], List[str]]


class StackError(RuntimeError):
    """A process did not start or did not become ready; the message has its log's tail."""


def service_command(service: str, port: int, host: str) -> List[str]:
    return [sys.executable, "-m", "bookinfo.%s" % service, str(port), "--host", host]


def port_is_free(port: int, host: str = "127.0.0.1", udp: bool = False) -> bool:
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_ports(prefer_defaults: bool = True) -> Dict[str, int]:
    """Ports for the services and the shim: the preferred ones when free, else free ones."""
    names = list(SERVICES) + list(SHIM_PORTS)
    ports = dict(zip(names, free_ports(len(names))))
    if prefer_defaults:
        for name, port in PREFERRED.items():
            if port_is_free(port):
                ports[name] = port
    return ports


@dataclass
class StackConfig:
    workdir: str
    host: str = "127.0.0.1"
    ports: Dict[str, int] = field(default_factory=dict)
    reviews_version: str = "v3"
    tracing: bool = True
    #: Extra shim flags, e.g. ``["--storage.type", "local,aliyun_sls", ...]``.
    shim_args: Sequence[str] = ()
    #: Extra environment per service (fault knobs, ...).
    service_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    command: CommandFactory = service_command
    quiet: bool = True
    #: Extra environment for the shim (SLS keys are passed this way, not on its command line).
    shim_env: Mapping[str, str] = field(default_factory=dict)


class BookinfoStack:
    """Starts, reaches and stops the shim and the four services."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        os.makedirs(config.workdir, exist_ok=True)
        self.ports = dict(config.ports) or choose_ports()
        self.store_path = os.path.join(config.workdir, "spans.db")
        self.processes: Dict[str, ManagedProcess] = {}

    # -- addresses --------------------------------------------------------------------------

    def url(self, service: str, path: str = "") -> str:
        return "http://%s:%d%s" % (self.config.host, self.ports[service], path)

    @property
    def ui_url(self) -> str:
        return self.url("query_port", "/")

    # -- environment ------------------------------------------------------------------------

    def base_env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JAEGER_", "OPENTRACING_SLS_"))}
        previous = env.get("PYTHONPATH")
        env["PYTHONPATH"] = EXAMPLES_DIR + (os.pathsep + previous if previous else "")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def service_env(self, service: str) -> Dict[str, str]:
        env = self.base_env()
        for upstream in ("details", "reviews", "ratings"):
            env[upstream.upper() + "_HOSTNAME"] = self.config.host
            env[upstream.upper() + "_SERVICE_PORT"] = str(self.ports[upstream])
        version = self.config.reviews_version if service == "reviews" else "v1"
        if service == "reviews":
            env["SERVICE_VERSION"] = version
        if self.config.tracing:
            env.update({
                "JAEGER_SERVICE_NAME": service,
                "JAEGER_AGENT_HOST": self.config.host,
                "JAEGER_AGENT_PORT": str(self.ports["compact_port"]),
                "JAEGER_SAMPLER_TYPE": "const",
                "JAEGER_SAMPLER_PARAM": "1",
                "JAEGER_PROPAGATION": "b3",     # what Istio's Envoys speak
                "JAEGER_TAGS": "version=%s" % version,
                "JAEGER_REPORTER_FLUSH_INTERVAL": "0.2",
                "OPENTRACING_SLS_FLASK_EXCLUDED_PATHS": EXCLUDED_PATHS,
                "OPENTRACING_SLS_FORWARD_HEADERS": EXTRA_FORWARD_HEADERS,
            })
        env.update(self.config.service_env.get(service, {}))
        return env

    def shim_argv(self) -> List[str]:
        argv = [sys.executable, "-m", "opentracing_sls.shim",
                "--listen.host", self.config.host,
                "--storage.local.path", self.store_path,
                "--sampling.default_probability", "1"]
        for key in SHIM_PORTS:
            argv += ["--listen." + key, str(self.ports[key])]
        for key in _DISABLED_SHIM_PORTS:
            argv += ["--listen." + key, "0"]
        return argv + list(self.config.shim_args)

    def service_argv(self, service: str) -> List[str]:
        argv = self.config.command(service, self.ports[service], self.config.host)
        if self.config.quiet:
            argv = argv + ["--quiet"]
        if not self.config.tracing:
            return argv
        return [sys.executable, "-m", "opentracing_sls.cli", "run",
                "--service-name", service] + argv

    # -- life cycle -------------------------------------------------------------------------

    def _spawn(self, name: str, argv: List[str], env: Dict[str, str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, env, os.path.join(self.config.workdir,
                                                               name + ".log"))
        self.processes[name] = process
        process.start()
        return process

    def start(self, timeout: float = 30.0,
              progress: Optional[Callable[[str], None]] = None) -> None:
        """Starts the shim, then the services (upstreams first), each waited for until it
        answers; StackError (with the process's log) if one exits or does not answer."""
        try:
            if self.config.tracing:
                shim_env = self.base_env()
                shim_env.update(self.config.shim_env)
                self._spawn("shim", self.shim_argv(), shim_env)
                self.wait_ready("shim", self.url("admin_port", "/healthz"), timeout)
                if progress:
                    progress("shim")
            for service in SERVICES:
                self._spawn(service, self.service_argv(service), self.service_env(service))
            for service in SERVICES:
                self.wait_ready(service, self.url(service, "/health"), timeout)
                if progress:
                    progress(service)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, name: str, url: str, timeout: float) -> None:
        process = self.processes[name]
        deadline = time.monotonic() + timeout
        while True:
            if not process.running():
                raise StackError("%s exited with status %s:\n%s"
                                 % (name, process.returncode(), process.log_tail()))
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise StackError("%s did not answer %s within %.0f s:\n%s"
                                 % (name, url, timeout, process.log_tail()))
            time.sleep(0.05)

    def stop_service(self, service: str, timeout: float = 10.0) -> Optional[int]:
        return self.processes[service].stop(timeout)

    def restart_service(self, service: str, timeout: float = 30.0) -> None:
        """Starts ``service`` again (after :meth:`stop_service`) and waits until it answers."""
        self.processes[service].stop()
        self._spawn(service, self.service_argv(service), self.service_env(service))
        self.wait_ready(service, self.url(service, "/health"), timeout)

    def stop(self, timeout: float = 10.0) -> Dict[str, Optional[int]]:
        """Stops the services (their tracers flush on the way out), then the shim (it writes
        what it received). Returns each process's exit status."""
        statuses: Dict[str, Optional[int]] = {}
        for name in list(SERVICES) + ["shim"]:
            process = self.processes.get(name)
            if process is not None:
                statuses[name] = process.stop(timeout if name != "shim" else 25.0)
        return statuses

    def process_groups(self) -> Dict[str, int]:
        return {name: process.pgid for name, process in self.processes.items()
                if process.popen is not None}

    # -- admin knobs ------------------------------------------------------------------------

    def set_faults(self, service: str, **faults: object) -> Dict[str, object]:
        """``PUT /admin/faults`` on ``service``; returns the knobs now in effect."""
        return self._put(service, "/admin/faults", faults)

    def set_reviews_version(self, version: str) -> Dict[str, object]:
        return self._put("reviews", "/admin/version", {"version": version})

    def _put(self, service: str, path: str, body: Mapping[str, object]) -> Dict[str, object]:
        request = urllib.request.Request(self.url(service, path), method="PUT",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
