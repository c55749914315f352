"""The C Flask handlers' own pieces against their Python twins (the handlers themselves run
every Flask test twice, see test_flask.py)."""

from __future__ import annotations

import random

import pytest

from opentracing_sls._accel import pure_python
from opentracing_sls.integrations import flask as ot_flask
from opentracing_sls.integrations import tagging

cflask = pytest.importorskip("opentracing_sls.integrations._cflask",
                             reason="C accelerator not built (no compiler?)")
pytestmark = pytest.mark.skipif(
    pure_python(), reason="compares the C paths with the Python ones; C is switched off")

BASE = {tagging.SPAN_KIND: tagging.SERVER, tagging.COMPONENT: ot_flask.COMPONENT}
NAMES = (tagging.HTTP_METHOD, tagging.HTTP_URL, tagging.PEER_HOSTNAME, tagging.PEER_PORT)
MISSING = object()
CHOICES = {
    "wsgi.url_scheme": [MISSING, "http", "https", "h\u00e9", b"http"],
    "HTTP_HOST": [MISSING, "", "productpage:9080", "svc", "b\u00fccher.example", 7],
    "SERVER_NAME": [MISSING, "10.0.0.7", "svc"],
    "SERVER_PORT": [MISSING, "80", "443", "9080"],
    "SCRIPT_NAME": [MISSING, "", "/app", "/a pp", 3],
    "PATH_INFO": [MISSING, "", "/api/v1/products/0", "/a b", "/caf\u00e9", "/%7E~x;y=1",
                  "/q?x", "/<id>", "/\u00ff"],
    "QUERY_STRING": [MISSING, "", "a=1&b=2", "x=\u00e9", None],
    "REMOTE_ADDR": [MISSING, "", "127.0.0.6", "::1", "[::1]", "mesh-peer", "10.1.2.3", 5],
    "REMOTE_PORT": [MISSING, "", "51234", "x", " 42 ", "4_2", "\u0661\u0662", 80],
}


def _environ(rng: random.Random) -> dict:
    environ = {}
    for key, values in CHOICES.items():
        value = rng.choice(values)
        if value is not MISSING:
            environ[key] = value
    return environ


def test_server_tags_agree_with_python_or_are_left_to_it():
    rng = random.Random(20261122)
    built = 0
    for i in range(6000):
        environ = _environ(rng)
        method = rng.choice(["GET", "POST"])
        if i % 3 == 0:  # addresses seen before are in tagging's cache
            address = environ.get("REMOTE_ADDR")
            if isinstance(address, str) and address:
                tagging.peer_address_tag(address)
        try:
            expected = ot_flask._server_tags(dict(environ), method)
        except Exception as exc:  # noqa: BLE001 - e.g. "%s" of bytes works, int() of 5 too
            expected = exc
        got = cflask.server_tags(BASE, NAMES, tagging._ip_kind_cache, environ, method)
        if got is None:
            continue
        built += 1
        assert got == expected, environ
        assert list(got) == list(expected), environ  # the same order, too
    # Most common environs are built in C (the test would pass vacuously otherwise).
    assert built > 100


def test_server_tags_common_istio_request():
    environ = {"wsgi.url_scheme": "http", "HTTP_HOST": "productpage:9080",
               "PATH_INFO": "/api/v1/products/0", "QUERY_STRING": "", "SCRIPT_NAME": "",
               "REMOTE_ADDR": "127.0.0.6", "REMOTE_PORT": "51234"}
    tagging.peer_address_tag("127.0.0.6")
    assert cflask.server_tags(BASE, NAMES, tagging._ip_kind_cache, environ, "GET") == {
        "span.kind": "server", "component": "flask", "http.method": "GET",
        "http.url": "http://productpage:9080/api/v1/products/0", "peer.ipv4": "127.0.0.6",
        "peer.port": 51234}
    # A path that needs quoting and an address not seen before are left to Python.
    assert cflask.server_tags(BASE, NAMES, {}, environ, "GET") is None
    environ["PATH_INFO"] = "/a b"
    assert cflask.server_tags(BASE, NAMES, tagging._ip_kind_cache, environ, "GET") is None


def test_server_tags_argument_errors():
    with pytest.raises(TypeError):
        cflask.server_tags(BASE, NAMES[:3], {}, {}, "GET")
    with pytest.raises(TypeError):
        cflask.server_tags(BASE, NAMES, {}, [], "GET")


def test_handler_construction_errors():
    with pytest.raises(TypeError):
        cflask.FlaskHandler(2, print)
    with pytest.raises(TypeError):
        cflask.FlaskHandler(0, 42)
    handler = cflask.FlaskHandler(1, lambda *a: ("fallback", a))
    assert not handler.enabled and handler.kind == 1
    assert handler("call", "app") == ("fallback", ("call", "app"))


@pytest.mark.parametrize("name, value, message", [
    ("key_pairs", [], "key_pairs must be a tuple or None"),
    ("status_codes", (), "status_codes, ip_kinds and server_tag_base must be dicts"),
    ("server_tag_names", ("a", "b"), "server_tag_names a tuple of 4"),
    ("state_type", dict, "state_type must be _cglue.RequestState"),
    ("sampled_flag", "1", "sampled_flag"),
])
def test_flask_handler_enable_names_the_wrong_argument(name, value, message):
    import flask  # noqa: F401 - the instrumentor reads its request context variable

    instrumentor = ot_flask.FlaskInstrumentor()
    instrumentor.patches()
    config = instrumentor._c_config(None)
    handler = cflask.FlaskHandler(0, lambda *a: None)
    handler.enable(**config)
    assert handler.enabled
    config[name] = value
    with pytest.raises(TypeError, match=message):
        handler.enable(**config)
    assert handler.enabled  # the previous configuration stays
    del config[name]
    with pytest.raises(TypeError, match="needs " + name):
        handler.enable(**config)
    config[name], config["extra"] = value, 1
    with pytest.raises(TypeError):
        handler.enable(**config)


def test_send_handler_enable_names_the_wrong_argument():
    import requests

    from opentracing_sls.integrations import requests as ot_requests

    csend = pytest.importorskip("opentracing_sls.integrations._csend")
    config = ot_requests.RequestsInstrumentor()._c_config(requests.structures)
    handler = csend.SendHandler(lambda *a: None)
    handler.enable(**config)
    assert handler.enabled
    for name, value in (("client_tags", []), ("url_cache", None), ("trace_names", []),
                        ("request_source", ())):
        with pytest.raises(TypeError, match="client_tags and url_cache must be dicts"):
            handler.enable(**dict(config, **{name: value}))
    handler.disable()
    assert not handler.enabled
