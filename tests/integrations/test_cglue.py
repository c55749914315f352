"""The C twins of the integrations' per-request glue (``integrations/_cglue.c``) against
their Python versions: the patched-method callable and its ``__get__``, a Flask request's
state (also its ``start_response``), and the header capture and copy of forwarding."""

from __future__ import annotations

import gc
import inspect
import random
import sys
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import pytest
import wrapt
from requests.structures import CaseInsensitiveDict

from opentracing_sls._accel import pure_python
from opentracing_sls.integrations import flask as flask_integration
from opentracing_sls.integrations import forwarding, patching

cglue = pytest.importorskip("opentracing_sls.integrations._cglue",
                            reason="C accelerator not built (no compiler?)")
pytestmark = pytest.mark.skipif(
    pure_python(), reason="compares the C paths with the Python ones; C is switched off")


# -- Handler and Getter -----------------------------------------------------------------------


class Owner:
    def handler(self, call: Any, instance: Any, *args: Any, **kwargs: Any) -> Any:
        return ("handled", self, call(instance, *args, **kwargs))


def original(self: Any, *args: Any, **kwargs: Any) -> Any:
    """The original's docstring."""
    return (self, args, kwargs)


@pytest.mark.parametrize("nargs", [0, 1, 7, 8, 20])
def test_handler_calls_func_with_owner_original_and_every_argument(nargs):
    owner = Owner()
    handler = cglue.Handler(Owner.handler, owner, original)
    args = tuple(range(nargs))
    assert handler("inst", *args) == ("handled", owner, ("inst", args, {}))
    assert handler("inst", *args, a=1, b=2) == ("handled", owner, ("inst", args,
                                                                   {"a": 1, "b": 2}))


def test_handler_without_owner_and_errors_pass_through():
    def func(call, *args):
        if args == ("boom",):
            raise KeyError("the app's own")
        return call(*args)

    handler = cglue.Handler(func, None, original)
    assert handler("i", 2) == ("i", (2,), {})
    with pytest.raises(KeyError, match="the app's own"):
        handler("boom")
    with pytest.raises(TypeError):
        cglue.Handler(42, None, original)


def test_handler_takes_the_originals_name_and_signature_like_partial():
    handler = cglue.Handler(Owner.handler, Owner(), original)
    patching.functools.update_wrapper(handler, original)
    assert handler.__name__ == "original" and handler.__doc__ == "The original's docstring."
    assert handler.__wrapped__ is original
    assert inspect.signature(handler) == inspect.signature(original)


def test_getter_binds_through_an_instance_and_defers_on_the_class():
    seen: List[Any] = []

    def fallback(proxy, instance, owner):
        seen.append((proxy, instance, owner))
        return "fallback"

    getter = cglue.Getter("method", fallback)
    bound = getter("proxy", "instance", str)
    assert bound.__func__ == "method" and bound.__self__ == "instance"
    assert getter("proxy", None, str) == "fallback" and seen == [("proxy", None, str)]

    class Proxy:
        __get__ = getter

    proxy = Proxy()
    # Read as an attribute it binds, as a function would: proxy.__get__(instance, owner).
    assert proxy.__get__("instance", str).__self__ == "instance"
    assert proxy.__get__(None, str) == "fallback" and seen[-1] == (proxy, None, str)


def test_patched_method_through_c_and_python_proxies_behaves_the_same(monkeypatch):
    """method_proxy with the C pieces and without: the same calls reach the handler, the
    same name and signature are seen, a wrapper stacked on top still works."""
    results = []
    for use_c in (True, False):
        monkeypatch.setattr(patching, "_cglue", cglue if use_c else None)

        class Target:
            def method(self, a, b=2):
                """doc"""
                return (a, b)

        calls: List[Any] = []

        def handler(call, instance, *args, _calls=calls, **kwargs):
            _calls.append((instance, args, kwargs))
            return call(instance, *args, **kwargs)

        Target.method = patching.method_proxy(Target.__dict__["method"], handler)
        target = Target()
        stacked = wrapt.FunctionWrapper(Target.__dict__["method"],
                                        lambda wrapped, instance, args, kwargs:
                                        ("outer", wrapped(*args, **kwargs)))
        results.append((target.method(1), target.method(1, b=3), Target.method(target, 5),
                        target.method.__name__, str(inspect.signature(target.method)),
                        stacked.__get__(target, Target)(7),
                        [(args, kwargs) for _, args, kwargs in calls]))
    assert results[0] == results[1]
    assert results[0][:3] == ((1, 2), (1, 3), (5, 2))


def test_no_reference_leaks_per_call():
    owner = Owner()
    handler = cglue.Handler(Owner.handler, owner, original)
    getter = cglue.Getter(handler, lambda *a: None)
    marker = object()
    for _ in range(100):
        getter(None, marker, None)(marker, marker, k=marker)
    gc.collect()
    before = sys.getrefcount(marker)
    for _ in range(1000):
        getter(None, marker, None)(marker, marker, k=marker)
    gc.collect()
    assert sys.getrefcount(marker) == before


# -- RequestState -----------------------------------------------------------------------------


@pytest.fixture(params=["c", "python"])
def make_state(request):
    return cglue.new_state if request.param == "c" else flask_integration._RequestState


