"""examples/bookinfo/kubernetes: every manifest parses, and the pieces fit together: names,
labels and selectors, ports, probes, volumes, ConfigMap and Secret keys, environment
variables (checked against what the tracer, the integrations and the services read), the
shim's configuration (resolved by the shim's own code), the Istio wiring, and the images
against their Dockerfiles."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import yaml

from opentracing_sls import env as tracer_env
from opentracing_sls.integrations import settings as integration_settings
from opentracing_sls.shim import config as shim_config
from opentracing_sls.testing import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "examples", "bookinfo", "kubernetes")
BOOKINFO = ("details", "ratings", "reviews", "productpage")
WORKLOADS = ("Deployment", "DaemonSet")
CLUSTER_SCOPED = ("Namespace",)
Doc = Dict[str, Any]


def manifest_files() -> List[str]:
    found = []
    for folder, _, names in os.walk(K8S):
        found += [os.path.join(folder, n) for n in names if n.endswith((".yaml", ".yml"))]
    return sorted(found)


def load(path: str) -> List[Doc]:
    with open(path) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


@pytest.fixture(scope="module")
def docs() -> List[Doc]:
    out = []
    for path in manifest_files():
        if os.path.basename(path) == "kustomization.yaml":
            continue
        for doc in load(path):
            doc["__file__"] = os.path.relpath(path, K8S)
            out.append(doc)
    return out


def of_kind(docs: List[Doc], kind: str, namespace: Optional[str] = None) -> List[Doc]:
    return [d for d in docs if d["kind"] == kind
            and (namespace is None or d["metadata"].get("namespace") == namespace)]


def named(docs: List[Doc], kind: str, name: str, namespace: Optional[str] = None) -> Doc:
    found = [d for d in of_kind(docs, kind, namespace) if d["metadata"]["name"] == name]
    assert len(found) == 1, "expected one %s %s in %s, found %d" % (kind, name, namespace,
                                                                    len(found))
    return found[0]


def containers(workload: Doc) -> List[Doc]:
    return workload["spec"]["template"]["spec"]["containers"]


def env_of(container: Doc) -> Dict[str, Doc]:
    return {item["name"]: item for item in container.get("env", [])}


def env_values(container: Doc) -> Dict[str, str]:
    return {name: item["value"] for name, item in env_of(container).items() if "value" in item}


def container_port(container: Doc, port: Any, protocol: str = "TCP") -> Doc:
    """The container port a probe or Service refers to, by name or number."""
    for item in container.get("ports", []):
        if (port == item.get("name") or port == item["containerPort"]) and \
                item.get("protocol", "TCP") == protocol:
            return item
    raise AssertionError("container %s has no %s port %r" % (container["name"], protocol, port))


def probes(container: Doc) -> Iterator[Doc]:
    for key in ("readinessProbe", "livenessProbe", "startupProbe"):
        if key in container:
            yield container[key]


def dockerfiles() -> Dict[str, Tuple[str, str]]:
    """image repository -> (Dockerfile name, text), by the title label."""
    out = {}
    for name in os.listdir(K8S):
        if name.endswith("Dockerfile"):
            with open(os.path.join(K8S, name)) as handle:
                text = handle.read()
            title = re.search(r'org\.opencontainers\.image\.title="([^"]+)"', text)
            assert title, "%s has no image title label" % name
            out[title.group(1)] = (name, text)
    return out


def project_version() -> str:
    with open(os.path.join(ROOT, "pyproject.toml")) as handle:
        return re.search(r'^version = "([^"]+)"', handle.read(), re.M).group(1)


# -- every document ---------------------------------------------------------------------------

def test_every_manifest_parses_and_is_named(docs):
    assert len(manifest_files()) >= 8
    namespaces = {d["metadata"]["name"] for d in of_kind(docs, "Namespace")}
    assert namespaces == {"bookinfo", "observability"}
    for doc in docs:
        where = "%s in %s" % (doc.get("kind"), doc["__file__"])
        assert doc.get("apiVersion") and doc.get("kind"), where
        assert re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", doc["metadata"]["name"]), where
        if doc["kind"] not in CLUSTER_SCOPED:
            # istio-system is created by istioctl, the others here.
            assert doc["metadata"].get("namespace") in namespaces | {"istio-system"}, where


def test_kustomization_lists_what_kubectl_applies():
    kustomization = load(os.path.join(K8S, "kustomization.yaml"))[0]
    listed = set(kustomization["resources"])
    for path in listed:
        assert os.path.isfile(os.path.join(K8S, path)), path
    everything = {os.path.relpath(p, K8S) for p in manifest_files()} - {"kustomization.yaml"}
    # istioctl reads the operator; the task rules are applied one at a time.
    assert everything - listed == {"istio-operator.yaml", "traffic/reviews-v2-for-jason.yaml",
                                   "traffic/ratings-delay-for-jason.yaml",
                                   "traffic/ratings-abort-for-jason.yaml"}


def test_workloads_reference_what_exists(docs):
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    assert len(workloads) == 8  # 6 BookInfo Deployments, the shim DaemonSet, the query UI
    for workload in workloads:
        ns, name = workload["metadata"]["namespace"], workload["metadata"]["name"]
        template = workload["spec"]["template"]
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items(), name
        pod = template["spec"]
        named(docs, "ServiceAccount", pod["serviceAccountName"], ns)
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for volume in volumes.values():
            if "configMap" in volume:
                data = named(docs, "ConfigMap", volume["configMap"]["name"], ns)["data"]
                assert {i["key"] for i in volume["configMap"].get("items", [])} <= set(data)
            if "secret" in volume:
                secret = named(docs, "Secret", volume["secret"]["secretName"], ns)
                keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
                assert {i["key"] for i in volume["secret"].get("items", [])} <= keys
        for container in containers(workload):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, (name, mount)
            for probe in probes(container):
                container_port(container, probe["httpGet"]["port"])
            for item in env_of(container).values():
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret = named(docs, "Secret", ref["name"], ns)
                    assert ref["key"] in secret.get("stringData", secret.get("data", {}))
                ref = item.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["key"] in named(docs, "ConfigMap", ref["name"], ns)["data"]


def test_services_select_pods_and_target_their_ports(docs):
    for service in of_kind(docs, "Service"):
        ns = service["metadata"]["namespace"]
        selector = service["spec"]["selector"]
        pods = [w for w in docs if w["kind"] in WORKLOADS and w["metadata"]["namespace"] == ns
                and selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert pods, "Service %s selects no pods" % service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            # Istio picks the protocol from the port name.
            assert port["name"].startswith(("http", "tcp", "udp", "grpc")), port
            for workload in pods:
                target = port.get("targetPort", port["port"])
                assert any(_has_port(c, target, port.get("protocol", "TCP"))
                           for c in containers(workload)), (service["metadata"]["name"], port)


def _has_port(container: Doc, port: Any, protocol: str) -> bool:
    try:
        container_port(container, port, protocol)
    except AssertionError:
        return False
    return True


def test_images_are_built_by_the_dockerfiles(docs):
    built = dockerfiles()
    assert set(built) == {"opentracing-sls/bookinfo", "opentracing-sls/shim"}
    version = project_version()
    for workload in (d for d in docs if d["kind"] in WORKLOADS):
        for container in containers(workload):
            repository, tag = container["image"].rsplit(":", 1)
            assert repository in built and tag == version, container["image"]
            name, text = built[repository]
            user = re.search(r"^USER (\d+)$", text, re.M).group(1)
            run_as = container.get("securityContext", {}).get("runAsUser")
            assert run_as is None or str(run_as) == user
            exposed = re.search(r"^EXPOSE (.+)$", text, re.M).group(1).split()
            for port in container.get("ports", []):
                expected = "%d/udp" % port["containerPort"] if port.get("protocol") == "UDP" \
                    else str(port["containerPort"])
                assert expected in exposed, (name, expected)
    for name, text in built.values():
        for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
            for part in source.split():
                assert os.path.exists(os.path.join(ROOT, part)), (name, part)


# -- BookInfo ----------------------------------------------------------------------------------

def _bookinfo(docs: List[Doc]) -> Dict[str, Tuple[Doc, Doc]]:
    out = {}
    for deployment in of_kind(docs, "Deployment", "bookinfo"):
        out[deployment["metadata"]["name"]] = (deployment, containers(deployment)[0])
    return out


def test_bookinfo_deployments_run_the_services_under_opentracing_sls(docs):
    deployments = _bookinfo(docs)
    assert set(deployments) == {"details-v1", "ratings-v1", "reviews-v1", "reviews-v2",
                                "reviews-v3", "productpage-v1"}
    services_dockerfile = dockerfiles()["opentracing-sls/bookinfo"][1]
    pythonpath = re.search(r"PYTHONPATH=(\S+)", services_dockerfile).group(1)
    copy = re.search(r"^COPY examples/bookinfo (\S+)$", services_dockerfile, re.M).group(1)
    workdir = re.findall(r"^WORKDIR (\S+)$", services_dockerfile, re.M)[-1]
    assert os.path.normpath(os.path.join(workdir, copy)) == pythonpath + "/bookinfo"
    for name, (deployment, container) in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        app, version = labels["app"], labels["version"]
        assert name == "%s-%s" % (app, version)
        command = container["command"]
        assert command[:3] == ["opentracing-sls", "run", "gunicorn"]
        bind = command[command.index("--bind") + 1]
        assert bind.rsplit(":", 1)[1] == str(container_port(container, "http")["containerPort"])
        module, attribute = command[-1].split(":")
        assert module == "bookinfo.%s.app" % app
        flask_app = getattr(importlib.import_module(module), attribute)
        routes = {rule.rule for rule in flask_app.url_map.iter_rules()}
        for probe in probes(container):
            assert probe["httpGet"]["path"] in routes
        values = env_values(container)
        assert values["JAEGER_SERVICE_NAME"] == app
        assert values["JAEGER_TAGS"] == "version=%s" % version
        if app == "reviews":
            from bookinfo.reviews.app import version_from

            assert values["SERVICE_VERSION"] == version
            resolved = version_from(values["SERVICE_VERSION"], values)
            assert (resolved.ratings_enabled, resolved.star_color) == {
                "v1": (False, "black"), "v2": (True, "black"), "v3": (True, "red")}[version]


def test_bookinfo_environment_is_what_the_tracer_and_integrations_read(docs):
    tracer_vars = {var.name: var for var in tracer_env.ENV_VARS}
    integration_vars = {var.name for var in integration_settings.ENV_VARS}
    service_vars = {"SERVICE_VERSION", "ENABLE_RATINGS", "STAR_COLOR", "FLOOD_FACTOR",
                    "SERVICES_DOMAIN", "CLUSTER_NAME"} | {
        "%s_%s" % (s.upper(), suffix) for s in ("details", "reviews", "ratings")
        for suffix in ("HOSTNAME", "SERVICE_PORT")}
    for name, (_, container) in _bookinfo(docs).items():
        for var, item in env_of(container).items():
            if var.startswith("JAEGER_"):
                assert var in tracer_vars, (name, var)
                if "value" in item:
                    tracer_vars[var].parse(item["value"])  # raises on a bad value
            elif var.startswith("OPENTRACING_SLS_"):
                assert var in integration_vars, (name, var)
            else:
                assert var in service_vars, (name, var)
        for pattern in env_values(container)["OPENTRACING_SLS_FLASK_EXCLUDED_PATHS"].split(","):
            re.compile(pattern)


def test_upstream_addresses_resolve_to_services(docs):
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service", "bookinfo")}
    assert set(services) == set(BOOKINFO)
    for name, (_, container) in _bookinfo(docs).items():
        values = env_values(container)
        calls = {"productpage": ("details", "reviews", "ratings"),
                 "reviews": ("ratings",)}.get(name.split("-")[0], ())
        for upstream in calls:
            host = values.get(upstream.upper() + "_HOSTNAME", upstream)  # BookInfo defaults
            port = int(values.get(upstream.upper() + "_SERVICE_PORT", "9080"))
            assert host in services, (name, upstream)
            assert port in {p["port"] for p in services[host]["spec"]["ports"]}


def test_services_send_spans_to_the_shim_on_their_node(docs):
    shim = named(docs, "DaemonSet", "opentracing-sls-shim", "observability")
    compact = container_port(containers(shim)[0], "jaeger-compact", "UDP")
    for name, (_, container) in _bookinfo(docs).items():
        host = env_of(container)["JAEGER_AGENT_HOST"]
        assert host["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP", name
        assert int(env_values(container)["JAEGER_AGENT_PORT"]) == compact["hostPort"]


# -- the shim and the query UI ----------------------------------------------------------------

def _shim_config(docs: List[Doc], workload: Doc, tmp_path) -> Dict[str, Any]:
    """The workload's shim settings as the shim resolves them: its ConfigMap file, its
    environment (Secret values stand in) and its command-line flags."""
    container = containers(workload)[0]
    ns = workload["metadata"]["namespace"]
    args = container["args"]
    parser = argparse.ArgumentParser()
    shim_config.add_arguments(parser)
    parsed = parser.parse_args(args[1:])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    config_dir, config_name = os.path.split(parsed.config)
    volume = volumes[mounts[config_dir]]["configMap"]
    item = next(i for i in volume["items"] if i["path"] == config_name)
    text = named(docs, "ConfigMap", volume["name"], ns)["data"][item["key"]]
    config_file = tmp_path / "shim.yaml"
    tree = yaml.safe_load(text)
    # The secret file: where the Secret volume puts it.
    secret_path = tree["storage"]["aliyun_sls"]["accesskey"]["secret_file"]
    secret_dir, secret_name = os.path.split(secret_path)
    secret_volume = volumes[mounts[secret_dir]]["secret"]
    assert any(i["path"] == secret_name for i in secret_volume["items"])
    (tmp_path / "secret").write_text("the-secret")
    tree["storage"]["aliyun_sls"]["accesskey"]["secret_file"] = str(tmp_path / "secret")
    config_file.write_text(yaml.safe_dump(tree))
    environ = {}
    for var, env_item in env_of(container).items():
        ref = env_item.get("valueFrom", {}).get("secretKeyRef")
        environ[var] = "from-secret-" + ref["key"] if ref else env_item["value"]
    return shim_config.resolve(shim_config.flags_from_args(parsed), environ=environ,
                               file_path=str(config_file))


def test_shim_daemonset_config_resolves_with_the_seeds_sls_parameters(docs, tmp_path):
    shim = named(docs, "DaemonSet", "opentracing-sls-shim", "observability")
    assert containers(shim)[0]["args"][0] == "shim"
    config = _shim_config(docs, shim, tmp_path)
    assert config["storage.type"] == ("aliyun_sls",)
    for key in ("endpoint", "project", "logstore"):
        assert config["storage.aliyun_sls." + key], key
    assert config["storage.aliyun_sls.accesskey.id"] == "from-secret-accesskey.id"
    assert config["listen.host"] == ("0.0.0.0",)
    assert config["listen.query_port"] == 0  # the UI is the query Deployment
    container = containers(shim)[0]
    for key, name, protocol in (("compact_port", "jaeger-compact", "UDP"),
                                ("binary_port", "jaeger-binary", "UDP"),
                                ("sampling_port", "sampling", "TCP"),
                                ("http_port", "http-collector", "TCP"),
                                ("zipkin_port", "http-zipkin", "TCP"),
                                ("admin_port", "admin", "TCP")):
        assert container_port(container, name, protocol)["containerPort"] == \
            config["listen." + key], key
    spool = config["spool.path"]
    assert any(spool.startswith(m["mountPath"]) for m in container["volumeMounts"]
               if "emptyDir" in {v["name"]: v for v in shim["spec"]["template"]["spec"][
                   "volumes"]}[m["name"]])


def test_query_deployment_serves_the_ui_from_sls(docs, tmp_path):
    query = named(docs, "Deployment", "opentracing-sls-query", "observability")
    container = containers(query)[0]
    assert container["args"][0] == "query"
    config = _shim_config(docs, query, tmp_path)
    assert "aliyun_sls" in config["storage.type"] and "local" not in config["storage.type"]
    assert container_port(container, "http-query")["containerPort"] == \
        config["listen.query_port"]
    service = named(docs, "Service", "opentracing-sls-query", "observability")
    assert service["spec"]["type"] == "LoadBalancer"


# -- Istio -------------------------------------------------------------------------------------

def test_envoy_zipkin_spans_go_to_the_shim(docs):
    operator = named(docs, "IstioOperator", "opentracing-sls-tracing", "istio-system")
    providers = operator["spec"]["meshConfig"]["extensionProviders"]
    assert operator["spec"]["meshConfig"]["enableTracing"] is True
    telemetry = named(docs, "Telemetry", "mesh-default", "istio-system")
    used = {p["name"] for rule in telemetry["spec"]["tracing"] for p in rule["providers"]}
    assert used <= {p["name"] for p in providers}
    zipkin = next(p["zipkin"] for p in providers if p["name"] in used)
    service_name, namespace = re.match(r"^([^.]+)\.([^.]+)\.svc\.cluster\.local$",
                                       zipkin["service"]).groups()
    service = named(docs, "Service", service_name, namespace)
    port = next(p for p in service["spec"]["ports"] if p["port"] == zipkin["port"])
    shim = named(docs, "DaemonSet", "opentracing-sls-shim", namespace)
    assert container_port(containers(shim)[0], port["targetPort"])["containerPort"] == 9411
    assert 0 < telemetry["spec"]["tracing"][0]["randomSamplingPercentage"] <= 100


def test_gateway_and_traffic_rules_point_at_real_services_subsets_and_routes(docs):
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service", "bookinfo")}
    subsets = {}
    for rule in of_kind(docs, "DestinationRule", "bookinfo"):
        host = rule["spec"]["host"]
        assert host in services
        for subset in rule["spec"]["subsets"]:
            assert any(subset["labels"].items() <= d["spec"]["template"]["metadata"][
                "labels"].items() and d["metadata"]["name"].startswith(host + "-")
                for d in of_kind(docs, "Deployment", "bookinfo")), (host, subset)
            subsets.setdefault(host, set()).add(subset["name"])
    gateways = {g["metadata"]["name"] for g in of_kind(docs, "Gateway", "bookinfo")}
    from bookinfo.productpage.app import app as productpage

    page_routes = {rule.rule for rule in productpage.url_map.iter_rules()}
    for service in of_kind(docs, "VirtualService", "bookinfo"):
        assert set(service["spec"].get("gateways", [])) <= gateways
        for http in service["spec"]["http"]:
            for route in http["route"]:
                destination = route["destination"]
                assert destination["host"] in services
                if "subset" in destination:
                    assert destination["subset"] in subsets[destination["host"]]
                if "port" in destination:
                    assert destination["port"]["number"] in {
                        p["port"] for p in services[destination["host"]]["spec"]["ports"]}
            for match in http.get("match", []):
                if "uri" in match:
                    uri = match["uri"]
                    assert (uri.get("exact") in page_routes if "exact" in uri else
                            any(r.startswith(uri["prefix"]) for r in page_routes)), uri
                if "headers" in match:
                    assert set(match["headers"]) == {"end-user"}


def test_the_readme_style_commands_in_the_dockerfiles_build_from_the_root():
    for name, text in dockerfiles().values():
        command = re.search(r"docker build (.+)$", text, re.M).group(1)
        argv = shlex.split(command)
        assert argv[argv.index("-f") + 1] == "examples/bookinfo/kubernetes/" + name
        assert argv[-1] == "."


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")
def test_a_deployments_command_and_environment_run_as_written(docs, tmp_path):
    """details-v1's container command and env, verbatim but for the bind address and the
    node's IP: gunicorn under opentracing-sls run serves, and its spans reach the agent."""
    _, container = _bookinfo(docs)["details-v1"]
    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind(("127.0.0.1", 0))
    agent.settimeout(10)
    [port] = free_ports(1)
    command = list(container["command"])
    command[command.index("--bind") + 1] = "127.0.0.1:%d" % port
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAEGER_", "OPENTRACING"))}
    env.update(env_values(container))
    env["JAEGER_AGENT_HOST"] = "127.0.0.1"  # status.hostIP
    env["JAEGER_AGENT_PORT"] = str(agent.getsockname()[1])
    env["JAEGER_REPORTER_FLUSH_INTERVAL"] = "0.1"
    env["PYTHONPATH"] = os.path.join(ROOT, "examples")  # the image's /app
    # The image has opentracing-sls and gunicorn on PATH; here they are next to the venv's python.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=2):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, \
                    process.stderr.read().decode() if process.poll() is not None else "timeout"
                time.sleep(0.1)
        with urllib.request.urlopen("http://127.0.0.1:%d/details/0" % port, timeout=5) as r:
            assert json.loads(r.read())["ISBN-13"] == "123-1234567890"
        datagram = agent.recv(70000)  # the /details span (the probe path is excluded)
        assert b"details" in datagram and b"/details/<product_id>" in datagram
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
        agent.close()