def test_request_state_fields_and_defaults(make_state):
    state = make_state("tracer", 12.5, {"x-request-id": "r"}, None)
    assert (state.tracer, state.start, state.forwarded) == ("tracer", 12.5,
                                                            {"x-request-id": "r"})
    assert (state.span, state.scope, state.status, state.headers) == (None, None, None, [])
    assert (state.streamed, state.error_logged, state.finished) == (False, False, False)
    state.span, state.scope, state.streamed, state.finished = "span", "scope", True, True
    state.headers = [("a", "b")]
    assert (state.span, state.scope, state.streamed, state.finished, state.headers) == (
        "span", "scope", True, True, [("a", "b")])


def test_request_state_is_the_start_response_it_wraps(make_state):
    calls = []

    def start_response(status, headers, exc_info=None):
        calls.append((status, headers, exc_info))
        return "write"

    state = make_state("t", 0.0, None, start_response)
    assert state("200 OK", [("Content-Type", "text/plain")]) == "write"
    assert state.status == "200 OK" and state.headers == [("Content-Type", "text/plain")]
    error = (ValueError, ValueError("x"), None)
    assert state("500 INTERNAL SERVER ERROR", [], error) == "write"
    assert calls[-1] == ("500 INTERNAL SERVER ERROR", [], error)
    assert state.status == "500 INTERNAL SERVER ERROR"
    with pytest.raises(TypeError):
        state("200 OK")
    assert state.status == "500 INTERNAL SERVER ERROR"  # a bad call records nothing


def test_c_request_state_rejects_bad_arguments():
    with pytest.raises(TypeError):
        cglue.new_state("t", "not a time", None, None)
    with pytest.raises(TypeError):
        cglue.new_state("t", 1.0, None)
    with pytest.raises(TypeError):  # no server start_response (a standalone request)
        cglue.new_state("t", 1.0, None, None)("200 OK", [])
    assert cglue.RequestState(tracer="t", start=2, forwarded=None,
                              start_response=None).start == 2.0


# -- headers ----------------------------------------------------------------------------------

_NAMES = list(forwarding.ISTIO_HEADERS) + ["x-tenant", "Content-Type", "host"]


def _random_environ(rng: random.Random) -> Dict[str, Any]:
    environ: Dict[str, Any] = {"wsgi.version": (1, 0), "PATH_INFO": "/"}
    for name in rng.sample(_NAMES, rng.randint(0, 12)):
        environ["HTTP_" + name.upper().replace("-", "_")] = rng.choice(
            ["v%d" % rng.randint(0, 9), "", None, b"bytes", ["a", "b"]])
    return environ


def test_capture_matches_python(monkeypatch):
    rng = random.Random(7)
    forward_list = forwarding.ForwardList(["x-tenant"])
    for _ in range(500):
        environ = _random_environ(rng)
        c_result = forward_list.capture(environ)
        monkeypatch.setattr(forwarding, "_capture", None)
        py_result = forward_list.capture(environ)
        monkeypatch.undo()
        assert c_result == py_result
    assert cglue.capture((), {"HTTP_X": "1"}) is None
    with pytest.raises(TypeError):
        cglue.capture((), CaseInsensitiveDict())
    with pytest.raises(TypeError):  # not key, name pairs
        cglue.capture(("HTTP_X",), {"HTTP_X": "1"})
    with pytest.raises(TypeError):  # the old dict form
        cglue.capture({"HTTP_X": "x"}, {"HTTP_X": "1"})


def _random_headers(rng: random.Random, names: List[str], k: int) -> Dict[str, str]:
    return {name: "%s-%d" % (name, rng.randint(0, 99)) for name in rng.sample(names, k)}


def test_apply_to_requests_store_matches_python(monkeypatch):
    """Random injected/forwarded/app-set headers: the C copy leaves the same outgoing
    headers, in the same order, as the Python one (stale trace headers included)."""
    rng = random.Random(11)
    trace = "463ac35c9f6413ad48485a3953bb6124"
    lower = [n for n in _NAMES if n.islower()]
    for _ in range(1000):
        injected = _random_headers(rng, ["x-b3-traceid", "x-b3-spanid", "x-b3-sampled",
                                         "b3", "traceparent", "uber-trace-id", "x-other"],
                                   rng.randint(0, 4))
        if "x-b3-traceid" in injected and rng.random() < 0.7:
            injected.update({"x-b3-traceid": trace, "x-b3-spanid": "1111111111111111"})
        forwarded: Optional[Dict[str, str]] = (
            None if rng.random() < 0.2 else _random_headers(rng, lower, rng.randint(0, 8)))
        app_set = _random_headers(rng, ["B3", "X-B3-Sampled", "X-Request-Id", "Accept"],
                                  rng.randint(0, 2))
        outputs = []
        for use_c in (True, False):
            if not use_c:
                monkeypatch.setattr(forwarding, "_apply_store", None)
            outgoing = CaseInsensitiveDict(app_set)
            forwarding.apply(outgoing, dict(injected),
                             None if forwarded is None else dict(forwarded))
            outputs.append(list(outgoing._store.items()))
            monkeypatch.undo()
        assert outputs[0] == outputs[1], (injected, forwarded, app_set)


def test_apply_store_argument_checks():
    store = OrderedDict()
    assert cglue.apply_store(store, {}, None, ("b3",)) is False
    with pytest.raises(TypeError):
        cglue.apply_store(store, CaseInsensitiveDict(), None, ("b3",))
    with pytest.raises(TypeError):
        cglue.apply_store(store, {}, None, frozenset(["b3"]))
